"""Normaliser events per second on one core, against bare orjson decode and encode.

Both sides take the same raw envelopes (as they sit on ``cityhub.raw``). The baseline does the
least any normaliser must: decode the envelope and its JSON payload, encode one output document.
cityhub does the whole stage: envelope, format parse, payload decoding, duplicate check, one
canonical observation per quantity, each serialised. Pure CPU, no broker.

Run: ``.venv/bin/python bench/normaliser.py`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import time

import orjson

from bench.stats import machine, median, today
from bench.workload import city_messages
from cityhub.connectors.formats import get_format
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import MessageError
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.normaliser.dedup import check_duplicate
from cityhub.streams.normaliser.normalise import (
    duplicate_key,
    identity,
    observations_from_uplink,
    parse_envelope,
    received_seconds,
)

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


def normalise_all(data: list[bytes]) -> int:
    """What the normaliser agent does per record, minus Kafka."""
    frames: dict[str, dict[str, list[float]]] = {}
    n = 0
    for offset, value in enumerate(data):
        try:
            envelope = RawEnvelope.from_json(value)
            received = received_seconds(envelope)
            uplink = parse_envelope(envelope, received)
            key = duplicate_key(uplink)
            if key is not None:
                who = identity(uplink)
                dup, frames[who] = check_duplicate(
                    frames.get(who), key, now=received, offset=offset, window=300
                )
                if dup:
                    continue
            for observation in observations_from_uplink(uplink, envelope):
                n += len(observation.to_json())
        except MessageError:
            n += 1
    return n


def normalise_count(data: list[bytes]) -> int:
    """Observations the normaliser makes of ``data`` (duplicates dropped)."""
    count = 0
    for value in data:
        envelope = RawEnvelope.from_json(value)
        count += len(
            observations_from_uplink(parse_envelope(envelope, received_seconds(envelope)), envelope)
        )
    return count


def measure(fn: object, data: list[bytes]) -> float:
    started = time.perf_counter()
    fn(data)  # type: ignore[operator]
    return len(data) / (time.perf_counter() - started)


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    data = envelopes(args.messages)
    normalise_all(data[:500])  # warm caches (format lookups, quantity catalogue)
    base_rates, hub_rates, ratios = [], [], []
    for _ in range(args.runs):
        b = measure(baseline, data)
        h = measure(normalise_all, data)
        base_rates.append(b)
        hub_rates.append(h)
        ratios.append(h / b)
    observations = normalise_count(data[:2000]) / 2000
    result = {
        "baseline_events_per_s": median(base_rates),
        "normaliser_events_per_s": median(hub_rates),
        "ratio": median(ratios),
        "observations_per_event": observations,
    }
    print(f"normaliser benchmark, {today()}, {machine()}")
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
    return result


if __name__ == "__main__":
    main()
