"""The Mosquitto MQTT broker of the local stack (the Debian package's binary).

With ``StackSettings.secure`` it listens on TLS only (the stack's own CA and server certificate
from ``pki.ensure_pki``), on two listeners: ``mqtt_tls_port`` for the tenants' users and
``mqtt_hub_tls_port`` for the hub's (``mosquitto_access`` says why). It admits only the users that
``mosquitto_access.secure_users`` names, each with a password generated once and kept in a 0600
file under ``<state>/mosquitto/auth/passwords/``; each listener's password file is hashed by
``mosquitto_passwd``, the ACL rendered from ``deploy/mosquitto/acl.secure.template``, and the
hub's MQTT settings for its listener written to ``<state>/clients/mqtt.env`` (0600).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import secrets
import shutil
import ssl
import subprocess
import time
from pathlib import Path

from cityhub.connectors.mqtt.session import MqttConnectRefused, MqttSession, MqttSubscribeFailed
from cityhub.schemas.errors import StackError
from cityhub.schemas.settings import MqttSettings, MqttSubscription, Settings, StackSettings
from cityhub.streams.devtools.stack.config import MOSQUITTO_CONF_TEMPLATE, render_mosquitto_conf
from cityhub.streams.devtools.stack.layout import StackLayout
from cityhub.streams.devtools.stack.mosquitto_access import (
    ACL_TEMPLATE,
    BRIDGE_USER,
    SecureFiles,
    TlsFiles,
    hub_environment,
    password_file_lines,
    render_acl,
    secure_users,
)
from cityhub.streams.devtools.stack.pki import ensure_pki
from cityhub.streams.devtools.stack.probes import (
    MQTT_HEALTH_PREFIX,
    AccessRefused,
    NotServingError,
    probe_mqtt,
)
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
    """Where the broker listens, for ``stack status`` and its messages; secure: both listeners,
    the tenants' first (``127.0.0.1:8883 (tenants), 8884 (hub)``)."""
    if not stack.secure:
        return f"127.0.0.1:{stack.mqtt_port}"
    return f"127.0.0.1:{stack.mqtt_tls_port} (tenants), {stack.mqtt_hub_tls_port} (hub)"


def mosquitto_ports(stack: StackSettings) -> tuple[int, ...]:
    """The broker's listeners: the plain one, or (``secure``) the tenants' and the hub's TLS
    ones (``stack up`` reports each that another process holds)."""
    if not stack.secure:
        return (stack.mqtt_port,)
    return (stack.mqtt_tls_port, stack.mqtt_hub_tls_port)


def pki_dir(layout: StackLayout) -> Path:
    """The stack's PKI, shared with Kafka: clients of both brokers trust one CA."""
    return layout.root / "pki"


def secure_files(layout: StackLayout) -> SecureFiles:
    """Where the secure broker's password files, ACL and certificates are (nothing is made)."""
    auth = layout.mosquitto_dir.resolve() / "auth"
    pki = pki_dir(layout).resolve()
    return SecureFiles(
        password_file=auth / "cityhub.passwd",
        hub_password_file=auth / "hub.passwd",
        acl_file=auth / "cityhub.acl",
        tls=TlsFiles(
            ca_cert=pki / "ca.crt", server_cert=pki / "server.crt", server_key=pki / "server.key"
        ),
    )


def passwords_dir(layout: StackLayout) -> Path:
    """One 0600 file per secure-stack user, holding its generated password."""
    return layout.mosquitto_dir.resolve() / "auth" / "passwords"


def hub_env_file(layout: StackLayout) -> Path:
    """``CITYHUB_MQTT__*`` lines that point the hub at the secure broker (0600: passwords),
    beside the Kafka clients' files in ``<state_dir>/clients``."""
    return layout.root.resolve() / "clients" / "mqtt.env"


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


