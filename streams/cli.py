"""The ``cityhub`` command: the local stack, the hub's processes, the simulator, tailing topics.

Every option has an environment variable (``CITYHUB_<SECTION>__<FIELD>``, see
``cityhub.schemas.settings``); the command-line flags here are for the few things one changes
per run.
"""

from __future__ import annotations

import logging
import os
from typing import Any, get_args

import click
from pydantic import ValidationError
from pydantic_settings import SettingsError

from cityhub.schemas.errors import CityhubError
from cityhub.schemas.settings import LogLevel, Settings, unknown_variables
from cityhub.schemas.settings_errors import json_setting_problem, settings_problems
from cityhub.schemas.topics import Topics
from cityhub.streams import http_refusals, kafka_log_flood
from cityhub.streams.api.openapi_cli import openapi_cmd
from cityhub.streams.cli_async import CityhubGroup, command_log_level, run_async
from cityhub.streams.deadletters.cli import deadletters
from cityhub.streams.devtools.stack.cli import stack
from cityhub.streams.logsetup import LogFormat, install
from cityhub.streams.mqtt_cli import mqtt
from cityhub.streams.parent_watch import watch_supervisor
from cityhub.streams.privacy.cli import activities
from cityhub.streams.privacy.consent_cli import consents
from cityhub.streams.privacy.erasure_cli import data_subjects
from cityhub.streams.privacy.log_cli import processing_log
from cityhub.streams.privacy.resident_cli import resident_tokens
from cityhub.streams.registry.cli import mount as mount_registry_commands
from cityhub.streams.sharing.cli import sharing
from cityhub.streams.wiring import Roles

log = logging.getLogger("cityhub")


def _settings(*, http_port: int | None = None, management_port: int | None = None) -> Settings:
    """The environment's settings, with the ports given on the command line."""
    settings = _checked_settings()
    if http_port is not None:
        http = settings.http.model_copy(update={"port": http_port})
        settings = settings.model_copy(update={"http": http})
    if management_port is not None:
        management = settings.management.model_copy(update={"port": management_port})
        settings = settings.model_copy(update={"management": management})
    return settings


def _refuse_simulating_over_tls(settings: Settings) -> None:
    """The simulator publishes plain MQTT as one client for the whole fleet: against a TLS
    broker (the secure stack) it would time out and be started again for ever."""
    if settings.mqtt.tls:
        raise click.UsageError(
            f"the simulator publishes plain MQTT as one client for the whole fleet, and "
            f"mqtt://{settings.mqtt.host}:{settings.mqtt.port} is a TLS broker (mqtt.tls): its "
            "ACL lets each user publish only as itself. Run the hub without --simulate and "
            "publish as a tenant's user (docs/security.md shows mosquitto_pub with the CA file)"
        )


def _refuse_without_kek(settings: Settings) -> None:
    """Refuse, before any banner, a hub or API without its key-encryption key: every part but
    the bridge needs it (sealing, the purpose checks, the console's cookies)."""
    from cityhub.streams.privacy.keys_store import load_kek

    try:
        load_kek(settings)
    except CityhubError as exc:
        raise click.ClickException(str(exc)) from exc


def _setup_logging(level: str, log_format: LogFormat) -> None:
    """Every logger of the process (aiokafka's and aiohttp's too) writes to stderr through
    ``cityhub.streams.logsetup``: strings from outside escaped, arguments capped, one line per
    record's message, as text or JSON lines; a request aiohttp cannot parse is logged without
    its text (``cityhub.streams.http_refusals``); aiokafka's repeated lines (a Kafka outage) come
    at most once per kind every 10 s, with a count (``cityhub.streams.kafka_log_flood``)."""
    install(level, log_format)
    http_refusals.install()
    kafka_log_flood.install()


