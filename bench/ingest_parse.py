"""Micro-benchmark of the pure ingest path (no broker): partition_key, parse, measurements.

Run from the repository root: ``.venv/bin/python bench/ingest_parse.py``. Prints the best of
five runs per step, in microseconds per message.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

from cityhub.connectors.decoders import get_decoder
from cityhub.connectors.formats import get_format
from cityhub.connectors.formats.base import IngestFormat, Measurement
from cityhub.connectors.measurements import measurements_from_fields

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures"
RECEIVED_AT = 1714557600.0
CASES = [
    ("tts-v3", "v3/city-sensors@ttn/devices/air-quality-17/up", "tts_uplink.json"),
    ("tts-v3", "v3/parking/devices/eui-70b3d57ed005a1b2/up", "tts_uplink_first_frame.json"),
    (
        "chirpstack-v4",
        "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0004a30b001c0530/event/up",
        "chirpstack_uplink.json",
    ),
    ("cityhub-json", "cityhub/ingest/kiosk-3", "senml_rfc8428.json"),
    ("cityhub-json", "cityhub/ingest/kiosk-3", "generic.json"),
]
LPP = get_decoder("cayenne-lpp")


def best_us(fn: Callable[[], object], number: int) -> float:
    """Best of five runs, microseconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def ingest(fmt: IngestFormat, topic: str, payload: bytes) -> list[Measurement]:
    """What the normaliser does before building observations."""
    up = fmt.parse(topic, payload, RECEIVED_AT)
    if up.measurements:
        return list(up.measurements)
    if up.decoded:
        return measurements_from_fields(up.decoded)
    return measurements_from_fields(LPP.decode(up.frm_payload or b"", up.f_port))


def main() -> None:
    """Print the figures."""
    for name, topic, fixture in CASES:
        fmt = get_format(name)
        payload = (FIXTURES / fixture).read_bytes()
        key = best_us(partial(fmt.partition_key, topic, payload), 100_000)
        parse = best_us(partial(fmt.parse, topic, payload, RECEIVED_AT), 20_000)
        full = best_us(partial(ingest, fmt, topic, payload), 20_000)
        values = len(ingest(fmt, topic, payload))
        print(
            f"{name:14s} {fixture:28s} {len(payload):5d} B  partition_key {key:5.2f} us"
            f"  parse {parse:6.1f} us  parse+measurements {full:6.1f} us ({values} values)"
        )
    fields = {"temperature": 21.5, "humidity": 40.0, "pm25": 12, "pm10": 20, "vbat": 3.61}
    per_fields = best_us(lambda: measurements_from_fields(fields), 100_000)
    print(f"measurements_from_fields, 5 fields: {per_fields:.2f} us")
    lpp = bytes.fromhex("016700d7026850037327950465019005020190")
    print(f"cayenne-lpp decode, 5 items: {best_us(lambda: LPP.decode(lpp, 1), 100_000):.2f} us")


if __name__ == "__main__":
    main()
