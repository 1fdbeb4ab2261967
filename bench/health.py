"""Device health's costs (issue 14): the health stage per observation, and what the expected
interval adds to the registry's view.

Stage: observations as they sit on ``cityhub.observations`` (JSON, a LoRaWAN uplink's network
meta with two gateways, one quantity in five a battery voltage), ``--devices`` devices reporting
in turn, fed to the ``health-activity`` agent's ``step`` in batches of 500 with the clock at the
records' own time (so the one-a-minute throttle writes as it would live): decode, count, trends,
the changelog entry of every device a batch touched and the records that are due. Baselines in
the same run: orjson decode+encode of each observation (the least any stage does), and the
aggregator's device and area windows over the same records (``bench.aggregator.aggregate``).

Registry: the view of ``--registry-devices`` devices (``bench.registry``'s records) without and
with an ``expected_interval_seconds`` override on every device (the worst case: overrides are
one int object per distinct value, so only the slot costs).

Run: ``.venv/bin/python -m bench.health [--runs 5]``. Pure, one core, no broker.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import time
import tracemalloc
from typing import Any

from bench.aggregator import aggregate, baseline
from bench.registry import device_record
from bench.stats import machine, median, today
from cityhub.schemas.observation import Gateway, NetworkMeta, Observation
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.health.agent import DeviceActivityAgent
from cityhub.streams.registry.view import RegistryView

START = 1_796_371_200.0  # 2026-12-04T00:00:00Z
BATCH = 500


class Rec:
    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, offset: int, value: bytes, at: float) -> None:
        self.topic, self.partition, self.offset = "cityhub.observations", 0, offset
        self.key, self.value, self.headers, self.timestamp = None, value, [], int(at * 1000)


def observations(count: int, devices: int) -> list[tuple[bytes, float]]:
    """``count`` observations in time order, each device two readings a minute, staggered."""
    out = []
    for i in range(count):
        reading, device = divmod(i // 2, devices)
        battery = i % 5 == 0
        quantity = "battery_voltage" if battery else ("temperature", "noise")[i % 2]
        at = START + reading * 60 + device * 60 / devices
        network = NetworkMeta(
            name="tts",
            application="city-air",
            f_cnt=reading,
            f_port=1,
            gateways=(
                Gateway("townhall", rssi=-60 - device % 40, snr=9.5),
                Gateway("library", rssi=-104, snr=-3.25),
            ),
        )
        doc = Observation(
            event_id=f"{device}-{reading}-{quantity}",
            device_id=f"dev-{device:05d}",
            dev_eui=None,
            quantity=quantity,
            field=quantity,
            value=3.6 - reading / 10_000 if battery else round(15 + (i * 7919 % 1000) / 50, 2),
            unit="V" if battery else ("Cel" if quantity == "temperature" else "dB"),
            observed_at=rfc3339(at - 1),
            received_at=rfc3339(at),
            format="tts-v3",
            network=network,
            tenant=("north", "south", "city")[device % 3],
            device_type="air",
            area=f"area-{device % 20}" if device % 2 else None,
            classification="public",
            quality=("spike",) if i % 97 == 0 else (),
        ).to_json()
        out.append((doc, at))
    return out


def health(data: list[tuple[bytes, float]]) -> int:
    """What the health-activity agent does per batch, minus Kafka."""
    agent = DeviceActivityAgent(Settings(), lambda tenant, device: 120)
    agent.assign(0, [])
    n = 0
    for start in range(0, len(data), BATCH):
        chunk = data[start : start + BATCH]
        records = [Rec(start + k, value, at) for k, (value, at) in enumerate(chunk)]
        writes = agent.step(0, records, now=chunk[-1][1])
        writes += agent.tick(chunk[-1][1], lambda p: True)
        n += len(writes)
    return n


def measure(fn: Any, data: Any) -> float:
    started = time.perf_counter()
    fn(data)
    return len(data) / (time.perf_counter() - started)


def stage(args: argparse.Namespace) -> None:
    data = observations(args.records, args.devices)
    plain = [value for value, _ in data]
    health(data[:2000])
    base, hub, agg, ratios, versus = [], [], [], [], []
    for _ in range(args.runs):
        b = measure(baseline, plain)
        h = measure(health, data)
        a = measure(aggregate, plain)
        base.append(b)
        hub.append(h)
        agg.append(a)
        ratios.append(h / b)
        versus.append(h / a)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"device-health benchmark, {today()}, {machine()}, load average {load}")
    print(
        f"  {args.records} observations of {args.devices} devices, batches of {BATCH}, "
        f"median of {args.runs} runs, one core"
    )
    print(f"  bare orjson decode+encode   : {median(base):>10,.0f} observations/s")
    print(f"  health-activity agent       : {median(hub):>10,.0f} observations/s")
    print(f"  aggregator device+area      : {median(agg):>10,.0f} observations/s")
    print(f"  ratio health/orjson         : {median(ratios):.3f}")
    print(f"  ratio health/aggregator     : {median(versus):.3f}")


def view_bytes(n: int, override: bool) -> int:
    rng = random.Random(1)
    texts = []
    for i in range(n):
        doc = device_record(i, rng)
        if override:
            doc["expected_interval_seconds"] = (300, 900, 3600, 86_400)[i % 4]
        texts.append((f"device/{doc['id']}", json.dumps(doc).encode()))
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        view = RegistryView()
        for offset, (key, value) in enumerate(texts):
            view.apply(key, value, offset)
        used: int = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert view.device_count() == n
    assert view.malformed == 0
    return used


def registry(args: argparse.Namespace) -> None:
    n = args.registry_devices
    without, with_override = view_bytes(n, False), view_bytes(n, True)
    print(f"registry view, {n} devices: {without / n:.0f} B/device without an interval")
    print(f"  every device with an override: {with_override / n:.0f} B/device")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--registry-devices", type=int, default=100_000)
    args = parser.parse_args()
    stage(args)
    registry(args)


if __name__ == "__main__":
    main()