def _checked_settings() -> Settings:
    """The settings, or a usage error naming each invalid one and why (never its value: pydantic's
    own text would repeat a whole section, passwords included)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = settings_problems(exc.errors(include_input=False, include_url=False))
        raise click.UsageError("invalid settings: " + "; ".join(problems)) from None
    except SettingsError as exc:  # a JSON value that does not parse; its text names the section
        problem = json_setting_problem(str(exc), os.environ)
        raise click.UsageError(f"invalid settings: {problem}") from None


@click.group(cls=CityhubGroup)
@click.option("--log-level", type=click.Choice(get_args(LogLevel), case_sensitive=False))
# The installed distribution's version: what an image or a deployment actually runs.
@click.version_option(package_name="cityhub", prog_name="cityhub")
@click.pass_context
def main(ctx: click.Context, log_level: str | None) -> None:
    """cityhub: a city's sensors in over MQTT and LoRaWAN, canonical observations out of Kafka.

    Logs go to stderr as text, or as one JSON object per line with CITYHUB_LOG_FORMAT=json."""
    watch_supervisor(os.environ)  # a child of `cityhub run`: stop when the supervisor is gone
    unknown = unknown_variables(os.environ)
    if unknown:
        raise click.UsageError(
            "not a cityhub setting: "
            + "; ".join(unknown)
            + " (`cityhub settings` lists them; settings inside a section are "
            "CITYHUB_<SECTION>__<FIELD>)"
        )
    settings = _checked_settings()
    level = log_level or command_log_level(ctx.invoked_subcommand, settings.log_level, os.environ)
    ctx.obj = level
    _setup_logging(level, settings.log_format)


def _announce(settings: Settings, text: str) -> None:
    """Tell the operator where things are: on stderr as it is, or as one log record when the
    logs are JSON lines (so that stderr stays one object per line)."""
    if settings.log_format == "json":
        log.info("%s", text)
    else:
        click.echo(text, err=True)


# --- the history store -------------------------------------------------------------------------


@main.group()
def history() -> None:
    """The history store on PostgreSQL (docs/history.md)."""


@history.command("migrate")
def history_migrate_cmd() -> None:
    """Create or upgrade the history store's tables (the writer also does at start)."""
    from cityhub.streams.history.connection import connect
    from cityhub.streams.history.migrate import current_version, migrate

    settings = Settings()
    schema = settings.history.db_schema

    async def run_migrations() -> tuple[list[int], int]:
        async with await connect(settings, autocommit=True) as conn:
            applied = await migrate(conn, schema)
            return applied, await current_version(conn)

    import psycopg

    try:
        applied, version = run_async(run_migrations())
    except psycopg.OperationalError as exc:
        raise click.ClickException(
            f"cannot reach the history store at {settings.history.host}:"
            f"{settings.history.port}: {exc} (`cityhub stack up` starts the local one)"
        ) from exc
    done = f"applied {', '.join(map(str, applied))}" if applied else "nothing to do"
    click.echo(f"history schema {schema}: version {version} ({done})")


@main.command("history-writer")
@click.option(
    "--management-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of /metrics and /healthz (CITYHUB_MANAGEMENT__PORT).",
)
def history_writer_cmd(management_port: int | None) -> None:
    """Only the history writer: observations and aggregates from Kafka into PostgreSQL
    (migrates the schema first; a database outage pauses it, /healthz says so)."""
    from cityhub.streams.history.service import history_writer_parts
    from cityhub.streams.runtime.host import run_parts
    from cityhub.streams.topic_admin import ensure_topics

    settings = _settings(management_port=management_port)

    async def main() -> None:
        await ensure_topics(settings)
        await run_parts(history_writer_parts(settings))

    run_async(main())


# --- the hub -----------------------------------------------------------------------------------


def _run_worker(settings: Settings, roles: Roles) -> None:
    """One process running ``roles`` (``cityhub.streams.wiring``), with the management endpoint
    (``/metrics``, ``/healthz``) on a port of its own, until Ctrl-C or SIGTERM; a part that fails
    ends the process with an error, for its supervisor to start it again."""
    from cityhub.streams.runtime.host import run_parts
    from cityhub.streams.topic_admin import ensure_topics
    from cityhub.streams.wiring import process_parts

    async def main() -> None:
        await ensure_topics(settings)
        await run_parts(process_parts(settings, roles))

    run_async(main())


_http_port = click.option(
    "--http-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of the operator API (CITYHUB_HTTP__PORT).",
)
_faults = click.option(
    "--faults",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Simulated: share of temperature readings that are a sensor fault (127 degC, flagged).",
)
_management_port = click.option(
    "--management-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of /metrics and /healthz (CITYHUB_MANAGEMENT__PORT).",
)


