"""``up``, ``down`` and ``status`` of the local stack: Kafka, Mosquitto and PostgreSQL side by
side."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from cityhub.schemas.errors import StackError
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.streams.devtools.stack import kafka, kafka_secure, mosquitto, postgres
from cityhub.streams.devtools.stack.layout import StackLayout, find_deploy_dir
from cityhub.streams.devtools.stack.pki import Pki
from cityhub.streams.devtools.stack.probes import (
    NotServingError,
    port_in_use,
    probe_kafka,
    quiet_client_logs,
    wait_until_serving,
)
from cityhub.streams.devtools.stack.process import ProcessSpec, owned_pid, process_argv, stop
from cityhub.streams.devtools.stack.status import ServiceStatus, StackStatus
from cityhub.streams.privacy.keys_store import ensure_local_kek

log = logging.getLogger("cityhub.stack")

STATUS_PROBE_TIMEOUT = 10.0
"""``status`` waits this long for a round trip; a serving broker answers in milliseconds."""


@dataclass(frozen=True)
class _Service:
    """What the lifecycle needs of one broker, whatever it is."""

    name: str
    address: str
    ports: tuple[int, ...]
    process: ProcessSpec
    log_file: Path
    probe: Callable[[float], Awaitable[str]]
    log_tail: Callable[[], str]
    configs: Callable[[], dict[Path, str]]
    """The config files as the current settings would write them."""


SERVICES = (kafka.NAME, mosquitto.NAME, postgres.NAME)
"""The services of the stack, in the order they are reported."""


def _mqtt_login(settings: Settings) -> tuple[str | None, str | None]:
    """Who the MQTT probe logs in as: nobody, unless the broker has a password file; then the
    hub's own MQTT user (``mqtt.username``/``password``), which must therefore be set. A secure
    stack's probe logs in as the stack's own generated bridge user instead."""
    if settings.stack.mosquitto_password_file is None or settings.stack.secure:
        return None, None
    if settings.mqtt.username is None or settings.mqtt.password is None:
        raise StackError(
            "stack.mosquitto_password_file is set, so Mosquitto refuses anonymous clients: set "
            "CITYHUB_MQTT__USERNAME and CITYHUB_MQTT__PASSWORD to a user of that file (the hub "
            "and the stack's readiness probe log in as it)"
        )
    return settings.mqtt.username, settings.mqtt.password.get_secret_value()


def kafka_probe_settings(settings: Settings, layout: StackLayout) -> KafkaSettings:
    """How the stack reaches its own Kafka: plain on loopback, or (secure) as its admin user
    with its CA; never through the user's ``kafka`` settings, which may name another cluster."""
    if not settings.stack.secure:
        return KafkaSettings(bootstrap_servers=kafka.kafka_address(settings.stack))
    pki = Pki(kafka_secure.pki_dir(layout).resolve())
    return kafka_secure.client_kafka_settings(settings, layout, pki)


def stack_client_settings(settings: Settings) -> Settings:
    """``settings`` as the operator's commands right after ``up`` use them (``ensure_topics``):
    unchanged for the plain stack, logged in as the admin user for the secure one."""
    if not settings.stack.secure:
        return settings
    layout = StackLayout.under(settings.stack.state_dir)
    return settings.model_copy(update={"kafka": kafka_probe_settings(settings, layout)})


async def _secure_kafka_ready(settings: Settings, layout: StackLayout) -> None:
    """After the secure Kafka serves: every component's ACLs, and the client env files."""
    pki = Pki(kafka_secure.pki_dir(layout).resolve())
    await kafka_secure.apply_acls(settings, kafka_probe_settings(settings, layout))
    written = kafka_secure.write_client_env_files(settings, layout, pki)
    log.info(
        "kafka: SASL_SSL on 127.0.0.1:%d; client settings in %s (`set -a; . %s`)",
        settings.stack.kafka_port,
        written[0].parent,
        written[-1],
    )


