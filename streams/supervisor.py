"""``cityhub run``: the hub as separate processes on every core, one command, one Ctrl-C.

The supervisor starts one child process per part (``cityhub bridge``, ``cityhub worker`` once
per core for the pipeline, ``cityhub worker --stages side`` once for the side stages (open
data, device health), ``cityhub api``, ``cityhub deliver``, and the simulator when asked), each
with a management port of its own, and serves the hub's management endpoint itself:

- ``/healthz`` asks every child and answers 200 only when all are healthy, listing each
  child's components under its name (``worker-1.routing``);
- ``/metrics`` gathers every child's metrics, each sample labelled with its ``process``, so
  Prometheus sees one target; counters of two workers are two series (sum them).

A child that exits is started again after a backoff (doubling from 0.5 s up to 30 s, back to
0.5 s after it ran for a minute), so one crashing part never takes the others down and a part
that crashes at once cannot spin. SIGINT or SIGTERM stops the children (SIGTERM, then SIGKILL
after 30 s) and then the supervisor. Children share the supervisor's process group, so a
SIGKILL of the group (a test, a container runtime) stops everything at once; a supervisor
killed alone leaves no orphans either (:mod:`cityhub.streams.parent_watch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from cityhub.connectors.kafka_clients import component_login
from cityhub.schemas.errors import ConfigurationError
from cityhub.schemas.settings import Settings
from cityhub.streams.parent_watch import SUPERVISOR_FD_VARIABLE
from cityhub.streams.runtime.host import IDLE_TIMEOUT_S
from cityhub.streams.wiring_worker import has_side_stages

log = logging.getLogger("cityhub.supervisor")

STOP_TIMEOUT_S = 30.0
BACKOFF_START_S = 0.5
BACKOFF_CAP_S = 30.0
STABLE_AFTER_S = 60.0
"""A child that ran this long before it exited is started again without waiting long."""
SCRAPE_TIMEOUT_S = 5.0
AFTER_TIMEOUT_S = 90.0
"""How long a child waits for the children it starts after; then it starts anyway."""
CHILD_MANAGEMENT_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One process of the hub: its name and the ``cityhub`` command that runs it."""

    name: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    probed: bool = True
    """Whether it serves a management endpoint (the simulator does not)."""
    after: tuple[str, ...] = ()
    """Children that must answer healthy before this one first starts: the simulator waits for
    the bridge, since Mosquitto drops what no session has subscribed to yet."""


def hub_children(
    settings: Settings,
    *,
    workers: int,
    simulate: dict[str, float] | None,
    log_level: str | None = None,
) -> list[ChildSpec]:
    """The processes of ``cityhub run``: the bridge, ``workers`` pipeline workers, one for the
    side stages when any is switched on (``worker-side``), the API, the delivery,
    the history writer when ``history.enabled``, and the simulator when ``simulate`` gives its
    options. Each gets a free management port on loopback, and ``log_level`` when given."""
    children = [ChildSpec("bridge", ("bridge",))]
    stages = ("--stages", "pipeline") if has_side_stages(settings) else ()
    children += [ChildSpec(f"worker-{i}", ("worker", *stages)) for i in range(1, workers + 1)]
    if stages:
        # One process for them all: each is one consumer group, a second process would only
        # share its partitions, and the pipeline's workers keep their event loops to themselves.
        children.append(ChildSpec("worker-side", ("worker", "--stages", "side")))
    children += [
        ChildSpec("api", ("api",), {"CITYHUB_HTTP__PORT": str(settings.http.port)}),
        ChildSpec("deliver", ("deliver",)),
    ]
    if settings.history.enabled:
        children.append(ChildSpec("history", ("history-writer",)))
    if simulate is not None:
        children.append(
            ChildSpec(
                "simulator",
                (
                    "simulate",
                    "--devices",
                    str(int(simulate["devices"])),
                    "--rate",
                    str(simulate["rate"]),
                    "--duplicates",
                    str(simulate.get("duplicate_ratio", 0.0)),
                    "--faults",
                    str(simulate.get("fault_ratio", 0.0)),
                ),
                probed=False,
                after=("bridge",),
            )
        )
    # A child's management endpoint is the supervisor's to ask, on loopback whatever host the
    # hub's own endpoint is bound to: the supervisor is what Prometheus and probes reach.
    ports = free_ports(len(children), avoid=hub_ports(settings))
    return [
        ChildSpec(
            c.name,
            c.args,
            {
                **c.env,
                # Its own Kafka user when kafka.component_credentials_dir names them.
                **component_login(settings.kafka, kafka_component(c.name)),
                "CITYHUB_MANAGEMENT__HOST": CHILD_MANAGEMENT_HOST,
                "CITYHUB_MANAGEMENT__PORT": str(port),
                **({"CITYHUB_LOG_LEVEL": log_level} if log_level else {}),
            },
            c.probed,
            c.after,
        )
        for c, port in zip(children, ports, strict=True)
    ]


