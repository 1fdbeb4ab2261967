"""Delivery latency: MQTT publish → bridge → Kafka → normaliser → the subscription's topic →
delivery task → a signed webhook POST received by a loopback receiver, at a fixed open-loop
rate; beside it, in the same run, a bare aiokafka consumer of ``<prefix>.observations`` (the
spine alone, as in ``bench.pipeline_latency``).

Each run starts its own ``cityhub run`` (fresh topic prefix and delivery group prefix,
loopback, 127.0.0.1 allowed as a webhook host), seeds the registry (tenant ``bench``, device type
``counter``, ``--devices`` registered plain-MQTT devices, a subscriber key), creates a webhook
subscription of the tenant's ``counter`` devices through the API to an aiohttp receiver in this
process (every batch is verified with the independent ``standardwebhooks`` package; a bad
signature stops the bench), and waits until the hub routes it (``cityhub_routed_subscriptions``)
and a warm-up message came through both ways.

Message ``i`` is ``{"time": <send time>, "count": i}`` on ``cityhub/ingest/dlat-<i % devices>``:
one observation whose value is ``i``. The send time is kept exactly in a map by ``i`` (taken just
before the QoS 1 publish); latency = the receipt time (webhook handler entered / consumer batch
returned) minus that. Then, per run:

1. the maximum: a burst of ``--burst`` messages, published as fast as the publisher can;
   maximum = burst / (last item received by the webhook - first publish), i.e. MQTT → webhook
   delivered, end to end (the bare consumer's figure over the same burst is printed beside it);
   then it waits until the hub is idle again (the burst's aftermath: changelogs, other agents);
2. an open-loop run at ``--load`` (default 30 %) of that maximum for ``--seconds``: messages
   leave on schedule whatever the pipeline does; p50, p90, p99 and max for the webhook and for
   the bare consumer, the delivery stage alone (webhook receipt minus the consumer's receipt of
   the same message), and p99_webhook / p99_consumer. Each run also prints the cores used by the
   hub, the brokers, the bench and every other process during the open loop, and the size of
   Mosquitto's persistence file (other sessions' queues, rewritten every second): a run that
   overlapped someone else's work shows it.

Prints each run and the median over ``--runs`` (default 3). Everything is loopback; each run
stops its hub, ends the bridge's persistent MQTT session and deletes its topics.

Run: ``.venv/bin/python -m bench.delivery_latency`` with the stack up. ``--wait-quiet 0.5``
waits before each run for a low load; ``--profile DIR`` records the hub with py-spy during each
open loop (collapsed stacks); ``--dump DIR`` writes each message's times (sent, bridge
received, normalised, consumer, webhook) as CSV.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from bench.stats import machine, median, today
from cityhub.connectors.mqtt.session import end_session
from cityhub.schemas.registry import (
    NETWORK_DECODER,
    Classification,
    DeviceSpec,
    DeviceTypeSpec,
    Role,
    TenantSpec,
)
from cityhub.schemas.settings import KafkaSettings, MqttSettings, Settings
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

BOOTSTRAP = "127.0.0.1:9092"
MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883
TENANT, DEVICE_TYPE, SUBSCRIPTION = "bench", "counter", "latency"
WARM_UP_BASE = 10_000_000
"""Message numbers of the warm-up (the burst counts from 0, the open loop from LOAD_BASE)."""
LOAD_BASE = 1_000_000
PUBLISH_WINDOW = 64
"""QoS 1 publishes in flight at once (as ``bench.pipeline_latency``)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the hub ------------------------------------------------------------------------------------
@dataclass
class HubProcess:
    prefix: str
    workdir: Path
    port: int = field(default_factory=free_port)
    """The operator API's."""
    management_port: int = field(default_factory=free_port)
    """``/metrics`` and ``/healthz``."""
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    """The Mosquitto it bridges (the local stack's unless given)."""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_id(self) -> str:
        return f"{self.prefix}-bridge"

    def start(self, timeout: float = 90.0) -> None:
        env = dict(os.environ)
        env.update(
            {
                "CITYHUB_KAFKA__TOPIC_PREFIX": self.prefix,
                "CITYHUB_WORKER__APP_ID": f"{self.prefix}-app",
                "CITYHUB_MQTT__HOST": self.mqtt.host,
                "CITYHUB_MQTT__PORT": str(self.mqtt.port),
                "CITYHUB_MQTT__CLIENT_ID": self.client_id,
                "CITYHUB_DELIVERY__GROUP_PREFIX": f"{self.prefix}-delivery",
                "CITYHUB_HTTP__PORT": str(self.port),
                "CITYHUB_MANAGEMENT__PORT": str(self.management_port),
                # The default level. Not "warning": faust's worker then keeps its terminal
                # spinner, which sets the root logger to DEBUG, and every aiokafka debug call
                # builds a LogRecord (8 % of the hub's time in a py-spy profile).
                "CITYHUB_LOG_LEVEL": "info",
                "CITYHUB_SUBSCRIPTIONS__WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
            }
        )
        with open(self.workdir / f"{self.prefix}-hub.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cityhub.streams", "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the hub exited with {self.proc.returncode}: {self.log_tail()}")
            url = f"http://127.0.0.1:{self.management_port}/healthz"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
            time.sleep(0.3)
        raise SystemExit(f"the hub did not become healthy in {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / f"{self.prefix}-hub.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def metric(self, name: str) -> float:
        url = f"http://127.0.0.1:{self.management_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


async def seed(prefix: str, devices: int) -> str:
    """Tenant, device type and devices in the registry of ``prefix``; a subscriber key."""
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    store = RegistryStore(settings)
    await store.start()
    try:
        registry = Registry(store)
        system = Principal.system()
        await registry.create_tenant(system, TenantSpec(id=TENANT, name="Latency bench"))
        await registry.create_type(
            system,
            TENANT,
            DeviceTypeSpec(
                id=DEVICE_TYPE,
                name="Counter",
                decoder=NETWORK_DECODER,
                classification=Classification.INTERNAL,
            ),
        )
        specs = [
            DeviceSpec(id=device_id(i), name=f"counter {i}", type=DEVICE_TYPE)
            for i in range(devices)
        ]
        report = await registry.import_devices(system, TENANT, specs)
        if report.failed:
            raise SystemExit(f"registering the bench devices failed: {report}")
        return (await registry.create_key(system, TENANT, Role.SUBSCRIBER, "latency bench"))[1]
    finally:
        await store.stop()


async def delete_topics(prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


# --- what is received ---------------------------------------------------------------------------
@dataclass
class Receiver:
    """The webhook: verifies every batch, records the first receipt time of each message."""

    port: int = field(default_factory=free_port)
    secret: str | None = None
    at: dict[int, float] = field(default_factory=dict)
    batches: int = 0
    bad_signatures: int = 0
    _verifier: Webhook | None = None
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        now = time.time()
        if self._verifier is None:
            assert self.secret is not None
            self._verifier = Webhook(self.secret)
        try:
            self._verifier.verify(body, dict(request.headers))
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=401)
        self.batches += 1
        for item in orjson.loads(body)["items"]:
            self.at.setdefault(int(item["value"]), now)
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def consume(
    topic: str,
    at: dict[int, float],
    ready: asyncio.Event,
    stamps: dict[int, tuple[float, float]] | None = None,
) -> None:
    """A bare consumer of ``topic`` from its end: first receipt time of each message number
    (and, into ``stamps`` when given, the observation's ``received_at``, when the bridge got the
    MQTT message, and its Kafka timestamp, when the normaliser wrote it). Until cancelled."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    await consumer.start()
    try:
        for _ in range(300):
            if consumer.partitions_for_topic(topic):
                break
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not tps:
            raise SystemExit(f"topic {topic} did not appear")
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the lazy seek before anything is published
            await consumer.position(tp)
        ready.set()
        while True:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                now = time.time()
                for record in batch:
                    doc = orjson.loads(record.value)
                    n = int(doc["value"])
                    at.setdefault(n, now)
                    if stamps is not None and n not in stamps:
                        received = datetime.fromisoformat(doc["received_at"]).timestamp()
                        stamps[n] = (received, record.timestamp / 1000)
    finally:
        await consumer.stop()


# --- publishing ---------------------------------------------------------------------------------
def device_id(i: int) -> str:
    return f"dlat-{i:04d}"


async def publish(
    numbers: range, devices: int, sent: dict[int, float], rate: float | None
) -> float:
    """Publish message ``i`` for each of ``numbers`` at QoS 1 (``rate`` per second on schedule,
    or as fast as possible); ``sent[i]`` is the time just before its publish. Returns how far
    (seconds) the publisher fell behind its schedule at worst."""
    behind = 0.0
    async with aiomqtt.Client(
        MQTT_HOST,
        MQTT_PORT,
        identifier=f"dlat-pub-{uuid.uuid4().hex[:6]}",
        max_inflight_messages=PUBLISH_WINDOW,
    ) as client:
        client.pending_calls_threshold = 2 * PUBLISH_WINDOW  # the window bounds them
        window = asyncio.Semaphore(PUBLISH_WINDOW)
        start = time.monotonic()

        async def one(n: int, due: float) -> None:
            nonlocal behind
            async with window:
                now = time.time()
                stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="microseconds")
                payload = orjson.dumps({"time": stamp, "count": n})
                sent[n] = now
                behind = max(behind, time.monotonic() - due)
                await client.publish(f"cityhub/ingest/{device_id(n % devices)}", payload, qos=1)

        tasks = []
        for k, n in enumerate(numbers):
            due = start + k / rate if rate else time.monotonic()
            ahead = due - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            tasks.append(asyncio.create_task(one(n, due)))
        await asyncio.gather(*tasks)
    return behind


async def wait_all(
    numbers: Iterable[int], receipts: Iterable[dict[int, float]], timeout: float
) -> bool:
    want = set(numbers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(want <= r.keys() for r in receipts):
            return True
        await asyncio.sleep(0.1)
    return False


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    q = statistics.quantiles(ordered, n=100)
    return {"p50": q[49], "p90": q[89], "p99": q[98], "max": ordered[-1]}


def dump(path: Path, rows: list[tuple[float | None, ...]]) -> None:
    with open(path, "w") as f:
        f.write("n,sent,bridge_received,normalised,consumer,webhook\n")
        for row in rows:
            f.write(",".join("" if v is None else str(v) for v in row) + "\n")


def start_profiler(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` (every thread, native frames off) for ``seconds`` into ``out``
    (collapsed stacks: ``grep``, or flamegraph.pl / speedscope)."""
    py_spy = str(Path(sys.executable).parent / "py-spy")
    options = ["--duration", str(int(seconds)), "--rate", "200", "--format", "raw"]
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), *options, "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (``/proc/stat``: all but idle, iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Cores used on average over an interval by groups of processes, and by everything else on
    the machine: whether someone else's work overlapped a run."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._start = self._read()

    def _read(self) -> tuple[float, float, dict[str, float]]:
        used = {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.groups.items()}
        return time.monotonic(), machine_busy_seconds(), used

    def cores(self) -> dict[str, float]:
        """Per group, and ``others``: the rest of the machine."""
        t0, busy0, used0 = self._start
        t1, busy1, used1 = self._read()
        span = max(t1 - t0, 1e-9)
        out = {name: (used1[name] - used0[name]) / span for name in self.groups}
        out["others"] = max(0.0, (busy1 - busy0) / span - sum(out.values()))
        return out


