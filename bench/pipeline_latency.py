"""End-to-end latency of the spine: MQTT publish → bridge → Kafka → normaliser → an observation
read by a bare Kafka consumer of ``cityhub.observations``, at a fixed open-loop rate.

First the maximum: a burst of N messages, timed until the last observation is read. Then an
open-loop run at ``--load`` (default 30 %) of that maximum: each message carries its send time
(as the generic JSON ``time``), the consumer's receive time minus it is the latency. Prints p50,
p90, p99 and max. Runs its own ``cityhub run`` process (loopback only) with a fresh topic prefix.

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

from bench.stats import machine, today
from cityhub.connectors.mqtt.session import MqttSession, end_session
from cityhub.schemas.settings import MqttSettings


def start_hub(prefix: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """A ``cityhub run`` with its management endpoint (``/healthz``) on ``port``."""
    env = dict(os.environ)
    env.update(
        {
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


async def warm_up(topic: str) -> None:
    """Send until an observation comes out: the worker has its partitions and its table."""
    for _ in range(60):
        await publish(20, None)
        if await observe(topic, 1, 1.0):
            return
    raise SystemExit("no observation came out within a minute")


async def observe(topic: str, want: int, timeout: float, *, from_end: bool = False) -> list[float]:
    """Latencies (receive - observed_at) of the first ``want`` observations of ``topic`` (read
    from its start, or only the new ones with ``from_end``)."""
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9092", enable_auto_commit=False)
    await consumer.start()
    latencies: list[float] = []
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
                    observed = json.loads(record.value)["observed_at"]
                    t = datetime.fromisoformat(observed.replace("Z", "+00:00")).timestamp()
                    latencies.append(now - t)
    finally:
        await consumer.stop()
    return latencies


async def publish(count: int, rate: float | None) -> None:
    """Publish ``count`` messages at QoS 1 (paced at ``rate`` per second when given) through
    cityhub's own MQTT session: the lightest publisher at hand, so that the machine's cores go
    to the hub measured, not to the load generator (aiomqtt took about twice the CPU)."""
    settings = MqttSettings(client_id=f"lat-pub-{uuid.uuid4().hex[:6]}")
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


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for phase in ("max", "latency"):
            prefix = f"lat{uuid.uuid4().hex[:8]}"
            proc = start_hub(prefix, 18200 + (phase == "latency"), Path(tmp))
            try:
                topic = f"{prefix}.observations"
                await warm_up(topic)
                if phase == "max":
                    reader = asyncio.create_task(observe(topic, args.burst, 300, from_end=True))
                    await asyncio.sleep(1.0)
                    started = time.monotonic()
                    await publish(args.burst, None)
                    got = await reader
                    results["max"] = len(got) / (time.monotonic() - started)
                else:
                    rate = results["max"] * args.load
                    count = int(rate * args.seconds)
                    reader = asyncio.create_task(
                        observe(topic, count, args.seconds + 60, from_end=True)
                    )
                    await asyncio.sleep(1.0)
                    await publish(count, rate)
                    lat = sorted(await reader)
                    q = statistics.quantiles(lat, n=100)
                    results.update(
                        rate=rate, n=len(lat), p50=q[49], p90=q[89], p99=q[98], worst=lat[-1]
                    )
            finally:
                proc.terminate()
                proc.wait(30)
                await end_session(MqttSettings(client_id=f"{prefix}-bridge"))
    one, five, _ = os.getloadavg()
    print(f"pipeline latency, {today()}, {machine()}, load {one:.2f} / {five:.2f} after")
    print(f"  maximum (burst of {args.burst}): {results['max']:,.0f} observations/s end to end")
    print(
        f"  open loop at {args.load:.0%} of it ({results['rate']:,.0f}/s, {results['n']} messages):"
        f" p50 {results['p50'] * 1000:.0f} ms, p90 {results['p90'] * 1000:.0f} ms,"
        f" p99 {results['p99'] * 1000:.0f} ms, max {results['worst'] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", type=int, default=20_000)
    parser.add_argument("--load", type=float, default=0.3)
    parser.add_argument("--seconds", type=float, default=20)
    asyncio.run(main(parser.parse_args()))