def kafka_component(child: str) -> str:
    """The Kafka user (``kafka_security.COMPONENTS``) a child logs in as: ``worker-2`` is a
    ``worker``, ``deliver`` the ``delivery``; the simulator registers devices as the API does."""
    kind = child.split("-")[0]
    return {"deliver": "delivery", "simulator": "api"}.get(kind, kind)


def hub_ports(settings: Settings) -> set[int]:
    """The ports the hub is configured to serve on, which no child's endpoint may take: they
    are free until the API and the supervisor bind them."""
    return {settings.http.port, settings.management.port}


def with_concrete_ports(settings: Settings) -> Settings:
    """``settings`` with a free port for the API and the management endpoint where they ask
    for port 0 (any): chosen now, so that the banner and every child name the same one.
    ConfigurationError if a port they name is taken: a second hub with the same settings would
    otherwise start its bridge and workers, take the first hub's MQTT session and rebalance its
    consumer groups before its API found the port taken, half a minute later."""
    taken = [
        f"{name}.port {section.port} on {section.host}"
        for name in ("http", "management")
        if (section := getattr(settings, name)).port != 0
        and not _bindable(section.host, section.port)
    ]
    if taken:
        raise ConfigurationError(
            f"{' and '.join(taken)} is in use: is another `cityhub run` (or `cityhub api`) "
            "running with these settings? Stop it, or give this one other ports "
            "(--http-port, --management-port) and its own CITYHUB_MQTT__CLIENT_ID"
        )
    wanted = [name for name in ("http", "management") if getattr(settings, name).port == 0]
    ports = free_ports(len(wanted), avoid=hub_ports(settings))
    update = {
        name: getattr(settings, name).model_copy(update={"port": port})
        for name, port in zip(wanted, ports, strict=True)
    }
    return settings.model_copy(update=update) if update else settings


def _bindable(host: str, port: int) -> bool:
    """Whether a server could listen on ``host``:``port`` now (as aiohttp does: SO_REUSEADDR,
    so a closed connection's TIME_WAIT is no obstacle, a listening socket is)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return True  # a host that does not resolve: the server will say so itself
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError:
                return False
    return True


def free_ports(count: int, *, avoid: set[int]) -> list[int]:
    """``count`` distinct loopback ports that are free now and not in ``avoid``: all sockets stay
    bound until every port is chosen, so the system cannot hand out one twice."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket()
            held.append(s)
            s.bind((CHILD_MANAGEMENT_HOST, 0))
            port = int(s.getsockname()[1])
            if port not in avoid:
                ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


def next_backoff(current: float, ran_for: float) -> float:
    """The wait before a child is started again: doubled up to the cap, or back to the start
    when the child had been running stably."""
    if ran_for >= STABLE_AFTER_S:
        return BACKOFF_START_S
    return min(BACKOFF_CAP_S, max(BACKOFF_START_S, current * 2))


def merge_metrics(texts: Sequence[tuple[str, str]]) -> str:
    """Prometheus text of several processes as one exposition: each sample labelled with its
    ``process``, each family once. Pure (prometheus_client parses and writes it)."""
    families: dict[str, Metric] = {}
    for process, text in texts:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            for sample in family.samples:
                merged.samples.append(sample._replace(labels={**sample.labels, "process": process}))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families.values())))
    return generate_latest(registry).decode()


def with_process_up(text: str) -> str:
    """A child's scraped metrics with ``cityhub_process_up`` added: 1 when it answered, else 0
    (a child down or restarting has no other series, and an alert needs one that says so)."""
    up = 1 if text else 0
    family = (
        "# HELP cityhub_process_up 1 while the child process answers its metrics scrape.\n"
        f"# TYPE cityhub_process_up gauge\ncityhub_process_up {up}\n"
    )
    return text.rstrip("\n") + "\n" + family if text else family


