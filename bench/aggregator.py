"""The aggregator's cost: pure, per observation on one core, and in a worker on the local stack.

Pure: observations as they sit on ``cityhub.observations`` (JSON), a city of ``--devices``
devices with two quantities each, one reading a minute, half of them in areas, over three
tenants. cityhub does what the device agent does per record (decode, ``Point``, ``WindowState.add``
with the default windows, ``take_changes`` and the JSON of every changed table entry and of every
aggregate) and the area agent's windows on the area half; the baseline decodes and encodes each
observation with orjson.

Stack (``--stack``): a ``cityhub worker`` with a fresh topic prefix is started in front of a
backlog, (1) of ``--records`` observations on ``<prefix>.observations`` (the aggregator alone:
time until both agents have counted every one), and (2) of raw envelopes of the simulated fleet
on ``<prefix>.raw`` (normaliser and aggregator together: time until the device windows have
counted every observation the normaliser wrote).

Run: ``.venv/bin/python -m bench.aggregator [--stack]`` (the stack must be up for ``--stack``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from bench.stats import machine, median, today
from bench.workload import START, city_messages
from cityhub.connectors.formats import get_format
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.observation import NetworkMeta, Observation
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.aggregation.points import Point
from cityhub.streams.aggregation.window_config import WindowConfig
from cityhub.streams.aggregation.windows import WindowState

BOOTSTRAP = os.environ.get("CITYHUB_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")
FORMAT_OF = {"tts": "tts-v3", "chirpstack": "chirpstack-v4", "senml": "cityhub-json"}


def observations(count: int, devices: int, flagged_every: int = 0) -> list[bytes]:
    """``count`` observations in time order, as JSON: each device reports two quantities a
    minute (staggered), half of the devices in one of 20 areas; with ``flagged_every`` n, every
    n-th one carries a quality flag."""
    out = []
    for i in range(count):
        reading, device = divmod(i // 2, devices)
        quantity = ("temperature", "noise")[i % 2]
        at = START + reading * 60 + device * 60 / devices
        out.append(
            Observation(
                event_id=f"{device}-{reading}-{quantity}",
                device_id=f"dev-{device:05d}",
                dev_eui=None,
                quantity=quantity,
                field=quantity,
                value=round(15 + (i * 7919 % 1000) / 50, 2),
                unit="Cel" if quantity == "temperature" else "dB",
                observed_at=rfc3339(at),
                received_at=rfc3339(at + 0.2),
                format="cityhub-json",
                network=NetworkMeta(name="mqtt"),
                tenant=("north", "south", "city")[device % 3],
                area=f"area-{device % 20}" if device % 2 else None,
                classification="public",
                quality=("spike",) if flagged_every and i % flagged_every == 0 else (),
            ).to_json()
        )
    return out


def baseline(data: list[bytes]) -> int:
    n = 0
    for value in data:
        n += len(orjson.dumps(orjson.loads(value)))
    return n


def aggregate(data: list[bytes], *, coverage: bool = False) -> int:
    """What the two agents do per record, minus Kafka (the area state advanced as the
    device partition's watermark goes). ``coverage``: every device promises a reading a minute
    (the registry lookup is a dict's) and flagged values are kept out of the statistics."""
    exclude = {"exclude_flagged": True} if coverage else {}
    device = WindowState(WindowConfig(groupings=("device",), max_future=None, **exclude))
    area = WindowState(
        WindowConfig(groupings=("area",), max_future=None, own_watermark=False, **exclude)
    )
    intervals: dict[str, int] = {}
    n = 0
    for seq, value in enumerate(data):
        doc = orjson.loads(value)
        if coverage:
            point = Point.from_observation(doc, intervals.setdefault(doc["device_id"], 60))
        else:
            point = Point.from_observation(doc)
        emitted = device.add(point, seq=seq)
        if point.area is not None and point.tenant is not None and device.watermark is not None:
            emitted += area.add(point, seq=seq)
            emitted += area.advance_us(device.watermark)
            n += sum(len(orjson.dumps(v)) for v in area.take_changes()[1].values())
        meta, entries = device.take_changes()
        n += len(orjson.dumps(meta)) + sum(len(orjson.dumps(v)) for v in entries.values())
        n += sum(len(a.to_json()) for a in emitted)
    return n


def measure(fn: Any, data: list[bytes]) -> float:
    started = time.perf_counter()
    fn(data)
    return len(data) / (time.perf_counter() - started)


def with_coverage(data: list[bytes]) -> int:
    return aggregate(data, coverage=True)


def pure(args: argparse.Namespace) -> None:
    data = observations(args.records, args.devices)
    flagged = observations(args.records, args.devices, flagged_every=10)
    aggregate(data[:2000])
    base, hub, ratios, cov, cov_ratios = [], [], [], [], []
    for _ in range(args.runs):
        b = measure(baseline, data)
        h = measure(aggregate, data)
        c = measure(with_coverage, flagged)
        base.append(b)
        hub.append(h)
        ratios.append(h / b)
        cov.append(c)
        cov_ratios.append(c / b)
    print(f"aggregator benchmark, {today()}, {machine()}")
    print(
        f"  {args.records} observations of {args.devices} devices (half in areas), "
        f"windows 60/900/3600 s, median of {args.runs} runs, one core"
    )
    print(f"  bare orjson decode+encode  : {median(base):>10,.0f} observations/s")
    print(f"  device + area windows      : {median(hub):>10,.0f} observations/s")
    print(f"  ratio windows/orjson       : {median(ratios):.3f}")
    print(f"  + coverage, 10 % flagged   : {median(cov):>10,.0f} observations/s (kept out)")
    print(f"  ratio coverage/orjson      : {median(cov_ratios):.3f}")
    print(f"  load average               : {os.getloadavg()[0]:.2f}")


# -- on the stack ---------------------------------------------------------------------------


def metric(port: int, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def backlog(topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=5, max_batch_size=262144
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def run_worker(prefix: str, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "CITYHUB_KAFKA__TOPIC_PREFIX": prefix,
            "CITYHUB_WORKER__APP_ID": f"{prefix}-app",
            "CITYHUB_WORKER__ALLOW_UNKNOWN_DEVICES": "true",
            "CITYHUB_MANAGEMENT__PORT": str(port),  # /metrics
            "CITYHUB_LOG_LEVEL": "warning",
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "cityhub.streams", "worker"],
        env=env,
        stdout=open(workdir / "worker.log", "wb"),
        stderr=subprocess.STDOUT,
    )


def timed(port: int, done: Any, timeout: float = 600) -> float:
    """Seconds from the first counted record until ``done(port)`` holds."""
    deadline = time.monotonic() + timeout
    first = None
    while time.monotonic() < deadline:
        try:
            progress = metric(port, "cityhub_aggregator_events_total", event="observations")
        except OSError:
            progress = 0.0
        if progress and first is None:
            first = time.monotonic()
        if first is not None and done(port):
            return time.monotonic() - first
        time.sleep(0.05)
    raise SystemExit("the worker did not finish in time; see its log")


async def ensure(prefix: str) -> None:
    from cityhub.schemas.settings import KafkaSettings, Settings
    from cityhub.streams.topic_admin import ensure_topics

    await ensure_topics(Settings(kafka=KafkaSettings(topic_prefix=prefix)))


def stack(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # (1) The aggregator alone, from a backlog of observations.
        prefix = f"bench-agg-{uuid.uuid4().hex[:8]}"
        data = observations(args.records, args.devices)
        keyed = [(orjson.loads(v)["device_id"].encode(), v) for v in data]
        area_count = sum(1 for v in data if orjson.loads(v)["area"] is not None)
        asyncio.run(ensure(prefix))
        asyncio.run(backlog(f"{prefix}.observations", keyed))
        port = free_port()
        proc = run_worker(prefix, Path(tmp), port)
        try:

            def both(p: int) -> bool:
                device = metric(
                    p, "cityhub_aggregator_events_total", grouping="device", event="observations"
                )
                area = metric(
                    p, "cityhub_aggregator_events_total", grouping="area", event="observations"
                )
                return device >= len(data) and area >= area_count

            seconds = timed(port, both)
        finally:
            proc.terminate()
            proc.wait(30)
        print(
            f"  worker, aggregator only   : {len(data) / seconds:>10,.0f} observations/s "
            f"({len(data)} observations, {area_count} of them also in area windows)"
        )
        # (2) Normaliser and aggregator together, from a backlog of raw envelopes.
        prefix = f"bench-agg-{uuid.uuid4().hex[:8]}"
        messages = city_messages(args.raw)
        raw = []
        for i, m in enumerate(messages):
            fmt = FORMAT_OF.get(m.format.value, "cityhub-json")
            key = get_format(fmt).partition_key(m.topic, m.payload)
            envelope = RawEnvelope("mqtt", fmt, m.topic, key, rfc3339(START + i * 0.01), m.payload)
            raw.append((key.encode(), envelope.to_json()))
        asyncio.run(ensure(prefix))
        asyncio.run(backlog(f"{prefix}.raw", raw))
        port = free_port()
        proc = run_worker(prefix, Path(tmp), port)
        try:

            def caught_up(p: int) -> bool:
                written = metric(p, "cityhub_normaliser_observations_total")
                counted = metric(
                    p, "cityhub_aggregator_events_total", grouping="device", event="observations"
                )
                return (
                    written > 0
                    and counted >= written
                    and metric(p, "cityhub_normaliser_messages_total") >= len(raw) * 0.95
                )

            seconds = timed(port, caught_up)
            written = metric(port, "cityhub_normaliser_observations_total")
        finally:
            proc.terminate()
            proc.wait(30)
        print(
            f"  worker, normaliser + aggr.: {written / seconds:>10,.0f} observations/s "
            f"({len(raw)} raw envelopes, {written:.0f} observations)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--devices", type=int, default=2_000)
    parser.add_argument("--raw", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stack", action="store_true", help="also measure a worker")
    args = parser.parse_args()
    pure(args)
    if args.stack:
        stack(args)


if __name__ == "__main__":
    main()