async def hub_idle(pid: int, below: float, timeout: float) -> float:
    """Wait until the hub used less than ``below`` of a core over each of two seconds in a row
    (it finished the burst's aftermath: table changelogs, commits, other agents' backlogs), at
    most ``timeout`` seconds; how long that took."""
    started = time.monotonic()
    quiet = 0
    last = cpu_seconds(pid)
    while quiet < 2 and time.monotonic() - started < timeout:
        await asyncio.sleep(1.0)
        now = cpu_seconds(pid)
        quiet = quiet + 1 if now - last < below else 0
        last = now
    return time.monotonic() - started


def mosquitto_store_mb() -> float:
    """Size of Mosquitto's persistence file: what it holds for sessions (other people's stale
    persistent sessions included), which it rewrites whole every second (autosave_interval 1),
    stalling every client meanwhile when it is large."""
    path = Settings().stack.state_dir / "mosquitto" / "data" / "mosquitto.db"
    try:
        return path.stat().st_size / 1e6
    except OSError:
        return 0.0


def broker_pids() -> list[int]:
    state = Settings().stack.state_dir
    pids = []
    for name in ("kafka/kafka.pid", "mosquitto/mosquitto.pid"):
        with contextlib.suppress(OSError, ValueError):
            pids.append(int((state / name).read_text().strip()))
    return pids


