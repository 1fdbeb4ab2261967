"""The Things Stack v3 uplinks. Fixture shapes: TTS docs, Integrations > Data Formats
(see tests/fixtures/README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from cityhub.connectors.formats import get_format
from cityhub.connectors.formats.base import MAX_GATEWAYS, MAX_GATEWAYS_READ, IngestFormat
from cityhub.connectors.formats.tts import TtsV3Format
from cityhub.connectors.measurements import measurements_from_fields
from cityhub.schemas.errors import MalformedJSON, Reason, SchemaMismatch
from cityhub.schemas.observation import Gateway

FIXTURES = Path(__file__).parent.parent / "fixtures"
TOPIC = "v3/city-sensors@ttn/devices/air-quality-17/up"
FMT = TtsV3Format()


def _doc(name: str = "tts_uplink.json") -> dict[str, Any]:
    return orjson.loads((FIXTURES / name).read_bytes())  # type: ignore[no-any-return]


def _parse(doc: Any, topic: str = TOPIC) -> Any:
    return FMT.parse(topic, orjson.dumps(doc), 1714557600.0)


def test_is_registered() -> None:
    fmt = get_format("tts-v3")
    assert isinstance(fmt, IngestFormat)
    assert fmt.name == "tts-v3"


def test_parse_full_uplink() -> None:
    up = FMT.parse(TOPIC, (FIXTURES / "tts_uplink.json").read_bytes(), 0.0)
    assert up.network == "tts"
    assert up.device_id == "air-quality-17"
    assert up.dev_eui == "0004a30b001c0530"
    assert up.dev_addr == "00bcb929"  # the session's address, TTS's upper case lowered
    assert up.application == "city-sensors"
    assert up.tenant == "ttn"
    assert (up.f_port, up.f_cnt) == (2, 4711)
    assert up.observed_at == "2024-05-01T10:00:01.012Z"  # the Network Server's time
    assert up.gateways == (Gateway("townhall-gw", -35, 11.5), Gateway("library-gw", -101, -4.25))
    assert up.frm_payload == bytes.fromhex("016700d70268500373 2795".replace(" ", ""))
    assert up.decoded is not None
    got = {m.field: (m.quantity, m.unit) for m in measurements_from_fields(up.decoded)}
    assert got == {
        "temperature_1": ("temperature", "Cel"),
        "relative_humidity_2": ("relative_humidity", "%RH"),
        "barometric_pressure_3": ("barometric_pressure", "hPa"),
        "pm2_5": ("pm2_5", "ug/m3"),
        "vbat": ("battery_voltage", "V"),
    }


def test_first_frame_with_omitted_zero_fields() -> None:
    up = FMT.parse(
        "v3/parking/devices/eui-70b3d57ed005a1b2/up",
        (FIXTURES / "tts_uplink_first_frame.json").read_bytes(),
        0.0,
    )
    assert up.f_cnt == 0  # omitted because zero, and f_port shows it is a data frame
    assert up.tenant is None
    assert up.decoded is None
    assert up.frm_payload == bytes.fromhex("016700d7026850")
    assert up.observed_at == "2024-05-01T10:00:00.500Z"


def test_without_f_port_the_counter_is_unknown() -> None:
    doc = _doc()
    del doc["uplink_message"]["f_port"], doc["uplink_message"]["f_cnt"]
    up = _parse(doc)
    assert (up.f_port, up.f_cnt) == (None, None)


def test_liberal_about_absent_optional_fields() -> None:
    up = _parse({"uplink_message": {"f_port": 1, "frm_payload": "AQ=="}})
    assert up.device_id == "air-quality-17"  # from the topic
    assert up.application == "city-sensors"
    assert up.dev_eui is None
    assert up.dev_addr is None
    assert up.observed_at is None
    assert up.gateways == ()
    assert up.frm_payload == b"\x01"


@pytest.mark.parametrize("value", [None, ""])
def test_an_absent_or_empty_dev_addr_is_none(value: str | None) -> None:
    doc = _doc()
    if value is None:
        del doc["end_device_ids"]["dev_addr"]
    else:
        doc["end_device_ids"]["dev_addr"] = value
    up = _parse(doc)
    assert up.dev_addr is None
    assert up.f_cnt == 4711


def test_empty_decoded_payload_falls_back_to_frm_payload() -> None:
    doc = _doc()
    doc["uplink_message"]["decoded_payload"] = {}
    up = _parse(doc)
    assert up.decoded is None
    assert up.frm_payload == bytes.fromhex("016700d70268500373 2795".replace(" ", ""))


def test_top_level_received_at_is_the_fallback_time() -> None:
    doc = _doc()
    del doc["uplink_message"]["received_at"]
    assert _parse(doc).observed_at == "2024-05-01T10:00:01.123Z"


def test_extra_fields_are_ignored() -> None:
    doc = _doc()
    doc["something_new"] = {"a": [1, 2]}
    doc["uplink_message"]["version_ids"] = {"brand_id": "x"}
    assert _parse(doc).f_cnt == 4711


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ("uplink_message", "f_port"),
            "abc",
            "uplink_message.f_port: expected an integer, got 'abc'",
        ),
        (("uplink_message", "f_port"), 256, "uplink_message.f_port: expected an integer in 0..255"),
        (("uplink_message", "f_port"), True, "uplink_message.f_port: expected an integer"),
        (("uplink_message", "f_cnt"), -1, "uplink_message.f_cnt: expected an integer in"),
        (("uplink_message", "f_cnt"), 1.5, "uplink_message.f_cnt: expected an integer"),
        (("uplink_message", "frm_payload"), "!!!", "uplink_message.frm_payload: expected base64"),
        (("uplink_message", "frm_payload"), 7, "uplink_message.frm_payload: expected a string"),
        (("uplink_message", "decoded_payload"), [1], "decoded_payload: expected an object"),
        (("uplink_message", "received_at"), "yesterday", "expected an RFC 3339 timestamp"),
        (("uplink_message", "received_at"), "2024-13-01T10:00:00Z", "RFC 3339"),
        (("uplink_message", "rx_metadata"), {}, "uplink_message.rx_metadata: expected an array"),
        (("uplink_message", "rx_metadata"), [3], "uplink_message.rx_metadata[0]: expected an"),
        (("uplink_message",), "up", "uplink_message: expected an object"),
        (("end_device_ids", "dev_eui"), "0004A30B", "end_device_ids.dev_eui: expected an EUI"),
        (("end_device_ids", "dev_eui"), "0004A30B001C053G", "expected an EUI of 16 hex digits"),
        (("end_device_ids", "dev_addr"), "00BCB92", "end_device_ids.dev_addr: expected a DevAddr"),
        (("end_device_ids", "dev_addr"), "00BCB92X", "expected a DevAddr of 8 hex digits"),
        (("end_device_ids", "dev_addr"), "0x00BCB929", "expected a DevAddr of 8 hex digits"),
        (("end_device_ids", "dev_addr"), 0xBCB929, "end_device_ids.dev_addr: expected a string"),
        (("end_device_ids", "device_id"), 12, "end_device_ids.device_id: expected a string"),
        (("end_device_ids",), [], "end_device_ids: expected an object"),
    ],
)
def test_wrong_types_name_the_field(path: tuple[str, ...], value: Any, message: str) -> None:
    doc = _doc()
    if path[-1] == "frm_payload":
        del doc["uplink_message"]["decoded_payload"]  # else frm_payload is never read
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SchemaMismatch) as info:
        _parse(doc)
    assert message in str(info.value)
    assert info.value.reason is Reason.SCHEMA_MISMATCH


def test_gateway_rssi_must_be_a_number() -> None:
    doc = _doc()
    doc["uplink_message"]["rx_metadata"][1]["channel_rssi"] = "loud"
    with pytest.raises(SchemaMismatch, match=r"rx_metadata\[1\]\.channel_rssi: expected a number"):
        _parse(doc)


def test_missing_uplink_message() -> None:
    with pytest.raises(SchemaMismatch, match="uplink_message"):
        _parse({"end_device_ids": {"device_id": "air-quality-17"}})


@pytest.mark.parametrize(
    "payload", [b"", b"{", b"not json", b"\xff\xfe{}", b'{"a": "\xc3\x28"}', b"[1,"]
)
def test_malformed_json(payload: bytes) -> None:
    with pytest.raises(MalformedJSON) as info:
        FMT.parse(TOPIC, payload, 0.0)
    assert info.value.reason is Reason.MALFORMED_JSON


@pytest.mark.parametrize("payload", [b"[]", b"3", b'"up"', b"null"])
def test_not_an_object(payload: bytes) -> None:
    with pytest.raises(SchemaMismatch, match="expected a JSON object"):
        FMT.parse(TOPIC, payload, 0.0)


@pytest.mark.parametrize(
    "topic",
    [
        "v3/app/devices/dev/joined",
        "v3/app/devices/dev/up/extra",
        "v3//devices/dev/up",
        "v3/app/devices//up",
        "application/x/device/0004a30b001c0530/event/up",
        "",
    ],
)
def test_wrong_topic(topic: str) -> None:
    with pytest.raises(SchemaMismatch, match="topic"):
        FMT.parse(topic, (FIXTURES / "tts_uplink.json").read_bytes(), 0.0)


def test_deeply_nested_json_is_rejected_not_crashed() -> None:
    payload = b'{"uplink_message": {"decoded_payload": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5002
    with pytest.raises(MalformedJSON):  # orjson refuses nesting deeper than 1024
        FMT.parse(TOPIC, payload, 0.0)


@pytest.mark.parametrize(
    ("topic", "payload", "key"),
    [
        (TOPIC, (FIXTURES / "tts_uplink.json").read_bytes(), "0004a30b001c0530"),
        (TOPIC, b'{"end_device_ids":{"dev_eui" : "70B3D57ED005A1B2"}}', "70b3d57ed005a1b2"),
        (TOPIC, b'{"end_device_ids":{"device_id":"x"}}', "air-quality-17"),
        (TOPIC, b"\xff\x00 not json at all", "air-quality-17"),
        (TOPIC, b'{"dev_eui": "short"}', "air-quality-17"),
        ("v3/app/devices/dev-9/up", b"", "dev-9"),
        ("weird/topic", b"", "weird/topic"),
        ("", b"", ""),
    ],
)
def test_partition_key(topic: str, payload: bytes, key: str) -> None:
    assert FMT.partition_key(topic, payload) == key


def test_an_uplink_keeps_its_strongest_gateways_only() -> None:
    # Every observation carries the uplink's gateways: a message listing thousands would
    # multiply into every record (the fuzzer found tens of MB from one message).
    doc = _doc()
    doc["uplink_message"]["rx_metadata"] = [
        {"gateway_ids": {"gateway_id": f"gw-{i}"}, "rssi": -i} for i in range(1000)
    ] + [
        {"gateway_ids": {"gateway_id": "x" * 129}, "rssi": 10},  # no such id: not kept
        {"gateway_ids": {"gateway_id": "quiet"}},  # no RSSI: after the others
    ]
    up = _parse(doc)
    assert [g.id for g in up.gateways] == [f"gw-{i}" for i in range(MAX_GATEWAYS)]


def test_only_the_first_entries_are_read_for_gateways() -> None:
    # 5 000 entries cost 17 ms a message: the strongest are chosen among the first
    # MAX_GATEWAYS_READ, the rest are not read (not even checked for their shape).
    doc = _doc()
    doc["uplink_message"]["rx_metadata"] = [
        {"gateway_ids": {"gateway_id": f"gw-{i}"}, "rssi": -100 - i}
        for i in range(MAX_GATEWAYS_READ)
    ] + [{"gateway_ids": {"gateway_id": "late-but-loud"}, "rssi": 0}, "not an object"]
    up = _parse(doc)
    assert [g.id for g in up.gateways] == [f"gw-{i}" for i in range(MAX_GATEWAYS)]