class _Families:
    """A collector that yields fixed metric families (what ``merge_metrics`` gathered)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


class _Child:
    """One child process, started again whenever it exits until the supervisor stops."""

    def __init__(self, spec: ChildSpec, lifeline: int, taken: Callable[[], set[int]]) -> None:
        self.spec = spec
        self._lifeline = lifeline
        """The read end of the supervisor's pipe: the child stops when it reads its end."""
        self._taken = taken
        """Ports a new management port must avoid: the hub's and the other children's."""
        self.port = int(spec.env["CITYHUB_MANAGEMENT__PORT"])
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        backoff = BACKOFF_START_S
        while not self._stopping.is_set():
            started = time.monotonic()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cityhub.streams",
                *self.spec.args,
                env={
                    **os.environ,
                    **self.spec.env,
                    "CITYHUB_MANAGEMENT__PORT": str(self.port),
                    SUPERVISOR_FD_VARIABLE: str(self._lifeline),
                },
                pass_fds=(self._lifeline,),
            )
            self.starts += 1
            code = await self.process.wait()
            if self._stopping.is_set():
                return
            ran_for = time.monotonic() - started
            backoff = next_backoff(backoff, ran_for)
            if self.spec.probed and ran_for < STABLE_AFTER_S:
                # It may have died on its port: another process can have taken it since it
                # was found free. A new one, so that the child cannot fail on it for ever.
                (self.port,) = free_ports(1, avoid=self._taken() | {self.port})
            log.warning(
                "%s exited with %s after %.1f s; starting it again in %.1f s",
                self.spec.name,
                code,
                ran_for,
                backoff,
            )
            with contextlib.suppress(TimeoutError):  # a stop ends the wait
                await asyncio.wait_for(self._stopping.wait(), backoff)

    async def stop(self) -> None:
        self._stopping.set()
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("%s did not stop in %.0f s; killing it", self.spec.name, STOP_TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


class Supervisor:
    """Runs the children and the hub's management endpoint until cancelled."""

    def __init__(self, settings: Settings, children: Sequence[ChildSpec]) -> None:
        self._settings = settings
        # Only this process holds the write end, so it closes when this process ends, however
        # it ends: every child reads end-of-file then and stops (see parent_watch).
        self._lifeline, self._lifeline_held = os.pipe()
        self._children = [_Child(spec, self._lifeline, self._taken_ports) for spec in children]
        self._probed = [c for c in self._children if c.spec.probed]

    async def run(self) -> None:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S))
        runner = web.AppRunner(
            self._management_app(session), access_log=None, keepalive_timeout=IDLE_TIMEOUT_S
        )
        await runner.setup()
        management = self._settings.management
        tasks = [
            asyncio.create_task(self._start(c, session), name=c.spec.name) for c in self._children
        ]
        try:
            await web.TCPSite(runner, management.host, management.port).start()
            for child in self._children:
                log.info(
                    "%s: cityhub %s%s",
                    child.spec.name,
                    " ".join(child.spec.args),
                    f", metrics and health on http://{CHILD_MANAGEMENT_HOST}:{child.port}"
                    if child.spec.probed
                    else "",
                )
            await asyncio.gather(*tasks)
        finally:
            await asyncio.gather(*(c.stop() for c in self._children))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runner.cleanup()
            await session.close()
            os.close(self._lifeline)
            os.close(self._lifeline_held)

    def _taken_ports(self) -> set[int]:
        return hub_ports(self._settings) | {c.port for c in self._children}

    async def _start(self, child: _Child, session: aiohttp.ClientSession) -> None:
        """Run ``child`` once the children it starts after are healthy."""
        first = [c for c in self._probed if c.spec.name in child.spec.after]
        deadline = time.monotonic() + AFTER_TIMEOUT_S
        while first:
            states = await asyncio.gather(*(self._health(session, c) for c in first))
            if all(s is not None and all(s.values()) for s in states):
                break
            if time.monotonic() >= deadline:
                log.warning(
                    "%s: %s not healthy after %.0f s; starting it anyway",
                    child.spec.name,
                    ", ".join(c.spec.name for c in first),
                    AFTER_TIMEOUT_S,
                )
                break
            await asyncio.sleep(0.2)
        await child.run()

    def _management_app(self, session: aiohttp.ClientSession) -> web.Application:
        async def healthz(_: web.Request) -> web.Response:
            answers = await asyncio.gather(*(self._health(session, c) for c in self._probed))
            components: dict[str, bool] = {}
            for child, states in zip(self._probed, answers, strict=True):
                if states is None:
                    components[child.spec.name] = False
                else:
                    components.update({f"{child.spec.name}.{k}": v for k, v in states.items()})
            healthy = all(components.values())
            return web.json_response(
                {"status": "ok" if healthy else "unavailable", "components": components},
                status=200 if healthy else 503,
            )

        async def metrics(_: web.Request) -> web.Response:
            texts = await asyncio.gather(*(self._scrape(session, c) for c in self._probed))
            body = merge_metrics(
                [
                    (c.spec.name, with_process_up(t))
                    for c, t in zip(self._probed, texts, strict=True)
                ]
            )
            return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application(client_max_size=1024)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics)
        return app

    @staticmethod
    async def _health(session: aiohttp.ClientSession, child: _Child) -> dict[str, bool] | None:
        try:
            async with session.get(
                f"http://{CHILD_MANAGEMENT_HOST}:{child.port}/healthz"
            ) as response:
                doc = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        states = doc.get("components") if isinstance(doc, dict) else None
        if not isinstance(states, dict):
            return None
        return {str(k): bool(v) for k, v in states.items()}

    @staticmethod
    async def _scrape(session: aiohttp.ClientSession, child: _Child) -> str:
        try:
            async with session.get(
                f"http://{CHILD_MANAGEMENT_HOST}:{child.port}/metrics"
            ) as response:
                return await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return ""
