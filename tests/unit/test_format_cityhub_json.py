"""cityhub-json (SenML packs and the generic object) and senml-json. SenML fixtures follow
the RFC 8428 section 5.1 examples (see tests/fixtures/README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from cityhub.connectors.formats import format_names, get_format, register_format
from cityhub.connectors.formats.base import Uplink
from cityhub.connectors.formats.cityhub_json import CityhubJsonFormat
from cityhub.connectors.formats.senml import SenmlJsonFormat, resolve_senml
from cityhub.connectors.measurements import measurements_from_fields
from cityhub.schemas.errors import MalformedJSON, Reason, SchemaMismatch, UnknownFormat

FIXTURES = Path(__file__).parent.parent / "fixtures"
TOPIC = "cityhub/ingest/kiosk-3"
NOW = 1714557600.0  # 2024-05-01T10:00:00Z
FMT = CityhubJsonFormat()


def _parse(doc: Any, topic: str = TOPIC) -> Uplink:
    return FMT.parse(topic, orjson.dumps(doc), NOW)


# --- registry -------------------------------------------------------------------------------


def test_builtin_formats() -> None:
    assert {"tts-v3", "chirpstack-v4", "cityhub-json", "senml-json"} <= set(format_names())


def test_unknown_format() -> None:
    with pytest.raises(UnknownFormat) as info:
        get_format("lorawan-9000")
    assert info.value.reason is Reason.UNKNOWN_FORMAT


def test_register_format_refuses_a_taken_name() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_format(CityhubJsonFormat())
    with pytest.raises(TypeError):
        register_format("cityhub-json")  # type: ignore[arg-type]


# --- SenML ----------------------------------------------------------------------------------


def test_rfc8428_humidity_and_position_example() -> None:
    up = FMT.parse(TOPIC, (FIXTURES / "senml_rfc8428.json").read_bytes(), NOW)
    assert up.network == "mqtt"
    assert up.device_id == "kiosk-3"
    first = up.measurements[:3]
    assert [(m.field, m.quantity, m.value, m.unit) for m in first] == [
        ("relative_humidity", "relative_humidity", 20, "%RH"),
        ("longitude", "longitude", 24.30621, "lon"),
        ("latitude", "latitude", 60.07965, "lat"),
    ]
    assert {m.observed_at for m in first} == {"2011-10-31T13:24:24.000Z"}
    assert up.measurements[3].observed_at == "2011-10-31T13:25:24.000Z"  # bt + 60
    battery = up.measurements[9]
    assert (battery.quantity, battery.value, battery.unit) == ("battery", 98, "%EL")
    # Every (field, time) is unique, so the observations' event ids are too.
    keys = [(m.field, m.observed_at) for m in up.measurements]
    assert len(keys) == len(set(keys)) == 13


def test_rfc8428_multiple_measurements_example() -> None:
    ms = resolve_senml(orjson.loads((FIXTURES / "senml_multi.json").read_bytes()), NOW)
    assert [(m.field, m.quantity, m.value, m.unit, m.observed_at) for m in ms] == [
        ("voltage", "voltage", 120.1, "V", "2010-06-08T18:01:16.001Z"),
        ("current", "current", 1.2, "A", "2010-06-08T18:01:11.001Z"),
        ("current", "current", 1.3, "A", "2010-06-08T18:01:12.001Z"),
        ("temperature", "temperature", 21.5, "Cel", "2010-06-08T18:01:16.001Z"),
        ("door", "door", True, None, "2010-06-08T18:01:16.001Z"),
        ("status", "status", "ok", None, "2010-06-08T18:01:16.001Z"),
        ("energy.sum", "energy_sum", 1234.5, "kWh", "2010-06-08T18:01:16.001Z"),
    ]


def test_relative_times_are_anchored_on_receive_time() -> None:
    ms = resolve_senml(
        [{"n": "temp", "v": 1}, {"n": "temp", "t": -60, "v": 2}, {"n": "temp", "bt": 10, "v": 3}],
        NOW,
    )
    assert [m.observed_at for m in ms] == [
        "2024-05-01T10:00:00.000Z",
        "2024-05-01T09:59:00.000Z",
        "2024-05-01T10:00:10.000Z",
    ]
    assert ms[0].quantity == "temperature"
    assert ms[0].unit == "Cel"


def test_base_value_and_base_sum() -> None:
    ms = resolve_senml([{"bn": "m/", "bv": 100, "bs": 10, "n": "count", "v": 5, "s": 1}], NOW)
    assert [(m.field, m.value) for m in ms] == [("count", 105), ("count.sum", 11)]


def test_device_urn_without_base_name_is_stripped() -> None:
    ms = resolve_senml([{"n": "urn:dev:mac:0024befffe804ff1:temperature", "v": 20}], NOW)
    assert (ms[0].field, ms[0].quantity) == ("temperature", "temperature")


def test_path_names_keep_their_context() -> None:
    ms = resolve_senml(
        [
            {"bn": "building-4/", "n": "hall/temperature", "v": 20},
            {"n": "roof/temperature", "v": 9},
        ],
        NOW,
    )
    assert [(m.field, m.quantity) for m in ms] == [
        ("hall/temperature", "temperature"),
        ("roof/temperature", "temperature"),
    ]


@pytest.mark.parametrize(
    ("pack", "message"),
    [
        ({"n": "t", "v": 1}, "expected a JSON array"),
        ([{"n": "t"}], "[0]: record 't' has no value"),
        ([{"v": 1}], "[0]: the record has no name"),
        ([{"n": "t", "v": 1}, 3], "[1]: expected a SenML record object"),
        ([{"n": 5, "v": 1}], "[0].n: expected a string"),
        ([{"n": "t", "v": "1"}], "[0].v: expected a finite number"),
        ([{"n": "t", "vb": 1}], "[0].vb: expected a boolean"),
        ([{"n": "t", "vs": 1}], "[0].vs: expected a string"),
        ([{"n": "t", "v": 1, "t": "now"}], "[0].t: expected a finite number"),
        (
            [{"n": "t", "v": 1, "bt": 1e20}],
            "[0].t: expected bt + t (absolute) to resolve to a time from 1970",
        ),
        ([{"n": "t", "v": 1, "bver": 11}], "[0].bver: expected a SenML version"),
        # bv + v and bs + s beyond a float were infinities, written as null (schema-invalid).
        ([{"n": "t", "bv": 1e308, "v": 1e308}], "[0].v: expected a number that stays finite"),
        ([{"n": "t", "v": 1}, {"n": "u", "bv": -1e308, "v": -1e308}], "[1].v: expected a"),
        ([{"n": "t", "bs": 1e308, "s": 1e308}], "[0].s: expected a number that stays finite"),
        ([{"n": "t", "v": 1, "crit_": 1}], "[0].crit_: unknown must-understand"),
        ([{"n": "t", "vs": "x" * 300}], "too long"),
        ([{"n": "t", "v": 1}] * 2000, "at most"),
        # The limits of decoded fields (found by fuzzing: a 200 000-character name became a
        # quantity, a pack of 1 024 records 2 048 observations).
        ([{"n": "t" * 129, "v": 1}], "[0]: a field name of 129 characters, at most 128"),
        ([{"bn": "urn:dev:x:", "n": "", "bu": "u" * 40, "v": 1}], "a unit of 40 characters"),
        ([{"bn": "d" * 200, "v": 1}], "a field name of 200 characters"),
        ([{"n": f"t{i}", "v": 1, "s": 1} for i in range(257)], "more than 512 values"),
    ],
)
def test_senml_errors(pack: Any, message: str) -> None:
    with pytest.raises(SchemaMismatch) as info:
        resolve_senml(pack, NOW)
    assert message in str(info.value)


def test_senml_json_format_refuses_objects() -> None:
    fmt = SenmlJsonFormat()
    assert get_format("senml-json").name == "senml-json"
    with pytest.raises(SchemaMismatch, match="expected a JSON array"):
        fmt.parse(TOPIC, b'{"temperature": 1}', NOW)
    assert len(fmt.parse(TOPIC, b'[{"n": "temperature", "v": 1}]', NOW).measurements) == 1


def test_empty_pack_parses_to_nothing() -> None:
    assert _parse([]).measurements == ()


# --- generic object -------------------------------------------------------------------------


def test_generic_fixture() -> None:
    up = FMT.parse(TOPIC, (FIXTURES / "generic.json").read_bytes(), NOW)
    assert up.device_id == "kiosk-3"
    assert up.observed_at == "2024-05-01T10:00:00.000Z"  # +02:00 converted to UTC
    assert up.decoded is not None
    assert "time" not in up.decoded
    got = {m.field: (m.quantity, m.value, m.unit) for m in measurements_from_fields(up.decoded)}
    assert got == {
        "temperature": ("temperature", 21.5, "Cel"),
        "humidity": ("relative_humidity", 40, "%RH"),
        "noise": ("sound_level", 55.2, "dB"),
        "battery": ("battery", 3.6, "V"),  # the explicit unit wins
        "gps.latitude": ("latitude", 52.37, "lat"),
        "gps.longitude": ("longitude", 4.89, "lon"),
        "status": ("status", "ok", None),
    }  # "samples" (a list) is skipped


@pytest.mark.parametrize(
    ("doc", "observed_at"),
    [
        ({"ts": 1714557600, "t": 1}, "2024-05-01T10:00:00.000Z"),
        ({"ts": 1714557600123, "t": 1}, "2024-05-01T10:00:00.123Z"),
        ({"timestamp": 1714557600.5, "t": 1}, "2024-05-01T10:00:00.500Z"),
        ({"time": "2024-05-01T10:00:00.123456789Z", "t": 1}, "2024-05-01T10:00:00.123Z"),
        ({"t": 1}, None),
    ],
)
def test_generic_times(doc: dict[str, Any], observed_at: str | None) -> None:
    up = _parse(doc)
    assert up.observed_at == observed_at
    assert up.decoded == {"t": 1}


def test_values_object_keeps_metadata_apart() -> None:
    up = _parse({"ts": 1714557600000, "firmware": "1.4.2", "values": {"pm2_5": 8.1}})
    assert up.decoded == {"pm2_5": 8.1}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"time": "noon", "t": 1}, "time: expected an RFC 3339 timestamp, got 'noon'"),
        ({"time": True, "t": 1}, "time: expected an RFC 3339 string or epoch"),
        ({"ts": -5, "t": 1}, "ts: expected seconds (or, above 1e11, milliseconds) since the epoch"),
        ({"ts": 1e30, "t": 1}, "ts: expected seconds (or, above 1e11, milliseconds) since the"),
        ({"values": [1, 2]}, "values: expected an object"),
    ],
)
def test_generic_errors(doc: Any, message: str) -> None:
    with pytest.raises(SchemaMismatch) as info:
        _parse(doc)
    assert message in str(info.value)


@pytest.mark.parametrize("payload", [b"3", b'"x"', b"null", b"true"])
def test_neither_object_nor_array(payload: bytes) -> None:
    with pytest.raises(SchemaMismatch, match="expected a JSON object or a SenML array"):
        FMT.parse(TOPIC, payload, NOW)


@pytest.mark.parametrize("payload", [b"", b"{", b"\x80\x81", b'{"t": 1e999999}', b"[NaN]"])
def test_malformed(payload: bytes) -> None:
    with pytest.raises(MalformedJSON):
        FMT.parse(TOPIC, payload, NOW)


@pytest.mark.parametrize(
    ("topic", "key"), [(TOPIC, "kiosk-3"), ("cityhub/ingest/", "cityhub/ingest/"), ("x", "x")]
)
def test_partition_key(topic: str, key: str) -> None:
    assert FMT.partition_key(topic, b"\xff") == key


@pytest.mark.parametrize("topic", ["cityhub/ingest/", "cityhub/ingest/+"])
def test_bad_topic(topic: str) -> None:
    with pytest.raises(SchemaMismatch, match="topic"):
        FMT.parse(topic, b"{}", NOW)
