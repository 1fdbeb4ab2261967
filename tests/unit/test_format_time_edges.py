"""Every ingest format with timestamps at the edges of the calendar and beyond: year 0001 with a
positive offset, 9999-12-31T23:59:59 with a negative one, non-ASCII digits, absurd fractions,
huge epoch numbers. Each is an InvalidTimestamp, a ``schema_mismatch`` naming the field with
the value cut short (what the normaliser writes as the dead letter's reason and detail), never
another exception (an ``internal_error``). Times at the edges of the range still arrive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from cityhub.connectors.formats.base import Uplink
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import InvalidEnvelope, InvalidTimestamp, MessageError, Reason
from cityhub.streams.normaliser.normalise import parse_envelope, received_seconds

FIXTURES = Path(__file__).parent.parent / "fixtures"
RECEIVED = "2026-11-29T01:00:00.000Z"
RECEIVED_S = 1_795_914_000
TTS_TOPIC = "v3/city-sensors/devices/air-quality-17/up"
CHIRPSTACK_TOPIC = (
    "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0004a30b001c0530/event/up"
)
INGEST_TOPIC = "cityhub/ingest/kiosk-3"
MAX_DETAIL = 500

EDGE_TIMES = [
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59.999999999Z",
    "0000-01-01T00:00:00Z",
    "10000-01-01T00:00:00Z",
    "2100-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999Z",
    "\uff12\uff10\uff12\uff14-05-01T10:00:00Z",
    "2024-05-01T10:00:0\u00b2Z",
    "\u0662\u0660\u0662\u0664-05-01T10:00:00Z",
    "2024-05-01T10:00:00." + "9" * 65_000,  # an absurd fraction without its zone
    "x" * 65_000,
    "2023-02-29T10:00:00Z",
    "2016-12-31T23:59:60Z",
    "2024-05-01T10:00:00+24:00",
]
EDGE_NUMBERS: list[Any] = [
    -1,
    -1e300,
    1e300,
    2**63,
    2**64 - 1,
    18446744073709551616,  # past u64: orjson reads it as a float
    4102444800,
    4102444800000,
    1e11 - 1,
]

DATE_TIME = Draft202012Validator.FORMAT_CHECKER


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def tts_with(value: Any) -> tuple[str, str, bytes]:
    doc = fixture("tts_uplink.json")
    doc["uplink_message"]["received_at"] = value
    return "tts-v3", TTS_TOPIC, json.dumps(doc).encode()


def tts_top_level_with(value: Any) -> tuple[str, str, bytes]:
    doc = fixture("tts_uplink.json")
    del doc["uplink_message"]["received_at"]
    doc["received_at"] = value
    return "tts-v3", TTS_TOPIC, json.dumps(doc).encode()


def chirpstack_with(value: Any) -> tuple[str, str, bytes]:
    doc = fixture("chirpstack_uplink.json")
    doc["time"] = value
    return "chirpstack-v4", CHIRPSTACK_TOPIC, json.dumps(doc).encode()


def generic_with(value: Any, key: str = "time") -> tuple[str, str, bytes]:
    doc = fixture("generic.json")
    doc.pop("time", None)
    doc[key] = value
    return "cityhub-json", INGEST_TOPIC, json.dumps(doc).encode()


def senml_with(bt: Any, fmt: str = "cityhub-json") -> tuple[str, str, bytes]:
    pack = fixture("senml_rfc8428.json")
    pack[0]["bt"] = bt
    return fmt, INGEST_TOPIC, json.dumps(pack).encode()


def parse(fmt: str, topic: str, payload: bytes) -> Uplink:
    """What the normaliser does with an envelope of this message."""
    envelope = RawEnvelope("mqtt", fmt, topic, "k", RECEIVED, payload)
    return parse_envelope(envelope, received_seconds(envelope))


def assert_schema_mismatch(message: tuple[str, str, bytes], field: str) -> None:
    with pytest.raises(MessageError) as info:
        parse(*message)
    err = info.value
    assert isinstance(err, InvalidTimestamp), repr(err)[:200]
    assert err.reason is Reason.SCHEMA_MISMATCH
    assert err.detail.startswith(f"{field}: expected "), err.detail[:200]
    assert " got " in err.detail
    assert len(err.detail) <= MAX_DETAIL, len(err.detail)


@pytest.mark.parametrize("value", EDGE_TIMES)
@pytest.mark.parametrize(
    ("build", "field"),
    [
        (tts_with, "uplink_message.received_at"),
        (tts_top_level_with, "received_at"),
        (chirpstack_with, "time"),
        (generic_with, "time"),
    ],
)
def test_edge_time_strings_are_schema_mismatches_naming_the_field(
    build: Any, field: str, value: str
) -> None:
    assert_schema_mismatch(build(value), field)


@pytest.mark.parametrize("value", EDGE_NUMBERS)
@pytest.mark.parametrize("key", ["ts", "timestamp", "time"])
def test_edge_epoch_numbers_are_schema_mismatches_naming_the_field(key: str, value: Any) -> None:
    assert_schema_mismatch(generic_with(value, key), key)


# Below 2**28 a SenML time is relative to the receive time: -RECEIVED_S - 1 is a second before 1970.
@pytest.mark.parametrize("bt", [*(n for n in EDGE_NUMBERS if n >= 2**28), -RECEIVED_S - 1, 1e20])
@pytest.mark.parametrize("fmt", ["cityhub-json", "senml-json"])
def test_edge_senml_times_are_schema_mismatches_naming_the_record(fmt: str, bt: Any) -> None:
    assert_schema_mismatch(senml_with(bt, fmt), "[0].t")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (tts_with("1970-01-01T00:00:00Z"), "1970-01-01T00:00:00.000Z"),
        (tts_with("1970-01-01T01:00:00.5+01:00"), "1970-01-01T00:00:00.500Z"),
        (chirpstack_with("2099-12-31T23:59:59.999999999+00:00"), "2099-12-31T23:59:59.999Z"),
        (chirpstack_with("2100-01-01T00:59:59+01:00"), "2099-12-31T23:59:59.000Z"),
        (generic_with("2000-01-01T00:00:00z"), "2000-01-01T00:00:00.000Z"),  # a reset clock
        (generic_with(0, "ts"), "1970-01-01T00:00:00.000Z"),
        (generic_with(4102444799999, "ts"), "2099-12-31T23:59:59.999Z"),
        (generic_with("2024-05-01T10:00:00." + "1" * 65_000 + "Z"), "2024-05-01T10:00:00.111Z"),
    ],
)
def test_times_at_the_edges_of_the_range_arrive(
    message: tuple[str, str, bytes], expected: str
) -> None:
    observed_at = parse(*message).observed_at
    assert observed_at == expected
    assert DATE_TIME.conforms(observed_at, "date-time")


def test_senml_times_at_the_edges_of_the_range_arrive() -> None:
    uplink = parse(*senml_with(-RECEIVED_S))  # relative: the receive time minus itself
    assert min(str(m.observed_at) for m in uplink.measurements) == "1970-01-01T00:00:00.000Z"
    uplink = parse(*senml_with(4102444800 - 181))
    assert max(str(m.observed_at) for m in uplink.measurements) == "2099-12-31T23:59:59.000Z"


@pytest.mark.parametrize("received_at", [*EDGE_TIMES, ""])
def test_an_envelope_received_outside_the_range_is_invalid_with_a_short_detail(
    received_at: str,
) -> None:
    envelope = RawEnvelope("mqtt", "cityhub-json", INGEST_TOPIC, "k", received_at, b"{}")
    with pytest.raises(InvalidEnvelope) as info:
        received_seconds(envelope)
    assert info.value.reason is Reason.INVALID_ENVELOPE
    assert info.value.detail.startswith("raw envelope received_at expected ")
    assert len(info.value.detail) <= MAX_DETAIL
