"""End-to-end latency of the spine: MQTT publish → bridge → Kafka → normaliser → an observation
read by a bare Kafka consumer of ``cityhub.observations``, at a fixed open-loop rate.

First the maximum: a burst of N messages, timed until the last observation is read. Then an
open-loop run at ``--load`` (default 30 %) of that maximum: each message carries its send time
(as the generic JSON ``time``), the consumer's receive time minus it is the latency. Prints p50,
p90, p99 and max. Each phase runs its own ``cityhub run`` (loopback only, a fresh topic prefix,
a worker per core) against a Mosquitto of its own with an empty store (``bench.private_broker``),
and measures only once the workers' consumer group has settled.

Run: ``.venv/bin/python -m bench.pipeline_latency`` with the stack up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.private_broker import private_mosquitto
from bench.stats import machine, today
from cityhub.connectors.mqtt.session import MqttSession
from cityhub.schemas.settings import MqttSettings


def start_hub(prefix: str, port: int, workdir: Path, mqtt: MqttSettings) -> subprocess.Popen[bytes]:
    """A ``cityhub run`` with its management endpoint (``/healthz``) on ``port``, bridging the
    Mosquitto of ``mqtt``."""
    env = dict(os.environ)
    env.update(
        {
            "CITYHUB_MQTT__HOST": mqtt.host,
            "CITYHUB_MQTT__PORT": str(mqtt.port),
            "CITYHUB_KAFKA__TOPIC_PREFIX": prefix,
            "CITYHUB_WORKER__APP_ID": f"{prefix}-app",
            "CITYHUB_WORKER__ALLOW_UNKNOWN_DEVICES": "true",
            "CITYHUB_MQTT__CLIENT_ID": f"{prefix}-bridge",
            "CITYHUB_HTTP__PORT": "0",  # any free port: the API is not used here
            "CITYHUB_MANAGEMENT__PORT": str(port),
            "CITYHUB_LOG_LEVEL": "warning",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cityhub.streams", "run"],
        env=env,
        stdout=open(workdir / "hub.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"hub did not become healthy; see {workdir / 'hub.log'}")


def message(i: int, sent: float) -> tuple[str, bytes]:
    stamp = datetime.fromtimestamp(sent, UTC).isoformat(timespec="microseconds")
    return f"cityhub/ingest/lat-{i % 200}", json.dumps({"time": stamp, "count": i}).encode()


async def warm_up(topic: str, mqtt: MqttSettings) -> None:
    """Send until an observation comes out: a worker has its partitions and its state."""
    for _ in range(60):
        await publish(20, None, mqtt)
        if await observe(topic, 1, 1.0):
            return
    raise SystemExit("no observation came out within a minute")


def worker_partitions(port: int, topic: str) -> dict[str, set[str]]:
    """The partitions of ``topic`` each worker process holds, from the hub's ``/metrics`` (a
    worker sets its lag gauge for the partitions it holds only)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    held: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "cityhub_consumer_lag_messages" and s.labels.get("topic") == topic:
                held.setdefault(s.labels["process"], set()).add(s.labels["partition"])
    return held


async def settled(port: int, topic: str, workers: int, timeout: float = 90.0) -> None:
    """Wait until the consumer group has settled: every worker holds partitions of ``topic``
    and no partition is held twice. Measuring before would time a rebalance (the broker
    delays the first one by group.initial.rebalance.delay.ms), not the pipeline."""
    deadline = time.monotonic() + timeout
    held: dict[str, set[str]] = {}
    while time.monotonic() < deadline:
        held = worker_partitions(port, topic)
        parts = [p for ps in held.values() for p in ps]
        if len(held) == workers and len(parts) == len(set(parts)):
            await asyncio.sleep(2.0)  # and a little traffic-free calm after it
            return
        await asyncio.sleep(0.5)
    raise SystemExit(f"the workers did not settle within {timeout:.0f} s: {held}")


Hops = tuple[float, float, float, float]
"""An observation's latency and its parts: (total, to the bridge, through the worker, read)."""


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def observe(topic: str, want: int, timeout: float, *, from_end: bool = False) -> list[Hops]:
    """Latencies of the first ``want`` observations of ``topic`` (read from its start, or only
    the new ones with ``from_end``), each split at the bridge's ``received_at`` and the
    observation record's timestamp (its append in the worker's writer): publish → bridge,
    bridge → raw topic → worker → appended, appended → written and read here."""
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9092", enable_auto_commit=False)
    await consumer.start()
    latencies: list[Hops] = []
    try:
        while not consumer.partitions_for_topic(topic):
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        if from_end:
            await consumer.seek_to_end(*tps)
            for tp in tps:  # resolve the lazy seek now, before anything new is published
                await consumer.position(tp)
        else:
            await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while len(latencies) < want and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                now = time.time()
                for record in batch:
                    doc = json.loads(record.value)
                    sent, received = _epoch(doc["observed_at"]), _epoch(doc["received_at"])
                    appended = record.timestamp / 1000
                    latencies.append(
                        (now - sent, received - sent, appended - received, now - appended)
                    )
    finally:
        await consumer.stop()
    return latencies