@main.command()
@_http_port
@_management_port
@click.option("--simulate", is_flag=True, help="Also run the simulator against the local broker.")
@click.option("--devices", default=50, show_default=True, help="Simulated devices.")
@click.option("--rate", default=20.0, show_default=True, help="Simulated messages per second.")
@_faults
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: one per core); they share the partitions.",
)
@click.option(
    "--one-process",
    is_flag=True,
    help="Everything in this one process instead (no supervisor): for debugging.",
)
def run(
    http_port: int | None,
    management_port: int | None,
    simulate: bool,
    devices: int,
    rate: float,
    faults: float,
    workers: int | None,
    one_process: bool,
) -> None:
    """The whole hub, supervised: the bridge, a worker per core, the API and the delivery, each
    a process of its own (the API on 127.0.0.1:8080; the hub's metrics and health, gathered from
    every process, on 127.0.0.1:9464 by default). One Ctrl-C stops them all."""
    from cityhub.streams.supervisor import Supervisor, hub_children, with_concrete_ports
    from cityhub.streams.topic_admin import ensure_topics

    settings = with_concrete_ports(_settings(http_port=http_port, management_port=management_port))
    if simulate:
        _refuse_simulating_over_tls(settings)
    _refuse_without_kek(settings)
    topics = Topics.for_prefix(settings.kafka.topic_prefix)
    api = f"http://{settings.http.host}:{settings.http.port}/api/v1"
    management = f"http://{settings.management.host}:{settings.management.port}"
    count = workers or os.cpu_count() or 1
    _announce(
        settings,
        f"cityhub: bridging mqtt://{settings.mqtt.host}:{settings.mqtt.port} into "
        f"{settings.kafka.bootstrap_servers}"
        + ("" if one_process else f" with {count} worker process(es)")
        + f"\n  operator API:  {api}\n"
        + (
            f"  console:       http://{settings.http.host}:{settings.http.port}/console/\n"
            if settings.console.enabled
            else ""
        )
        + f"  metrics:       {management}/metrics  (management port: no key, keep it private)\n"
        f"  health:        {management}/healthz\n"
        f"  observations:  cityhub tail {topics.observations}\n"
        f"  dead letters:  cityhub tail {topics.deadletter}\n"
        f"  aggregates:    cityhub tail {topics.aggregates}\n"
        f"  subscriptions: {api}/tenants/{{tenant}}/subscriptions",
    )
    sim = (
        {"devices": devices, "rate": rate, "duplicate_ratio": 0.02, "fault_ratio": faults}
        if simulate
        else None
    )
    if one_process:
        roles = Roles(
            bridge=True, worker=True, side_stages=True, api=True, deliver=True, simulate=sim
        )
        _run_worker(settings, roles)
        return
    # The level of `cityhub --log-level X run` holds for every child too.
    level = click.get_current_context().obj
    try:  # each child's Kafka user is read here (kafka.component_credentials_dir)
        children = hub_children(settings, workers=count, simulate=sim, log_level=level)
    except CityhubError as exc:
        raise click.ClickException(str(exc)) from exc

    async def supervise() -> None:
        await ensure_topics(settings)
        await Supervisor(settings, children).run()

    run_async(supervise())


@main.command("api")
@_http_port
@_management_port
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1024),
    default=1024 * 1024,
    show_default=True,
    help="Largest JSON request body; larger ones get 413.",
)
@click.option(
    "--max-import-bytes",
    type=click.IntRange(min=1024),
    default=None,
    help="Largest bulk import (CSV or JSON); larger ones get 413. "
    "Default: CITYHUB_QUOTAS__IMPORT_MAX_BYTES (16 MiB).",
)
def api_cmd(
    http_port: int | None,
    management_port: int | None,
    max_body_bytes: int,
    max_import_bytes: int | None,
) -> None:
    """Only the operator API (/api/v1; /metrics and /healthz on the management port); scale out
    by starting more: each materialises the registry topic."""
    from cityhub.streams.supervisor import with_concrete_ports  # a port taken: refused first

    settings = with_concrete_ports(_settings(http_port=http_port, management_port=management_port))
    _refuse_without_kek(settings)
    _announce(
        settings,
        f"cityhub: operator API on http://{settings.http.host}:{settings.http.port}/api/v1 "
        f"(OpenAPI document: /api/v1/openapi.json; console: /console/); metrics and health on "
        f"http://{settings.management.host}:{settings.management.port}",
    )
    limits = {"max_body_bytes": max_body_bytes}
    if max_import_bytes is not None:
        limits["max_import_bytes"] = max_import_bytes
    _run_worker(settings, Roles(api=True, api_limits=limits))


@main.command()
@_management_port
def bridge(management_port: int | None) -> None:
    """Only the MQTT → Kafka bridge (scale out with CITYHUB_MQTT__SHARE_GROUP)."""
    _run_worker(_settings(management_port=management_port), Roles(bridge=True))


