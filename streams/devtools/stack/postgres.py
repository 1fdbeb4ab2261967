"""The history store's PostgreSQL (with PostGIS) in the local stack: Debian's binaries, a data
folder of its own under the stack's state, 127.0.0.1 only, passwords generated on first start.

Two roles: ``postgres``, the superuser, whose password only ``stack up`` reads (to make the
``cityhub`` role, its database and the PostGIS extension), and ``cityhub``, which owns the
database and which the hub logs in as. Both passwords are files of mode 0600 in the state dir;
every login is ``scram-sha-256`` over TCP (no Unix socket, no ``trust``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from cityhub.schemas.errors import StackError
from cityhub.schemas.settings import StackSettings
from cityhub.streams.devtools.stack.layout import StackLayout
from cityhub.streams.devtools.stack.probes import NotServingError
from cityhub.streams.devtools.stack.process import ProcessSpec, start_detached, tail

log = logging.getLogger("cityhub.stack")

NAME = "postgres"
SUPERUSER = "postgres"
DATABASE = "cityhub"
OWNER = "cityhub"
_DEBIAN_BIN_DIRS = tuple(f"/usr/lib/postgresql/{v}/bin" for v in (17, 16, 15))
_PASSWORD_BYTES = 32


def postgres_process(layout: StackLayout) -> ProcessSpec:
    """Our server is the postgres running with this state dir's postgresql.conf. SIGINT is its
    fast shutdown; SIGTERM would wait for every client to disconnect."""
    return ProcessSpec(
        name=NAME,
        pid_file=layout.postgres_pid,
        markers=("postgres", f"config_file={layout.postgres_conf}"),
        stop_signal=signal.SIGINT,
    )


def postgres_address(stack: StackSettings) -> str:
    return f"127.0.0.1:{stack.postgres_port}"


def render_postgresql_conf(stack: StackSettings, layout: StackLayout) -> str:
    """``postgresql.conf``: loopback TCP only, no Unix socket, scram passwords, UTC, the log on
    stderr (which the stack keeps in ``postgres.log``)."""
    return "\n".join(
        [
            "# Written by `cityhub stack up`; changes are overwritten.",
            "listen_addresses = '127.0.0.1'",
            f"port = {stack.postgres_port}",
            "unix_socket_directories = ''",
            f"hba_file = '{layout.postgres_hba}'",
            "password_encryption = 'scram-sha-256'",
            "max_connections = 100",
            "shared_buffers = '256MB'",
            "max_wal_size = '2GB'",
            "timezone = 'UTC'",
            "log_timezone = 'UTC'",
            "lc_messages = 'C'",
            "logging_collector = off",
            "log_min_messages = warning",
            "log_line_prefix = '%m [%p] %q%u@%d '",
            "",
        ]
    )


def render_pg_hba() -> str:
    """``pg_hba.conf``: password (scram-sha-256) logins from 127.0.0.1 only, nothing else."""
    return (
        "# Written by `cityhub stack up`; changes are overwritten.\n"
        "# TYPE  DATABASE  USER  ADDRESS       METHOD\n"
        "host    all       all   127.0.0.1/32  scram-sha-256\n"
    )


def rendered_configs(layout: StackLayout, stack: StackSettings) -> dict[Path, str]:
    return {
        layout.postgres_conf: render_postgresql_conf(stack, layout),
        layout.postgres_hba: render_pg_hba(),
    }


def postgres_bin_dir(configured: Path | None) -> Path:
    """The folder of ``initdb`` and ``postgres``: as configured, else ``pg_config --bindir``,
    else the newest of Debian's ``/usr/lib/postgresql/<version>/bin``."""
    candidates: list[Path] = []
    if configured is not None:
        candidates.append(Path(configured).expanduser())
    else:
        pg_config = shutil.which("pg_config")
        if pg_config is not None:
            done = subprocess.run(  # noqa: S603 - a fixed argv
                [pg_config, "--bindir"], capture_output=True, text=True, check=False
            )
            if done.returncode == 0 and done.stdout.strip():
                candidates.append(Path(done.stdout.strip()))
        candidates += [Path(d) for d in _DEBIAN_BIN_DIRS]
    for folder in candidates:
        if os.access(folder / "initdb", os.X_OK) and os.access(folder / "postgres", os.X_OK):
            return folder
    where = ", ".join(map(str, candidates))
    raise StackError(
        f"no PostgreSQL server (initdb, postgres) in {where}; install it (Debian: apt-get install "
        "postgresql-15 postgresql-15-postgis-3, or `make deps`) or set "
        "CITYHUB_STACK__POSTGRES_BIN_DIR"
    )


