"""ChirpStack v4 uplink events. Fixture shape: ChirpStack v4 docs, Integrations > Events,
"up" (the JSON of integration.UplinkEvent; see tests/fixtures/README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from cityhub.connectors.formats import get_format
from cityhub.connectors.formats.chirpstack import ChirpstackV4Format
from cityhub.connectors.formats.tts import TtsV3Format
from cityhub.connectors.measurements import measurements_from_fields
from cityhub.schemas.errors import MalformedJSON, Reason, SchemaMismatch
from cityhub.schemas.observation import Gateway

FIXTURES = Path(__file__).parent.parent / "fixtures"
TOPIC = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0004a30b001c0530/event/up"
FMT = ChirpstackV4Format()


def _doc() -> dict[str, Any]:
    return orjson.loads((FIXTURES / "chirpstack_uplink.json").read_bytes())  # type: ignore[no-any-return]


def _parse(doc: Any, topic: str = TOPIC) -> Any:
    return FMT.parse(topic, orjson.dumps(doc), 0.0)


def test_is_registered() -> None:
    assert get_format("chirpstack-v4").name == "chirpstack-v4"


def test_parse_full_event() -> None:
    up = _parse(_doc())
    assert up.network == "chirpstack"
    assert up.device_id == "eui-0004a30b001c0530"  # never the free-text deviceName
    assert up.dev_eui == "0004a30b001c0530"
    assert up.dev_addr == "00189440"  # the session's address, top-level devAddr
    assert up.application == "17c82e96-be03-4f38-aef3-f83d48582d97"
    assert up.tenant == "52f14cd4-c6f1-4fbd-8f87-4025e1d49242"
    assert (up.f_port, up.f_cnt) == (3, 812)
    assert up.observed_at == "2024-05-01T10:00:00.823Z"  # nanoseconds and +00:00 normalised
    assert up.gateways == (Gateway("0016c001f153a14c", -36, 10.5),)
    assert up.frm_payload == bytes.fromhex("016700d7026850")
    got = {m.field: (m.quantity, m.unit) for m in measurements_from_fields(up.decoded)}
    assert got == {
        "laeq": ("sound_level", "dB"),
        "lamax": ("sound_level_max", "dB"),
        "battery": ("battery", "%"),
    }


def test_omitted_zero_fcnt_and_no_codec() -> None:
    doc = _doc()
    del doc["fCnt"], doc["object"]
    up = _parse(doc)
    assert up.f_cnt == 0
    assert up.decoded is None
    assert up.frm_payload == bytes.fromhex("016700d7026850")


def test_no_fport_means_counter_unknown() -> None:
    doc = _doc()
    del doc["fCnt"], doc["fPort"]
    assert _parse(doc).f_cnt is None


def test_minimal_event_uses_the_topic() -> None:
    up = _parse({"data": "AQ=="})
    assert up.dev_eui == "0004a30b001c0530"
    assert up.application == "17c82e96-be03-4f38-aef3-f83d48582d97"
    assert up.tenant is None
    assert up.dev_addr is None
    assert up.observed_at is None
    assert up.gateways == ()


@pytest.mark.parametrize(("value", "expected"), [("", None), ("260B1A2C", "260b1a2c")])
def test_dev_addr_empty_is_none_and_any_case_is_lowered(value: str, expected: str | None) -> None:
    doc = _doc()
    doc["devAddr"] = value
    assert _parse(doc).dev_addr == expected


def test_same_device_through_both_network_servers_gets_one_key() -> None:
    tts = TtsV3Format().partition_key(
        "v3/city-sensors/devices/air-quality-17/up", (FIXTURES / "tts_uplink.json").read_bytes()
    )
    cs = FMT.partition_key(TOPIC.replace("0004a30b001c0530", "0004A30B001C0530"), b"")
    assert tts == cs == "0004a30b001c0530"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("fPort", "1", "fPort: expected an integer, got '1'"),
        ("fCnt", 2**32, "fCnt: expected an integer in 0..4294967295"),
        ("data", "***", "data: expected base64"),
        ("object", "x", "object: expected an object"),
        ("time", 1714557600, "time: expected a string"),
        ("time", "2024-05-01", "time: expected an RFC 3339 timestamp"),
        ("rxInfo", [{"gatewayId": "g", "snr": "x"}], r"rxInfo[0].snr: expected a number"),
        ("rxInfo", [{"gatewayId": 5}], "rxInfo[0].gatewayId: expected a string"),
        ("rxInfo", ["g"], "rxInfo[0]: expected an object"),
        ("deviceInfo", "dev", "deviceInfo: expected an object"),
        ("devAddr", "0018944", "devAddr: expected a DevAddr of 8 hex digits, got '0018944'"),
        ("devAddr", "001894400", "devAddr: expected a DevAddr of 8 hex digits"),
        ("devAddr", "0018944g", "devAddr: expected a DevAddr of 8 hex digits"),
        ("devAddr", 1_610_000, "devAddr: expected a string"),
    ],
)
def test_wrong_types_name_the_field(key: str, value: Any, message: str) -> None:
    doc = _doc()
    if key == "data":
        del doc["object"]
    doc[key] = value
    with pytest.raises(SchemaMismatch) as info:
        _parse(doc)
    assert message in str(info.value)
    assert info.value.reason is Reason.SCHEMA_MISMATCH


def test_bad_dev_eui_in_payload() -> None:
    doc = _doc()
    doc["deviceInfo"]["devEui"] = "xyz"
    with pytest.raises(SchemaMismatch, match=r"deviceInfo\.devEui: expected an EUI"):
        _parse(doc)


def test_rssi_nan_is_not_a_number() -> None:
    payload = (
        (FIXTURES / "chirpstack_uplink.json").read_bytes().replace(b'"rssi": -36', b'"rssi": NaN')
    )
    with pytest.raises(MalformedJSON):  # NaN is not JSON
        FMT.parse(TOPIC, payload, 0.0)


@pytest.mark.parametrize(
    ("topic", "key"),
    [
        # a device's topic the format does not know: keyed by its device all the same
        ("application/app/device/0004a30b001c0530/event/joined", "0004a30b001c0530"),
        ("application/app/device/0004a30b001c05/event/up", None),
        ("application/app/device/zz04a30b001c0530/event/up", None),
        ("application//device/0004a30b001c0530/event/up", None),
        ("v3/app/devices/dev/up", None),
    ],
)
def test_wrong_topic(topic: str, key: str | None) -> None:
    with pytest.raises(SchemaMismatch, match="topic"):
        _parse(_doc(), topic)
    assert FMT.partition_key(topic, b"") == (key or topic)  # stable fallback, never raises


def test_partition_key_from_topic_only() -> None:
    assert FMT.partition_key(TOPIC, b"\xff garbage") == "0004a30b001c0530"


def test_only_the_first_rx_info_entries_are_read_for_gateways() -> None:
    from cityhub.connectors.formats.base import MAX_GATEWAYS, MAX_GATEWAYS_READ

    doc = _doc()
    doc["rxInfo"] = [
        {"gatewayId": f"{i:016x}", "rssi": -100 - i} for i in range(MAX_GATEWAYS_READ)
    ] + [{"gatewayId": "ffffffffffffffff", "rssi": 0}, "not an object"]
    up = _parse(doc)
    assert [g.id for g in up.gateways] == [f"{i:016x}" for i in range(MAX_GATEWAYS)]
