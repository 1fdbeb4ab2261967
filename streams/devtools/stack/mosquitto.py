"""The Mosquitto MQTT broker of the local stack (the Debian package's binary)."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
from pathlib import Path

from cityhub.schemas.errors import StackError
from cityhub.schemas.settings import StackSettings
from cityhub.streams.devtools.stack.config import MOSQUITTO_CONF_TEMPLATE, render_mosquitto_conf
from cityhub.streams.devtools.stack.layout import StackLayout
from cityhub.streams.devtools.stack.process import ProcessSpec, start_detached, tail

log = logging.getLogger("cityhub.stack")

NAME = "mosquitto"
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin")


def mosquitto_process(layout: StackLayout) -> ProcessSpec:
    """Our Mosquitto is the one running with this state dir's mosquitto.conf."""
    return ProcessSpec(
        name=NAME, pid_file=layout.mosquitto_pid, markers=("mosquitto", str(layout.mosquitto_conf))
    )


def mosquitto_address(stack: StackSettings) -> str:
    return f"127.0.0.1:{stack.mqtt_port}"


def mosquitto_binary(configured: str) -> str:
    """The mosquitto executable: a path as given, or a name on PATH or in the sbin folders."""
    if os.sep in configured:
        if not os.access(configured, os.X_OK):
            raise StackError(f"StackSettings.mosquitto_bin={configured} is not an executable")
        return configured
    search = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    found = shutil.which(configured, path=search)
    if found is None:
        raise StackError(
            f"`{configured}` not found on PATH or in {', '.join(_SBIN_DIRS)}; "
            "install it (Debian: apt-get install mosquitto, or `make deps`) "
            "or set CITYHUB_STACK__MOSQUITTO_BIN"
        )
    return found


def _current_user() -> str:
    # The effective uid, not $USER: that is who mosquitto runs as and who owns the state dir.
    return pwd.getpwuid(os.geteuid()).pw_name


def rendered_configs(
    layout: StackLayout, stack: StackSettings, deploy_dir: Path
) -> dict[Path, str]:
    """mosquitto.conf as the current settings make it."""
    conf = render_mosquitto_conf(
        (deploy_dir / MOSQUITTO_CONF_TEMPLATE).read_text(), stack, layout, user=_current_user()
    )
    return {layout.mosquitto_conf: conf}


def check_access_files(stack: StackSettings) -> None:
    """Raise ``StackError`` saying what to do when a configured password or ACL file is missing
    (mosquitto would exit with a terse message, or with none, at start-up)."""
    for name, path in (
        ("mosquitto_password_file", stack.mosquitto_password_file),
        ("mosquitto_acl_file", stack.mosquitto_acl_file),
    ):
        if path is not None and not Path(path).expanduser().is_file():
            hint = (
                "make it with `mosquitto_passwd -c -b FILE USER PASSWORD`"
                if name == "mosquitto_password_file"
                else "start from deploy/mosquitto/acl.example"
            )
            raise StackError(
                f"StackSettings.{name}={path} is not a file: {hint}, or unset "
                f"CITYHUB_STACK__{name.upper()}"
            )


def start_mosquitto(layout: StackLayout, stack: StackSettings, deploy_dir: Path) -> int:
    """Write the config and start the broker detached; return its pid."""
    binary = mosquitto_binary(stack.mosquitto_bin)
    check_access_files(stack)
    layout.mosquitto_persistence.mkdir(parents=True, exist_ok=True)
    for path, text in rendered_configs(layout, stack, deploy_dir).items():
        path.write_text(text)
    # Not `-d`: mosquitto's own daemonising would hide start-up errors (a bad option, a busy
    # port) that it prints before its log file is open; start_detached keeps them in a file.
    pid = start_detached(
        mosquitto_process(layout),
        [binary, "-c", str(layout.mosquitto_conf)],
        cwd=layout.mosquitto_dir,
        output=layout.mosquitto_stdout,
        env=dict(os.environ),
    )
    log.info("mosquitto: started (pid %d), log %s", pid, layout.mosquitto_log)
    return pid


def mosquitto_log_tail(layout: StackLayout) -> str:
    out, logged = tail(layout.mosquitto_stdout, 10), tail(layout.mosquitto_log, 20)
    return "\n".join(part for part in (out, logged) if part)