def _services(
    settings: Settings, layout: StackLayout, deploy_dir: Path | None, *, bootstrap: bool = False
) -> tuple[_Service, _Service, _Service]:
    """The stack's services; with ``bootstrap`` (``up``), PostgreSQL's probe also makes the
    hub's role, database and PostGIS (``status`` only looks)."""
    stack = settings.stack

    def kafka_configs() -> dict[Path, str]:
        return {} if deploy_dir is None else kafka.rendered_configs(layout, settings, deploy_dir)

    def mosquitto_configs() -> dict[Path, str]:
        if deploy_dir is None:
            return {}
        return mosquitto.rendered_configs(layout, settings, deploy_dir)

    kafka_address = kafka.kafka_address(stack)
    return (
        _Service(
            name=kafka.NAME,
            address=kafka_address,
            ports=(stack.kafka_port, stack.kafka_controller_port),
            process=kafka.kafka_process(layout),
            log_file=layout.kafka_log,
            probe=lambda within_s: probe_kafka(
                kafka_probe_settings(settings, layout), within_s=within_s
            ),
            log_tail=lambda: kafka.kafka_log_tail(layout),
            configs=kafka_configs,
        ),
        _Service(
            name=mosquitto.NAME,
            address=mosquitto.mosquitto_address(stack),
            ports=mosquitto.mosquitto_ports(stack),
            process=mosquitto.mosquitto_process(layout),
            log_file=layout.mosquitto_log,
            probe=lambda within_s: mosquitto.probe_mosquitto(
                settings, layout, within_s, login=_mqtt_login(settings)
            ),
            log_tail=lambda: mosquitto.mosquitto_log_tail(layout),
            configs=mosquitto_configs,
        ),
        _Service(
            name=postgres.NAME,
            address=postgres.postgres_address(stack),
            ports=(stack.postgres_port,),
            process=postgres.postgres_process(layout),
            log_file=layout.postgres_log,
            probe=lambda within_s: postgres.probe_postgres(
                stack, layout, within_s=within_s, bootstrap=bootstrap
            ),
            log_tail=lambda: postgres.postgres_log_tail(layout),
            configs=lambda: postgres.rendered_configs(layout, stack),
        ),
    )


