"""The console's live reader (issue 14): what one API process pays per observation while
someone watches a device page.

``LiveObservations.deliver`` over batches of 500 observations of ``--devices`` devices as they
sit on ``cityhub.observations`` (key = device id, JSON value), with 1 and with 200 devices
watched (one watcher each, the process's default cap). Baseline in the same run: decoding every
record (orjson), the least a reader that looked into each one would pay. The reader looks at
the key first, so records nobody watches cost a dictionary lookup.

Run: ``.venv/bin/python -m bench.console_live [--runs 5]``. Pure, one core, no broker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import orjson

from bench.stats import machine, median, today
from cityhub.streams.console.live import LiveObservations

BATCH = 500


def records(count: int, devices: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(count):
        device = f"dev-{i % devices:05d}"
        doc = {
            "event_id": f"e-{i}",
            "device_id": device,
            "tenant": "city",
            "quantity": "temperature",
            "value": 15 + (i % 100) / 10,
            "unit": "Cel",
            "observed_at": "2026-12-04T10:00:00Z",
            "quality": [],
            "network": {"name": "tts", "f_cnt": i, "gateways": [{"id": "townhall", "rssi": -80}]},
        }
        out.append((device.encode(), orjson.dumps(doc)))
    return out


def baseline(data: list[tuple[bytes, bytes]]) -> None:
    for start in range(0, len(data), BATCH):
        for _key, value in data[start : start + BATCH]:
            orjson.loads(value)


async def _never(deliver: Any, positioned: asyncio.Event) -> None:
    positioned.set()
    await asyncio.Event().wait()


async def watched(data: list[tuple[bytes, bytes]], devices: int) -> float:
    """Records per second through ``deliver`` with ``devices`` devices watched."""
    live = LiveObservations(_never, per_session=devices, total=devices, buffer=100)
    async with asyncio.TaskGroup() as group:
        entered = asyncio.Event()
        done = asyncio.Event()
        result: list[float] = []

        async def watch(i: int, remaining: list[int]) -> None:
            async with live.watch("city", f"dev-{i:05d}", "bench"):
                remaining[0] -= 1
                if remaining[0] == 0:
                    entered.set()
                await done.wait()

        remaining = [devices]
        for i in range(devices):
            group.create_task(watch(i, remaining))
        await entered.wait()
        started = time.perf_counter()
        for start in range(0, len(data), BATCH):
            live.deliver(data[start : start + BATCH])
        result.append(len(data) / (time.perf_counter() - started))
        done.set()
    await live.close()
    return result[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=10_000)
    args = parser.parse_args()
    data = records(args.records, args.devices)
    base, one, many = [], [], []
    for _ in range(args.runs):
        started = time.perf_counter()
        baseline(data)
        base.append(len(data) / (time.perf_counter() - started))
        one.append(asyncio.run(watched(data, 1)))
        many.append(asyncio.run(watched(data, 200)))
    b, o, m = median(base), median(one), median(many)
    print(
        f"console live reader, {args.records} observations of {args.devices} devices, "
        f"median of {args.runs} runs ({today()}; {machine()}; load average "
        f"{os.getloadavg()[0]:.2f})"
    )
    print(f"  baseline (orjson decode of every record): {b:12,.0f} records/s")
    print(f"  1 device watched:                         {o:12,.0f} records/s  ({o / b:.1f} x)")
    print(f"  200 devices watched:                      {m:12,.0f} records/s  ({m / b:.1f} x)")


if __name__ == "__main__":
    main()
