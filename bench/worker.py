"""One worker's throughput from a backlog, against a bare aiokafka consume→produce loop.

Both take the same raw envelopes of registered city uplinks (the simulated fleet, registered in
the run's own registry topic, with a few subscriptions so that routing writes too) from a topic
of their own, on the local stack:

- **bare**: one aiokafka consumer in a group reads the backlog with ``getmany`` and, for every
  record, one idempotent ``acks=all`` producer writes its value to an output topic; offsets are
  committed after the writes are confirmed. The least any stage that reads and writes Kafka at
  least once must do.
- **worker**: ``cityhub worker --stages pipeline`` (normaliser, aggregator, routing to the
  subscriptions' topics: one pipeline worker of ``cityhub run``) with a fresh topic prefix;
  ``--stages all`` adds the side stages (open data, device health) to the same process; the
  clock runs from its first normalised record until every raw record was taken and the
  aggregator counted every observation.

Prints each run, the medians, the machine's load average before and after, and
``ratio worker/bare: R`` (raw records per second). Run with the stack up:
``.venv/bin/python -m bench.worker [--records N --runs R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.stats import machine, median, today
from bench.workload import SEED, START, city_messages
from cityhub.connectors.formats import get_format
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.registry import Role
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.subscription import SubscriptionSpec
from cityhub.schemas.timefmt import rfc3339
from cityhub.schemas.trace_context import TRACEPARENT, new_traces
from cityhub.streams.devtools.simulator import build_fleet
from cityhub.streams.devtools.simulator.registration import TENANT, register_fleet
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.store import SubscriptionStore
from cityhub.streams.topic_admin import ensure_topics

BOOTSTRAP = os.environ.get("CITYHUB_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")
FORMAT_OF = {"tts": "tts-v3", "chirpstack": "chirpstack-v4", "senml": "cityhub-json"}
SUBSCRIPTIONS = (
    {"quantities": ["temperature", "relative_humidity"]},
    {"quantities": ["pm2_5", "pm10"]},
    {"areas": ["centrum", "noord"]},
    {"device_types": ["noise"]},
    {"tags": ["waste_bin"]},
    {"bbox": {"min_lat": 52.35, "min_lon": 4.85, "max_lat": 52.38, "max_lon": 4.92}},
    {},
)
"""Kafka-topic subscriptions of the demo tenant: routing writes each item they take."""


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (1 min) {five:.2f} (5 min)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    """The worker's metrics. Each scrape renders every metric in the worker, on its event loop:
    the bench asks ten times a second (it asked 80 times, four scrapes every 50 ms, and took
    several per cent of the worker it measured)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples in ``text`` that carry ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith((name + "{", name + " ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def raw_records(count: int, devices: int) -> list[tuple[bytes, bytes]]:
    """(key, raw envelope) as the bridge writes them, for ``count`` city uplinks."""
    out = []
    for i, m in enumerate(city_messages(count, devices=devices)):
        fmt = FORMAT_OF.get(m.format.value, "cityhub-json")
        key = get_format(fmt).partition_key(m.topic, m.payload)
        envelope = RawEnvelope("mqtt", fmt, m.topic, key, rfc3339(START + i * 0.01), m.payload)
        out.append((key.encode(), envelope.to_json()))
    return out


async def produce(topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=5, max_batch_size=262144
    )
    await producer.start()
    try:
        # Each with a trace of its own, as the bridge writes them (the worker carries it on).
        traces = new_traces(len(records))
        futures = [
            await producer.send(topic, value, key=key, headers=[(TRACEPARENT, trace.header())])
            for (key, value), trace in zip(records, traces, strict=True)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def prepare(prefix: str, records: list[tuple[bytes, bytes]], devices: int) -> Settings:
    """Topics, the registered fleet, the subscriptions and the backlog of a run."""
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    await ensure_topics(settings)
    registry_store = RegistryStore(settings)
    await registry_store.start()
    subscription_store = SubscriptionStore(settings)
    await subscription_store.start()
    try:
        registry = Registry(registry_store)
        await register_fleet(registry, build_fleet(devices, seed=SEED))
        key, _ = await registry.create_key(Principal.system(), TENANT, Role.SUBSCRIBER, "bench")
        who = Principal(key.id, TENANT, Role.SUBSCRIBER)
        service = Subscriptions(subscription_store, registry.view, topic_prefix=prefix)
        for i, spec_filter in enumerate(SUBSCRIPTIONS):
            spec = SubscriptionSpec.model_validate(
                {
                    "id": f"s{i}",
                    "name": f"bench {i}",
                    "filter": spec_filter,
                    "delivery": {"kind": "kafka"},
                }
            )
            await service.create(who, TENANT, spec)
    finally:
        await subscription_store.stop()
        await registry_store.stop()
    await produce(f"{prefix}.raw", records)
    return settings


async def bare(prefix: str, count: int) -> float:
    """Records per second of the bare consume→produce loop over ``<prefix>.raw``."""
    consumer = AIOKafkaConsumer(
        f"{prefix}.raw",
        bootstrap_servers=BOOTSTRAP,
        group_id=f"{prefix}-bare",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=262144,
    )
    await consumer.start()
    await producer.start()
    taken = 0
    started: float | None = None
    try:
        while taken < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            if started is None and batches:
                started = time.perf_counter()
            futures = []
            for records in batches.values():
                for r in records:
                    futures.append(
                        await producer.send(
                            f"{prefix}.bare-out", r.value, key=r.key, headers=list(r.headers)
                        )
                    )
                    taken += 1
            await asyncio.gather(*futures)
            if futures:
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()
    assert started is not None
    return count / (time.perf_counter() - started)


def worker(
    prefix: str, count: int, workdir: Path, stages: str, timeout: float = 900
) -> tuple[float, float]:
    """(raw records per second, observations) of one ``cityhub worker --stages stages`` over
    the backlog."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "CITYHUB_KAFKA__BOOTSTRAP_SERVERS": BOOTSTRAP,
            "CITYHUB_KAFKA__TOPIC_PREFIX": prefix,
            "CITYHUB_WORKER__APP_ID": f"{prefix}-app",
            "CITYHUB_MANAGEMENT__PORT": str(port),
            "CITYHUB_LOG_LEVEL": "warning",
        }
    )
    with open(workdir / f"{prefix}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cityhub.streams", "worker", "--stages", stages],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout
        first: float | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"the worker exited; see {workdir / prefix}.log")
            try:
                text = scrape(port)
            except OSError:
                time.sleep(0.2)
                continue
            taken = metric(text, "cityhub_normaliser_messages_total")
            written = metric(text, "cityhub_normaliser_observations_total")
            counted = metric(
                text, "cityhub_aggregator_events_total", grouping="device", event="observations"
            )
            dead = metric(text, "cityhub_deadletters_total", stage="normalise")
            if first is None and taken:
                first = time.monotonic()
            if first is not None and taken >= count and counted >= written:
                seconds = time.monotonic() - first
                if dead:
                    print(f"    ({dead:.0f} dead letters in the run: check the workload)")
                return count / seconds, written
            time.sleep(0.1)
        raise SystemExit(f"the worker did not finish in time; see {workdir / prefix}.log")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=40_000, help="raw envelopes per run")
    parser.add_argument("--devices", type=int, default=1_000, help="registered devices")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--logs", type=Path, default=None, help="keep the workers' logs here")
    parser.add_argument(
        "--stages",
        choices=("pipeline", "all"),
        default="pipeline",
        help="the worker's stages: the pipeline (as cityhub run's) or all (side stages too)",
    )
    args = parser.parse_args()
    print(f"bench.worker, {today()}, {machine()}, worker --stages {args.stages}")
    print(f"  before: {load()}")
    records = raw_records(args.records, args.devices)
    bare_rates, worker_rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.logs or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for run in range(args.runs):
            prefix = f"bench-worker-{uuid.uuid4().hex[:8]}"
            asyncio.run(prepare(prefix, records, args.devices))
            bare_rate = asyncio.run(bare(prefix, len(records)))
            worker_rate, observations = worker(prefix, len(records), workdir, args.stages)
            bare_rates.append(bare_rate)
            worker_rates.append(worker_rate)
            print(
                f"  run {run + 1}: bare {bare_rate:>8,.0f} records/s   worker {worker_rate:>7,.0f} "
                f"raw records/s ({observations / len(records) * worker_rate:,.0f} observations/s)"
                f"   {load()}"
            )
    b, w = median(bare_rates), median(worker_rates)
    print(f"  median: bare {b:,.0f} records/s, worker {w:,.0f} raw records/s")
    print(f"  after: {load()}")
    print(f"ratio worker/bare: {w / b:.3f}")


if __name__ == "__main__":
    main()