def wait_quiet(below: float, timeout: float = 900.0) -> None:
    """Wait (bounded) until the 1-minute load average is below ``below``."""
    deadline = time.monotonic() + timeout
    while os.getloadavg()[0] >= below and time.monotonic() < deadline:
        time.sleep(10)
    if os.getloadavg()[0] >= below:
        print(f"  load still {os.getloadavg()[0]:.2f} after {timeout:.0f} s; running anyway")


# --- one run ------------------------------------------------------------------------------------
async def api_subscribe(hub: HubProcess, key: str, receiver: Receiver) -> dict[str, Any]:
    spec = {
        "id": SUBSCRIPTION,
        "name": "Latency bench",
        "filter": {"device_types": [DEVICE_TYPE]},
        "delivery": {"kind": "webhook", "url": receiver.url},
    }
    url = f"http://127.0.0.1:{hub.port}/api/v1/tenants/{TENANT}/subscriptions"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=spec, headers={"Authorization": f"Bearer {key}"}) as response,
    ):
        doc = await response.json()
        if response.status != 201:
            raise SystemExit(f"creating the subscription failed: {response.status} {doc}")
        return dict(doc)


async def one_run(args: argparse.Namespace, workdir: Path, index: int) -> dict[str, float]:
    prefix = f"dlat{uuid.uuid4().hex[:8]}"
    hub = HubProcess(prefix, workdir)
    receiver = Receiver()
    await receiver.start()
    consumer_at: dict[int, float] = {}
    consumer: asyncio.Task[None] | None = None
    profiler: subprocess.Popen[bytes] | None = None
    try:
        key = await seed(prefix, args.devices)
        await asyncio.to_thread(hub.start)
        doc = await api_subscribe(hub, key, receiver)
        receiver.secret = doc["secret"]
        for _ in range(300):
            if await asyncio.to_thread(hub.metric, "cityhub_routed_subscriptions") >= 1:
                break
            await asyncio.sleep(0.2)
        else:
            raise SystemExit("the hub did not route the subscription within a minute")
        ready = asyncio.Event()
        stamps: dict[int, tuple[float, float]] | None = {} if args.dump else None
        consumer = asyncio.create_task(
            consume(f"{prefix}.observations", consumer_at, ready, stamps)
        )
        await asyncio.wait_for(ready.wait(), 90)

        # Warm-up: until one message came through both ways (delivery group joined, etc.).
        sent: dict[int, float] = {}
        for attempt in range(60):
            numbers = range(WARM_UP_BASE + attempt * 20, WARM_UP_BASE + attempt * 20 + 20)
            await publish(numbers, args.devices, sent, None)
            if await wait_all(numbers, (receiver.at, consumer_at), 2.0):
                break
        else:
            raise SystemExit(f"nothing reached the webhook within the warm-up: {hub.log_tail()}")
        if receiver.bad_signatures or not receiver.batches:
            raise SystemExit("the webhook's signatures did not verify")
        await asyncio.sleep(2.0)

        # 1. The maximum: a burst, until the webhook received all of it.
        burst = range(args.burst)
        started = time.time()
        await publish(burst, args.devices, sent, None)
        if not await wait_all(burst, (receiver.at, consumer_at), 300):
            raise SystemExit(
                f"burst incomplete: webhook {len(burst) - len(set(burst) - receiver.at.keys())}, "
                f"consumer {len(burst) - len(set(burst) - consumer_at.keys())} of {args.burst}"
            )
        max_webhook = args.burst / (max(receiver.at[i] for i in burst) - started)
        max_consumer = args.burst / (max(consumer_at[i] for i in burst) - started)
        assert hub.proc is not None
        settled = await hub_idle(hub.proc.pid, args.idle_below, 180)
        await asyncio.sleep(args.settle)

        # 2. Open loop at --load of the maximum.
        rate = max_webhook * args.load
        count = max(100, int(rate * args.seconds))
        numbers = range(LOAD_BASE, LOAD_BASE + count)
        load_before = os.getloadavg()[0]
        store_mb = mosquitto_store_mb()
        groups = {"hub": [hub.proc.pid], "bench": [os.getpid()], "brokers": broker_pids()}
        if args.profile is not None:
            out = Path(args.profile) / f"hub-run{index + 1}.txt"
            profiler = start_profiler(hub.proc.pid, args.seconds, out)
            groups["bench"].append(profiler.pid)
        meter = CpuMeter(groups)
        behind = await publish(numbers, args.devices, sent, rate)
        complete = await wait_all(numbers, (receiver.at, consumer_at), 120)
        cores = meter.cores()
        load_after = os.getloadavg()[0]
        if args.dump is not None:
            assert stamps is not None
            rows = [
                (i, sent[i], *stamps.get(i, (None, None)), consumer_at.get(i), receiver.at.get(i))
                for i in numbers
            ]
            dump(Path(args.dump) / f"run{index + 1}.csv", rows)
        if not complete:
            print(
                f"  run {index + 1}: incomplete: webhook {len(receiver.at.keys() & set(numbers))},"
                f" consumer {len(consumer_at.keys() & set(numbers))} of {count}",
                file=sys.stderr,
            )
        if receiver.bad_signatures:
            raise SystemExit(f"{receiver.bad_signatures} webhook batch(es) failed verification")
        hook = percentiles([receiver.at[i] - sent[i] for i in numbers if i in receiver.at])
        bare = percentiles([consumer_at[i] - sent[i] for i in numbers if i in consumer_at])
        both = [i for i in numbers if i in receiver.at and i in consumer_at]
        stage = percentiles([receiver.at[i] - consumer_at[i] for i in both])
        result = {
            "max_webhook": max_webhook,
            "max_consumer": max_consumer,
            "rate": rate,
            "n": float(count),
            "behind": behind,
            "load_before": load_before,
            "load_after": load_after,
            **{f"cpu_{k}": v for k, v in cores.items()},
            "mosquitto_mb": max(store_mb, mosquitto_store_mb()),
            "settled": settled,
            **{f"hook_{k}": v for k, v in hook.items()},
            **{f"bare_{k}": v for k, v in bare.items()},
            **{f"stage_{k}": v for k, v in stage.items()},
        }
        print(f"  run {index + 1}: {line(result)}", flush=True)
        return result
    finally:
        if profiler is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(profiler.wait, args.seconds + 30)
        if consumer is not None:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await consumer
        await asyncio.to_thread(hub.stop)
        await end_session(MqttSettings(host=MQTT_HOST, port=MQTT_PORT, client_id=hub.client_id))
        await receiver.stop()
        with contextlib.suppress(Exception):
            await delete_topics(prefix)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def line(r: dict[str, float]) -> str:
    return (
        f"max {r['max_webhook']:,.0f}/s to the webhook ({r['max_consumer']:,.0f}/s to the bare"
        f" consumer); open loop {r['rate']:,.0f}/s, {r['n']:.0f} msgs:"
        f" webhook p50 {ms(r['hook_p50'])} p90 {ms(r['hook_p90'])} p99 {ms(r['hook_p99'])}"
        f" max {ms(r['hook_max'])} | bare consumer p50 {ms(r['bare_p50'])}"
        f" p90 {ms(r['bare_p90'])} p99 {ms(r['bare_p99'])} max {ms(r['bare_max'])}"
        f" | webhook - consumer per message p50 {ms(r['stage_p50'])} p99 {ms(r['stage_p99'])}"
        f" | publisher behind {ms(r['behind'])} at worst, load {r['load_before']:.2f}"
        f" → {r['load_after']:.2f}; cores used: hub {r['cpu_hub']:.2f}, brokers"
        f" {r['cpu_brokers']:.2f}, bench {r['cpu_bench']:.2f}, other processes"
        f" {r['cpu_others']:.2f}; Mosquitto's store {r['mosquitto_mb']:.1f} MB"
        f" | the hub idle {r['settled']:.0f} s after the burst"
    )