@contextlib.asynccontextmanager
async def _locked(layout: StackLayout) -> AsyncIterator[None]:
    """One ``up`` or ``down`` at a time per state dir, across processes (pytest-xdist, a shell)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with layout.lock_file.open("a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another `cityhub stack` command on %s", layout.root)
            await asyncio.to_thread(fcntl.flock, lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _differs(path: Path, text: str) -> bool:
    try:
        return path.read_text() != text
    except FileNotFoundError:
        return True


def _busy_ports(service: _Service) -> list[int]:
    return [port for port in service.ports if port_in_use(port)]


async def _bring_up(
    service: _Service, start: Callable[[], Awaitable[int]], ready_within_s: float
) -> tuple[ServiceStatus, bool]:
    """Start ``service`` unless ours already runs, wait until it serves; say if it was started."""
    pid = owned_pid(service.process)
    started = False
    if pid is None:
        busy = _busy_ports(service)
        if busy:
            raise StackError(
                f"{service.name}: port {', '.join(map(str, busy))} on 127.0.0.1 is taken by a "
                f"process this stack did not start (no live pid in {service.process.pid_file}); "
                "stop it, or choose other ports with CITYHUB_STACK__*_PORT"
            )
        pid = await start()
        started = True
    else:
        log.info("%s: already running (pid %d)", service.name, pid)
        stale = [path.name for path, text in service.configs().items() if _differs(path, text)]
        if stale:
            log.warning(
                "%s: runs with an older %s than the current settings make; "
                "`cityhub stack down` then `up` to apply them",
                service.name,
                " and ".join(stale),
            )

    running_pid = pid

    def still_running() -> bool:
        # Alive, not "ours by its command line": a program started a moment ago may not have
        # exec'd yet (its command line is still the shell's, or empty), and owned_pid would
        # take its pid file for stale and remove it (seen: three services starting at once).
        return process_argv(running_pid) is not None

    began = time.monotonic()
    try:
        detail = await wait_until_serving(
            service.name, service.probe, within_s=ready_within_s, still_running=still_running
        )
    except NotServingError as exc:
        raise StackError(
            f"{service.name} at {service.address} is not serving: {exc}\n"
            f"--- last lines of {service.log_file} ---\n{service.log_tail()}\n---\n"
            f"see the whole log in {service.log_file}; `cityhub stack down --purge` starts over "
            "from empty data"
        ) from exc
    log.info(
        "%s: serving on %s (%.1f s): %s",
        service.name,
        service.address,
        time.monotonic() - began,
        detail,
    )
    status = ServiceStatus(
        name=service.name,
        address=service.address,
        pid=pid,
        serving=True,
        detail=detail,
        log_file=service.log_file,
    )
    return status, started


def _selected(only: Collection[str] | None) -> Collection[str]:
    if only is None:
        return SERVICES
    unknown = set(only) - set(SERVICES)
    if unknown:
        raise StackError(f"no such service {sorted(unknown)}; the stack has {list(SERVICES)}")
    return only


async def stack_up(settings: Settings, *, only: Collection[str] | None = None) -> StackStatus:
    """Start Kafka, Mosquitto and PostgreSQL unless they already run, and return once each
    really serves.

    ``only`` limits it to some of ``SERVICES`` (a test's private Mosquitto needs no Kafka).
    Idempotent: with all already up and serving, nothing is started. Raises ``StackError`` with
    what to do when a tool is missing, a port is taken or a broker does not come up in time.
    """
    stack = settings.stack
    layout = StackLayout.under(stack.state_dir)
    deploy_dir = find_deploy_dir(stack.deploy_dir)
    selected = _selected(only)
    if mosquitto.NAME in selected:
        _mqtt_login(
            settings
        )  # no credentials for a broker that wants them: say so before it starts
    kafka_service, mosquitto_service, postgres_service = _services(
        settings, layout, deploy_dir, bootstrap=True
    )
    made = ensure_local_kek(settings)
    if made is not None:
        # Where the KEK's default looks, so that `cityhub run` needs no configuration.
        log.info("made a key-encryption key for the data subjects' keys at %s", made)
    began = time.monotonic()

    async def start_kafka() -> int:
        return await kafka.start_kafka(layout, settings, deploy_dir)

    async def start_mosquitto() -> int:
        return mosquitto.start_mosquitto(layout, settings, deploy_dir)

    async def start_postgres() -> int:
        return await postgres.start_postgres(layout, stack)

    starts = (
        (kafka_service, start_kafka),
        (mosquitto_service, start_mosquitto),
        (postgres_service, start_postgres),
    )
    async with _locked(layout):
        with quiet_client_logs():
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = [
                        group.create_task(_bring_up(service, start, stack.ready_timeout_seconds))
                        for service, start in starts
                        if service.name in selected
                    ]
            except* StackError as group_error:
                # The CLI catches StackError, not a group: report every service's failure in one.
                raise StackError(
                    "\n\n".join(str(error) for error in group_error.exceptions)
                ) from group_error
    results = [task.result() for task in tasks]
    if stack.secure and kafka.NAME in selected:
        await _secure_kafka_ready(settings, layout)
    if any(started for _, started in results):
        log.info("stack up in %.1f s (state in %s)", time.monotonic() - began, layout.root)
    else:
        log.info("stack already up and serving; nothing to do")
    return StackStatus(services=tuple(status for status, _ in results), state_dir=layout.root)


async def stack_down(
    settings: Settings, purge: bool = False, *, only: Collection[str] | None = None
) -> None:
    """Stop the services (their stop signal, then SIGKILL after the stop timeout). Idempotent.

    ``only`` limits it to some of ``SERVICES``. With ``purge``, also delete their data, configs
    and logs, so that the next ``up`` starts from empty brokers; the downloaded Kafka jars are
    kept.
    """
    stack = settings.stack
    layout = StackLayout.under(stack.state_dir)
    if not layout.root.exists():
        log.info("nothing to stop: no state dir at %s", layout.root)
        return
    selected = _selected(only)
    services = [s for s in _services(settings, layout, None) if s.name in selected]
    async with _locked(layout):
        stopped = await asyncio.gather(
            *(stop(service.process, grace_s=stack.stop_timeout_seconds) for service in services)
        )
        if not any(stopped):
            log.info("stack was not running")
        if purge:
            purge_state(layout, only=selected)


def purge_state(layout: StackLayout, *, only: Collection[str] = SERVICES) -> None:
    """Delete the brokers' (or ``only`` these brokers') data, configs and logs under the state
    dir (never the jars).

    Only the stack's own paths are removed, never the state dir itself: it is configurable, and
    a mistaken setting must not become ``rm -rf`` of something else.
    """
    log.info("purging broker data in %s (keeping %s)", layout.root, layout.kafka_libs)
    if kafka.NAME in only:
        shutil.rmtree(layout.kafka_data, ignore_errors=True)
        shutil.rmtree(layout.kafka_dir / "libs.tmp", ignore_errors=True)
        for path in (layout.kafka_server_properties, layout.kafka_log4j2, layout.kafka_log):
            path.unlink(missing_ok=True)
    if mosquitto.NAME in only:
        shutil.rmtree(layout.mosquitto_dir, ignore_errors=True)
    if postgres.NAME in only:
        shutil.rmtree(layout.postgres_dir, ignore_errors=True)


async def _observe(service: _Service) -> ServiceStatus:
    pid = owned_pid(service.process)
    if pid is None and not _busy_ports(service):
        detail = "not running"
        serving = False
    else:
        try:
            detail = await service.probe(STATUS_PROBE_TIMEOUT)
            serving = True
        except NotServingError as exc:
            detail = str(exc)
            serving = False
        if pid is None:
            detail = f"port taken by a process this stack did not start; {detail}"
    return ServiceStatus(
        name=service.name,
        address=service.address,
        pid=pid,
        serving=serving,
        detail=detail,
        log_file=service.log_file,
    )


async def stack_status(settings: Settings) -> StackStatus:
    """For each broker: is our process running, and does it serve a real round trip now."""
    layout = StackLayout.under(settings.stack.state_dir)
    with quiet_client_logs():
        statuses = await asyncio.gather(*(_observe(s) for s in _services(settings, layout, None)))
    return StackStatus(services=tuple(statuses), state_dir=layout.root)


def started_secure(settings: Settings) -> bool:
    """Whether the stack in ``settings``' state dir was last started with ``--secure`` (its
    Kafka listens with SASL_SSL): a plain status of it probes the wrong protocols."""
    config = StackLayout.under(settings.stack.state_dir).kafka_server_properties
    try:
        return "SASL_SSL" in config.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
