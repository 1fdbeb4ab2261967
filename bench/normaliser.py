"""Normaliser events per second on one core, against bare orjson decode and encode.

Both sides take the same raw envelopes (as they sit on ``cityhub.raw``) of the simulated city's
fleet, registered in an in-memory registry. The baseline does the least any normaliser must:
decode the envelope and its JSON payload, encode one output document. cityhub does the whole
stage as the agent does (``normalise_envelope``): envelope, format parse, the device's identity
against the registry, payload decoding, the device type's mappings, duplicate check, one
canonical observation per quantity, each serialised and sized. Pure CPU, no broker. The
third line adds the quality checks (``streams/quality``: range, spike, flat line, device
faults, with each device's series) as the agent runs them, against the same stage without them.

Run: ``.venv/bin/python -m bench.normaliser`` (or ``make bench``); ``--profile`` prints where
the time goes (cProfile).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import os
import time
from collections.abc import Callable

import orjson

from bench.stats import machine, median, today
from bench.workload import SEED, city_messages
from cityhub.connectors.formats import get_format
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import MessageError
from cityhub.schemas.quality import QualitySettings
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.devtools.simulator import build_fleet
from cityhub.streams.devtools.simulator.registration import register_fleet
from cityhub.streams.normaliser.dedup import DeviceFrames
from cityhub.streams.normaliser.normalise import (
    DeviceDirectory,
    QualityCheck,
    normalise_envelope,
)
from cityhub.streams.quality.assess import DeviceSeries, QualityAssessor
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore

DEVICES = 1000

FORMAT_OF = {
    "tts": "tts-v3",
    "chirpstack": "chirpstack-v4",
    "senml": "cityhub-json",
    "json": "cityhub-json",
}


def envelopes(count: int) -> list[bytes]:
    out = []
    for i, m in enumerate(city_messages(count)):
        fmt = FORMAT_OF[m.format.value]
        key = get_format(fmt).partition_key(m.topic, m.payload)
        out.append(
            RawEnvelope(
                "mqtt", fmt, m.topic, key, rfc3339(1_795_914_000 + i * 0.01), m.payload
            ).to_json()
        )
    return out


def baseline(data: list[bytes]) -> int:
    """Bare orjson: decode the envelope, decode its payload, encode a document."""
    n = 0
    for value in data:
        doc = orjson.loads(value)
        payload = orjson.loads(doc["payload"])
        n += len(orjson.dumps({"device": doc["device"], "payload": payload}))
    return n


def registered_fleet() -> DeviceDirectory:
    """The registry view of the benchmark's fleet, every device registered."""
    registry = Registry(InMemoryRegistryStore())
    asyncio.run(register_fleet(registry, build_fleet(DEVICES, seed=SEED)))
    return registry.view


def quality_check(assessor: QualityAssessor) -> QualityCheck:
    """The agent's quality check (``NormaliserAgent._quality_check``) over a fresh state."""
    series_of: dict[str, DeviceSeries] = {}
    return assessor.uplink_check(series_of, set())


def normalise_all(
    data: list[bytes], directory: DeviceDirectory, quality: QualityAssessor | None = None
) -> int:
    """What the normaliser agent does per record, minus Kafka."""
    frames: dict[str, DeviceFrames] = {}
    check = None if quality is None else quality_check(quality)
    n = 0
    for offset, value in enumerate(data):
        try:
            result = normalise_envelope(
                RawEnvelope.from_json(value),
                offset=offset,
                directory=directory,
                frames=frames,
                window=300,
                allow_unknown=False,
                max_record_bytes=1_048_576,
                quality=check,
            )
        except MessageError:
            n += 1
            continue
        for _observation, doc, _key in result.observations:
            n += len(doc)
    return n


def normalise_count(data: list[bytes], directory: DeviceDirectory) -> float:
    """Observations the normaliser makes per raw envelope of ``data``."""
    frames: dict[str, DeviceFrames] = {}
    count = 0
    for offset, value in enumerate(data):
        count += len(
            normalise_envelope(
                RawEnvelope.from_json(value),
                offset=offset,
                directory=directory,
                frames=frames,
                window=300,
                allow_unknown=False,
            ).observations
        )
    return count / len(data)


def measure(fn: Callable[[list[bytes]], object], data: list[bytes]) -> float:
    started = time.perf_counter()
    fn(data)
    return len(data) / (time.perf_counter() - started)


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one run and stop")
    args = parser.parse_args()
    data = envelopes(args.messages)
    directory = registered_fleet()
    hub = functools.partial(normalise_all, directory=directory)
    checked = functools.partial(
        normalise_all, directory=directory, quality=QualityAssessor(QualitySettings())
    )
    hub(data[:500])  # warm caches (format lookups, quantity catalogue)
    checked(data[:500])
    if args.profile:
        cProfile.runctx("hub(data)", globals(), {"hub": hub, "data": data}, sort="tottime")
        return {}
    base_rates, hub_rates, ratios, quality_rates, quality_ratios = [], [], [], [], []
    for _ in range(args.runs):
        b = measure(baseline, data)
        h = measure(hub, data)
        q = measure(checked, data)
        base_rates.append(b)
        hub_rates.append(h)
        ratios.append(h / b)
        quality_rates.append(q)
        quality_ratios.append(q / h)
    observations = normalise_count(data[:2000], directory)
    result = {
        "baseline_events_per_s": median(base_rates),
        "normaliser_events_per_s": median(hub_rates),
        "ratio": median(ratios),
        "quality_events_per_s": median(quality_rates),
        "quality_ratio": median(quality_ratios),
        "observations_per_event": observations,
    }
    one, five, _ = os.getloadavg()
    print(f"normaliser benchmark, {today()}, {machine()}, load {one:.2f} / {five:.2f}")
    print(
        f"  {args.messages} raw envelopes (simulated city mix), "
        f"median of {args.runs} runs, one core"
    )
    print(f"  bare orjson decode+encode : {result['baseline_events_per_s']:>10,.0f} events/s")
    print(
        f"  cityhub normaliser        : {result['normaliser_events_per_s']:>10,.0f} events/s "
        f"({observations:.1f} observations per event)"
    )
    print(f"  ratio normaliser/orjson   : {result['ratio']:.3f}")
    print(f"  with quality checks       : {result['quality_events_per_s']:>10,.0f} events/s")
    print(f"  ratio with/without checks : {result['quality_ratio']:.3f}")
    return result


if __name__ == "__main__":
    main()