async def main(args: argparse.Namespace) -> None:
    print(f"delivery latency, {today()}, {machine()}", flush=True)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # "topic not found yet" and such
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.runs):
            if args.wait_quiet is not None:
                await asyncio.to_thread(wait_quiet, args.wait_quiet)
            results.append(await one_run(args, Path(tmp), index))
    med = {k: median([r[k] for r in results]) for k in results[0]}
    print(f"  median of {args.runs} runs:")
    print(
        f"  maximum (burst of {args.burst}, MQTT publish → webhook delivered):"
        f" {med['max_webhook']:,.0f} messages/s (the bare consumer saw the same burst at"
        f" {med['max_consumer']:,.0f}/s)"
    )
    print(f"  open loop at {args.load:.0%} of it ({med['rate']:,.0f}/s for {args.seconds:.0f} s):")
    for label, p in (("webhook      ", "hook"), ("bare consumer", "bare")):
        print(
            f"    {label} p50 {ms(med[f'{p}_p50'])}, p90 {ms(med[f'{p}_p90'])},"
            f" p99 {ms(med[f'{p}_p99'])}, max {ms(med[f'{p}_max'])}"
        )
    print(
        f"    the delivery stage (webhook receipt - bare consumer receipt of the same message):"
        f" p50 {ms(med['stage_p50'])}, p99 {ms(med['stage_p99'])}"
    )
    ratio = median([r["hook_p99"] / r["bare_p99"] for r in results])
    print(f"  p99 webhook / p99 bare consumer: {ratio:.2f} (target: webhook p99 ≤ 250 ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--load", type=float, default=0.3)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument(
        "--idle-below",
        type=float,
        default=0.15,
        metavar="CORES",
        help="after the burst, wait until the hub uses less than this for 2 s (at most 180 s)",
    )
    parser.add_argument(
        "--settle", type=float, default=2.0, help="further seconds before the open loop"
    )
    parser.add_argument(
        "--profile", metavar="DIR", help="record the hub with py-spy in each open loop"
    )
    parser.add_argument("--dump", metavar="DIR", help="write each open loop's times as CSV")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        metavar="LOAD",
        help="before each run, wait (up to 15 min) until the 1-minute load average is below LOAD",
    )
    arguments = parser.parse_args()
    for directory in (arguments.profile, arguments.dump):
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
    asyncio.run(main(arguments))