@dataclass(frozen=True)
class _RunAs:
    """Who the server runs as, and the argv prefix that switches to them (empty: ourselves)."""

    uid: int
    gid: int
    prefix: tuple[str, ...]


def _run_as(stack: StackSettings) -> _RunAs:
    if os.geteuid() != 0:
        return _RunAs(uid=os.geteuid(), gid=os.getegid(), prefix=())
    try:
        user = pwd.getpwnam(stack.postgres_run_as)
    except KeyError:
        raise StackError(
            f"PostgreSQL refuses to run as root and there is no user {stack.postgres_run_as!r} "
            "to run it as: install the postgresql package (it makes one) or set "
            "CITYHUB_STACK__POSTGRES_RUN_AS to an unprivileged user"
        ) from None
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    # setpriv execs the server in place (no fork), so the pid the stack records is postgres's.
    prefix = (setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups")
    return _RunAs(uid=user.pw_uid, gid=user.pw_gid, prefix=(*prefix, "--"))


def unreachable_folder(path: Path, uid: int, gid: int) -> Path | None:
    """The first folder from ``/`` down to ``path`` that the user ``uid`` (group ``gid``) may not
    enter, or None: the server, run as another user, must reach its configs and data."""
    for folder in (*reversed(path.parents), path):
        mode = folder.stat()
        if mode.st_uid == uid:
            bit = stat.S_IXUSR
        elif mode.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not mode.st_mode & bit:
            return folder
    return None


def _write_secret(path: Path) -> str:
    """Make a new password file of mode 0600 (never overwriting one) and return the password."""
    password = secrets.token_urlsafe(_PASSWORD_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(password + "\n")
    return password


def _read_secret(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise StackError(
            f"PostgreSQL's data folder exists but its password file {path} does not; "
            "`cityhub stack down --purge` starts over from an empty database"
        ) from None


def _initdb(layout: StackLayout, bin_dir: Path, run_as: _RunAs) -> None:
    """Create the data folder with the superuser's password (scram-sha-256 from the start)."""
    layout.postgres_dir.mkdir(parents=True, exist_ok=True)
    layout.postgres_password.unlink(missing_ok=True)
    layout.postgres_superuser_password.unlink(missing_ok=True)
    superuser_password = _write_secret(layout.postgres_superuser_password)
    _write_secret(layout.postgres_password)
    layout.postgres_data.mkdir(mode=0o700)
    os.chown(layout.postgres_data, run_as.uid, run_as.gid)
    # initdb reads the password from a file the server's user can read; a private temporary
    # copy, removed at once.
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", prefix="cityhub-pw-") as pwfile:
        os.chmod(pwfile.name, 0o600)
        os.chown(pwfile.name, run_as.uid, run_as.gid)
        pwfile.write(superuser_password + "\n")
        pwfile.flush()
        argv = [
            *run_as.prefix,
            str(bin_dir / "initdb"),
            f"--pgdata={layout.postgres_data}",
            f"--username={SUPERUSER}",
            f"--pwfile={pwfile.name}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ]
        done = subprocess.run(  # noqa: S603 - our own argv
            argv, capture_output=True, text=True, check=False, cwd=layout.postgres_dir
        )
    if done.returncode != 0:
        raise StackError(f"initdb failed: {(done.stderr or done.stdout).strip()[-2000:]}")


async def start_postgres(layout: StackLayout, stack: StackSettings) -> int:
    """Create the data folder on first use, write the configs, start the server detached and
    return its pid (the roles and PostGIS are made by the readiness probe, once it serves)."""
    bin_dir = postgres_bin_dir(stack.postgres_bin_dir)
    run_as = _run_as(stack)
    layout.postgres_dir.mkdir(parents=True, exist_ok=True)
    if run_as.prefix:
        blocked = unreachable_folder(layout.postgres_dir, run_as.uid, run_as.gid)
        if blocked is not None:
            raise StackError(
                f"PostgreSQL runs as {stack.postgres_run_as!r} (the stack is started by root), "
                f"who may not enter {blocked}: choose a state dir that user can reach "
                "(CITYHUB_STACK__STATE_DIR), or allow it (chmod o+x)"
            )
    if not (layout.postgres_data / "PG_VERSION").is_file():
        if layout.postgres_data.exists():
            shutil.rmtree(layout.postgres_data)  # a half-made folder of an initdb that failed
        log.info("postgres: initialising %s", layout.postgres_data)
        await asyncio.to_thread(_initdb, layout, bin_dir, run_as)
    for path, text in rendered_configs(layout, stack).items():
        path.write_text(text)
        path.chmod(0o644)
    pid = start_detached(
        postgres_process(layout),
        [
            *run_as.prefix,
            str(bin_dir / "postgres"),
            "-D",
            str(layout.postgres_data),
            "-c",
            f"config_file={layout.postgres_conf}",
        ],
        cwd=layout.postgres_dir,
        output=layout.postgres_log,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    log.info("postgres: started (pid %d), log %s", pid, layout.postgres_log)
    return pid


_VERSION = re.compile(r"PostgreSQL (\S+)")


async def _bootstrap(stack: StackSettings, layout: StackLayout, timeout_s: int) -> None:
    """As the superuser: the ``cityhub`` role (password from its file), its database and PostGIS
    in it. Idempotent: run on every ``up``, so a password file and the role never disagree."""
    owner_password = _read_secret(layout.postgres_password)
    superuser_password = _read_secret(layout.postgres_superuser_password)

    async def as_superuser(dbname: str) -> psycopg.AsyncConnection[TupleRow]:
        return await psycopg.AsyncConnection.connect(
            host="127.0.0.1",
            port=stack.postgres_port,
            dbname=dbname,
            user=SUPERUSER,
            password=superuser_password,
            connect_timeout=timeout_s,
            application_name="cityhub-stack",
            autocommit=True,
        )

    async with await as_superuser("postgres") as conn:
        role = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [OWNER])
        verb = "ALTER" if await role.fetchone() else "CREATE"
        await conn.execute(
            sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                sql.SQL(verb), sql.Identifier(OWNER), sql.Literal(owner_password)
            )
        )
        database = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE])
        if await database.fetchone() is None:
            await conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DATABASE), sql.Identifier(OWNER)
                )
            )
    async with await as_superuser(DATABASE) as conn:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")