@main.command()
@_management_port
def deliver(management_port: int | None) -> None:
    """Only the delivery of webhook and MQTT subscriptions (scale out by starting more: each
    subscription is one consumer group, delivered by one process at a time)."""
    _run_worker(_settings(management_port=management_port), Roles(deliver=True))


@main.command()
@_management_port
@click.option(
    "--stages",
    type=click.Choice(["all", "pipeline", "side"]),
    default="all",
    show_default=True,
    help="pipeline: normaliser, aggregators, routing; side: the open-data publisher and device "
    "health (each on a consumer group of its own); all: both in this process.",
)
def worker(management_port: int | None, stages: str) -> None:
    """Only the stream worker: normaliser, aggregators and the routing to subscriptions' topics,
    and the side stages (open data, device health) unless --stages says otherwise (scale out by
    starting more: they share the partitions)."""
    roles = Roles(worker=stages != "side", side_stages=stages != "pipeline")
    _run_worker(_settings(management_port=management_port), roles)


@main.command()
@click.option("--devices", default=100, show_default=True, help="How many devices.")
@click.option("--rate", default=50.0, show_default=True, help="Messages per second, in all.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--count", type=int, default=None, help="Stop after this many messages.")
@click.option("--seed", default=1, show_default=True, help="Fleet and readings are fixed by it.")
@click.option(
    "--session",
    type=click.IntRange(min=0),
    default=None,
    help="The devices' LoRaWAN session (it fixes their DevAddrs); default: new at every run. "
    "Give the number a run logged to replay its messages exactly.",
)
@click.option("--duplicates", default=0.0, show_default=True, help="Share of uplinks sent twice.")
@_faults
@click.option(
    "--register/--no-register",
    default=True,
    show_default=True,
    help="Register the fleet in the device registry first (tenant 'demo').",
)
def simulate(
    devices: int,
    rate: float,
    duration: float | None,
    count: int | None,
    seed: int,
    session: int | None,
    duplicates: float,
    faults: float,
    register: bool,
) -> None:
    """Publish realistic uplinks (The Things Stack, ChirpStack, SenML, JSON) to the local broker."""
    from cityhub.streams.devtools.simulator import build_fleet
    from cityhub.streams.devtools.simulator import simulate as run_simulation
    from cityhub.streams.devtools.simulator.publisher import require_broker
    from cityhub.streams.devtools.simulator.registration import expected_interval, register_fleet
    from cityhub.streams.registry.service import Registry
    from cityhub.streams.registry.store import RegistryStore

    settings = Settings()
    _refuse_simulating_over_tls(settings)

    async def register_then_simulate() -> Any:
        await require_broker(settings.mqtt)
        if register:
            store = RegistryStore(settings)
            await store.start()
            try:
                await register_fleet(
                    Registry(store),
                    build_fleet(devices, seed=seed),
                    interval_seconds=expected_interval(devices, rate),
                )
            finally:
                await store.stop()
        return await run_simulation(
            settings,
            devices,
            rate,
            duration=duration,
            count=count,
            seed=seed,
            session=session,
            duplicate_ratio=duplicates,
            fault_ratio=faults,
        )

    report = run_async(register_then_simulate())
    if report is not None:
        click.echo(report)


@main.command()
@click.argument("topic", default="observations")
@click.option("--from-beginning", is_flag=True)
@click.option("-n", "--limit", type=int, default=None, help="Stop after this many records.")
@click.option("--timeout", type=float, default=None, help="Stop after this many seconds.")
def tail(topic: str, from_beginning: bool, limit: int | None, timeout: float | None) -> None:
    """Print a topic's records: one of the hub's by its short name (observations, aggregates,
    deadletter, raw, device-health, ...) or any full topic name."""
    from cityhub.streams.devtools.tail import full_topic_name
    from cityhub.streams.devtools.tail import tail as run_tail

    settings = Settings()
    full = full_topic_name(settings.kafka.topic_prefix, topic)
    run_async(run_tail(settings, full, from_beginning=from_beginning, limit=limit, timeout=timeout))


@main.command("settings")
def show_settings() -> None:
    """Print the effective settings (secrets masked)."""
    click.echo(Settings().model_dump_json(indent=2))


mount_registry_commands(main)
main.add_command(activities)
main.add_command(consents)
main.add_command(data_subjects)
main.add_command(resident_tokens)
main.add_command(processing_log)
main.add_command(openapi_cmd)
main.add_command(mqtt)
main.add_command(stack)
main.add_command(sharing)
main.add_command(deadletters)

if __name__ == "__main__":
    main()