def rendered_configs(layout: StackLayout, settings: Settings, deploy_dir: Path) -> dict[Path, str]:
    """mosquitto.conf (and, secure, the ACL file) as the current settings make them."""
    stack = settings.stack
    secure = secure_files(layout) if stack.secure else None
    conf = render_mosquitto_conf(
        (deploy_dir / MOSQUITTO_CONF_TEMPLATE).read_text(),
        stack,
        layout,
        user=_current_user(),
        secure=secure,
    )
    configs = {layout.mosquitto_conf: conf}
    if secure is not None:
        configs[secure.acl_file] = render_acl(
            (deploy_dir / ACL_TEMPLATE).read_text(),
            stack,
            delivery_root=settings.delivery.mqtt_topic_root,
        )
    return configs


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner may read (mode 0600 from the start)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def stack_passwords(layout: StackLayout, stack: StackSettings) -> dict[str, str]:
    """Every secure-stack user's password: read from its file, or generated and written (0600)
    the first time, so clients configured once keep working across restarts."""
    folder = passwords_dir(layout)
    passwords: dict[str, str] = {}
    for user in secure_users(stack):
        path = folder / user.name
        if path.is_file() and path.read_text().strip():
            passwords[user.name] = path.read_text().strip()
        else:
            passwords[user.name] = secrets.token_urlsafe(24)
            _write_private(path, passwords[user.name] + "\n")
    return passwords


def _mosquitto_passwd() -> str:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin", *_SBIN_DIRS])
    found = shutil.which("mosquitto_passwd", path=search)
    if found is None:
        raise StackError(
            "`mosquitto_passwd` not found: the secure stack hashes its password file with it "
            "(Debian: apt-get install mosquitto, or deploy/system-deps.sh)"
        )
    return found