async def probe_postgres(
    stack: StackSettings, layout: StackLayout, *, within_s: float, bootstrap: bool
) -> str:
    """Log in as ``cityhub`` and ask PostGIS its version (with ``bootstrap``, first make the role,
    database and extension as the superuser). Returns a one-line description; raises
    ``NotServingError`` otherwise."""
    started = time.monotonic()
    timeout_s = max(1, round(within_s))
    try:
        async with asyncio.timeout(within_s):
            if bootstrap:
                await _bootstrap(stack, layout, timeout_s)
            async with await psycopg.AsyncConnection.connect(
                host="127.0.0.1",
                port=stack.postgres_port,
                dbname=DATABASE,
                user=OWNER,
                password=_read_secret(layout.postgres_password),
                connect_timeout=timeout_s,
                application_name="cityhub-stack",
            ) as conn:
                cursor = await conn.execute("SELECT version(), postgis_lib_version()")
                row = await cursor.fetchone()
    except TimeoutError as exc:
        raise NotServingError(f"no answer within {within_s:.0f} s") from exc
    except (psycopg.Error, StackError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotServingError(f"{type(exc).__name__}: {first_line}") from exc
    if row is None:  # a SELECT without FROM returns its one row; say so if it ever does not
        raise NotServingError("the version query returned no row")
    version = _VERSION.search(str(row[0]))
    elapsed_ms = (time.monotonic() - started) * 1000
    return (
        f"PostgreSQL {version.group(1) if version else '?'}, PostGIS {row[1]}, "
        f"login as {OWNER} in {elapsed_ms:.0f} ms"
    )


def postgres_log_tail(layout: StackLayout) -> str:
    return tail(layout.postgres_log, 30)