async def publish(count: int, rate: float | None, mqtt: MqttSettings) -> None:
    """Publish ``count`` messages at QoS 1 (paced at ``rate`` per second when given) through
    cityhub's own MQTT session: the lightest publisher at hand, so that the machine's cores go
    to the hub measured, not to the load generator (aiomqtt took about twice the CPU)."""
    settings = mqtt.model_copy(update={"client_id": f"lat-pub-{uuid.uuid4().hex[:6]}"})
    async with MqttSession(settings, clean_start=True, session_expiry_seconds=0) as session:
        start = time.monotonic()
        window = asyncio.Semaphore(256)

        async def one(i: int) -> None:
            async with window:
                topic, payload = message(i, time.time())
                await session.publish(topic, payload, qos=1)

        tasks = []
        for i in range(count):
            if rate:
                ahead = start + i / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)


async def measure(
    phase: str,
    prefix: str,
    port: int,
    workers: int,
    mqtt: MqttSettings,
    args: argparse.Namespace,
    results: dict[str, float],
) -> None:
    """One phase against a hub that has just started: its maximum (a burst read as fast as it
    comes out) or its latency in an open loop at ``args.load`` of that maximum."""
    topic = f"{prefix}.observations"
    await warm_up(topic, mqtt)
    await settled(port, f"{prefix}.raw", workers)
    if phase == "max":
        reader = asyncio.create_task(observe(topic, args.burst, 300, from_end=True))
        await asyncio.sleep(1.0)
        started = time.monotonic()
        await publish(args.burst, None, mqtt)
        got = await reader
        results["max"] = len(got) / (time.monotonic() - started)
        return
    rate = args.rate or results["max"] * args.load
    count = int(rate * args.seconds)
    reader = asyncio.create_task(observe(topic, count, args.seconds + 60, from_end=True))
    await asyncio.sleep(1.0)
    await publish(count, rate, mqtt)
    hops = await reader
    lat = sorted(h[0] for h in hops)
    q = statistics.quantiles(lat, n=100)
    results.update(rate=rate, n=len(lat), p50=q[49], p90=q[89], p99=q[98], worst=lat[-1])
    for i, hop in enumerate(("bridge", "worker", "read"), start=1):
        part = statistics.quantiles([h[i] for h in hops], n=100)
        results[f"{hop}_p50"], results[f"{hop}_p99"] = part[49], part[98]


async def main(args: argparse.Namespace) -> None:
    workers = os.cpu_count() or 1  # cityhub run's default: a worker per core
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # A fixed rate compares two settings at the same load (the maximum varies by run).
        for phase in ("latency",) if args.rate else ("max", "latency"):
            prefix = f"lat{uuid.uuid4().hex[:8]}"
            port = 18200 + (phase == "latency")
            # A Mosquitto of its own per phase: no session of an earlier run queues anything.
            async with private_mosquitto() as mqtt:
                proc = start_hub(prefix, port, Path(tmp), mqtt)
                try:
                    await measure(phase, prefix, port, workers, mqtt, args, results)
                finally:
                    proc.terminate()
                    proc.wait(30)
    one, five, _ = os.getloadavg()
    print(f"pipeline latency, {today()}, {machine()}, load {one:.2f} / {five:.2f} after")
    if "max" in results:
        print(f"  maximum (burst of {args.burst}): {results['max']:,.0f} observations/s end to end")
    at = "the given rate" if args.rate else f"{args.load:.0%} of it"
    print(
        f"  open loop at {at} ({results['rate']:,.0f}/s, {results['n']} messages):"
        f" p50 {results['p50'] * 1000:.0f} ms, p90 {results['p90'] * 1000:.0f} ms,"
        f" p99 {results['p99'] * 1000:.0f} ms, max {results['worst'] * 1000:.0f} ms"
    )
    print(
        "  of which (p50 / p99): "
        + ", ".join(
            f"{label} {results[f'{hop}_p50'] * 1000:.0f} / {results[f'{hop}_p99'] * 1000:.0f} ms"
            for hop, label in (
                ("bridge", "publish → bridge"),
                ("worker", "bridge → worker's append"),
                ("read", "append → read"),
            )
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", type=int, default=20_000)
    parser.add_argument("--load", type=float, default=0.3)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--rate", type=float, default=None, help="open loop at this rate (msg/s), no burst phase"
    )
    asyncio.run(main(parser.parse_args()))