def write_password_file(path: Path, passwords: dict[str, str]) -> None:
    """The broker's password file for these users, hashed by ``mosquitto_passwd -U`` (written
    in clear first, 0600, and hashed in place before the broker or anybody reads it)."""
    _write_private(path, password_file_lines(passwords))
    done = subprocess.run(  # noqa: S603 - our own arguments, no shell
        [_mosquitto_passwd(), "-U", str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        path.unlink(missing_ok=True)  # never leave the passwords in clear
        raise StackError(f"mosquitto_passwd -U {path} failed: {done.stderr.strip()}")


def prepare_secure(layout: StackLayout, settings: Settings) -> MqttSettings:
    """Make what the secure broker needs before it starts: certificates, passwords, the two
    hashed password files (the hub's users, the tenants'), and the hub's env file. Returns the
    bridge user's MQTT settings."""
    stack = settings.stack
    ensure_pki(pki_dir(layout))
    passwords = stack_passwords(layout, stack)
    files = secure_files(layout)
    hub = {user.name for user in secure_users(stack) if user.hub}
    write_password_file(files.hub_password_file, {u: p for u, p in passwords.items() if u in hub})
    write_password_file(files.password_file, {u: p for u, p in passwords.items() if u not in hub})
    folder = passwords_dir(layout)
    environment = hub_environment(
        stack, files.tls.ca_cert, {user: folder / user for user in passwords}
    )
    _write_private(hub_env_file(layout), "".join(f"{k}={v}\n" for k, v in environment.items()))
    return hub_mqtt_settings(layout, stack)


def hub_mqtt_settings(layout: StackLayout, stack: StackSettings) -> MqttSettings:
    """The secure broker as the hub's bridge user sees it: TLS to the hub's listener on 127.0.0.1
    trusting the stack's CA, logged in as ``cityhub-bridge`` with its password file (what the
    readiness probe uses)."""
    return MqttSettings(
        host="127.0.0.1",
        port=stack.mqtt_hub_tls_port,
        tls=True,
        tls_ca_file=secure_files(layout).tls.ca_cert,
        username=BRIDGE_USER,
        password_file=passwords_dir(layout) / BRIDGE_USER,
    )


def check_access_files(stack: StackSettings) -> None:
    """Raise ``StackError`` saying what to do when a configured password or ACL file is missing
    (mosquitto would exit with a terse message, or with none, at start-up), or when they are
    set for a secure stack, which makes its own."""
    if stack.secure and (stack.mosquitto_password_file or stack.mosquitto_acl_file):
        raise StackError(
            "StackSettings.secure makes the broker's own password and ACL files: unset "
            "CITYHUB_STACK__MOSQUITTO_PASSWORD_FILE and CITYHUB_STACK__MOSQUITTO_ACL_FILE "
            "(add users to the secure stack with mosquitto_passwd on its file instead)"
        )
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


def start_mosquitto(layout: StackLayout, settings: Settings, deploy_dir: Path) -> int:
    """Write the config (secure: and the certificates, passwords and access files) and start
    the broker detached; return its pid."""
    stack = settings.stack
    binary = mosquitto_binary(stack.mosquitto_bin)
    check_access_files(stack)
    layout.mosquitto_persistence.mkdir(parents=True, exist_ok=True)
    if stack.secure:
        prepare_secure(layout, settings)
    for path, text in rendered_configs(layout, settings, deploy_dir).items():
        path.parent.mkdir(parents=True, exist_ok=True)
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


async def probe_mosquitto(
    settings: Settings,
    layout: StackLayout,
    within_s: float,
    *,
    login: tuple[str | None, str | None],
) -> str:
    """Whether the stack's broker serves: a QoS 1 round trip on a fresh health topic. Plain: as
    ``login`` (user, password; None: anonymous). Secure: over TLS verifying the stack's CA and
    host name, as the stack's bridge user, with cityhub's own MQTT client (the bridge's)."""
    stack = settings.stack
    if not stack.secure:
        user, password = login
        return await probe_mqtt(
            "127.0.0.1", stack.mqtt_port, within_s=within_s, username=user, password=password
        )
    return await probe_secure_mqtt(hub_mqtt_settings(layout, stack), within_s=within_s)


async def probe_secure_mqtt(mqtt: MqttSettings, *, within_s: float) -> str:
    """Subscribe to a fresh ``cityhub/_health/<token>``, publish to it at QoS 1 and receive it
    back over ``mqtt``'s TLS connection. Raises ``AccessRefused`` when the broker refuses the
    login, the topic or our trust in its certificate, ``NotServingError`` when it does not
    serve (yet)."""
    token = secrets.token_hex(8)
    topic = f"{MQTT_HEALTH_PREFIX}/{token}"
    started = time.monotonic()
    session = MqttSession(
        mqtt,
        client_id=f"cityhub-health-{token}",
        clean_start=True,
        session_expiry_seconds=0,  # leave nothing behind in the persistent store
        receive_maximum=10,
        connect_timeout=within_s,
    )
    try:
        async with asyncio.timeout(within_s), session:
            await session.subscribe(MqttSubscription(filter=topic, format="health", qos=1))
            code = await session.publish(topic, token.encode(), qos=1)
            if code >= 0x80:
                raise AccessRefused(f"publishing to {topic} was refused (reason 0x{code:02x})")
            async for message in session.messages():
                session.ack(message.mid, message.qos)
                if message.payload == token.encode():
                    break
    except ssl.SSLCertVerificationError as exc:
        raise AccessRefused(
            f"the broker's certificate is not trusted ({exc.verify_message}); "
            f"CA file {mqtt.tls_ca_file}"
        ) from exc
    except (MqttConnectRefused, MqttSubscribeFailed) as exc:
        raise AccessRefused(f"the broker refused user {mqtt.username!r}: {exc}") from exc
    except TimeoutError as exc:
        raise NotServingError(f"no QoS 1 round trip on {topic} within {within_s:.0f} s") from exc
    except (AccessRefused, NotServingError):
        raise
    except Exception as exc:  # socket and TLS errors alike mean "not serving (yet)"
        raise NotServingError(f"{type(exc).__name__}: {exc}") from exc
    elapsed_ms = (time.monotonic() - started) * 1000
    return f"TLS, user {mqtt.username}: QoS 1 publish+receive in {elapsed_ms:.0f} ms"
