"""A network server's message must not contradict itself: the device and application its topic
names must be the ones its payload names, or it is refused as ``identity_mismatch``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from cityhub.connectors.formats.chirpstack import ChirpstackV4Format
from cityhub.connectors.formats.identity import require_agreement
from cityhub.connectors.formats.tts import TtsV3Format
from cityhub.schemas.errors import IdentityMismatch, Reason

FIXTURES = Path(__file__).parent.parent / "fixtures"
TTS = TtsV3Format()
CS = ChirpstackV4Format()
TTS_TOPIC = "v3/city-sensors@ttn/devices/air-quality-17/up"
CS_APP = "17c82e96-be03-4f38-aef3-f83d48582d97"
CS_EUI = "0004a30b001c0530"
CS_TOPIC = f"application/{CS_APP}/device/{CS_EUI}/event/up"


def _fixture(name: str) -> dict[str, Any]:
    return orjson.loads((FIXTURES / name).read_bytes())  # type: ignore[no-any-return]


def _tts(doc: dict[str, Any], topic: str = TTS_TOPIC) -> Any:
    return TTS.parse(topic, orjson.dumps(doc), 0.0)


def _cs(doc: dict[str, Any], topic: str = CS_TOPIC) -> Any:
    return CS.parse(topic, orjson.dumps(doc), 0.0)


# --- the rule ---------------------------------------------------------------------------------
def test_an_absent_payload_value_agrees_and_an_equal_one_too() -> None:
    require_agreement("device id", "a", "end_device_ids.device_id", None)
    require_agreement("device id", "a", "end_device_ids.device_id", "a")


def test_a_different_payload_value_is_an_identity_mismatch_naming_both() -> None:
    with pytest.raises(IdentityMismatch) as info:
        require_agreement("device id", "aq-1", "end_device_ids.device_id", "aq-2")
    assert info.value.reason is Reason.IDENTITY_MISMATCH
    assert "'aq-1'" in info.value.detail
    assert "'aq-2'" in info.value.detail
    assert "end_device_ids.device_id" in info.value.detail


def test_hostile_values_are_cut_and_escaped_in_the_detail() -> None:
    huge = "x" * 100_000
    with pytest.raises(IdentityMismatch) as info:
        require_agreement("device id", "aq-1", "end_device_ids.device_id", huge)
    assert len(info.value.detail) < 200
    with pytest.raises(IdentityMismatch) as info:
        require_agreement("device id", "aq-1", "end_device_ids.device_id", "evil\n\x1b[31m")
    assert "\n" not in info.value.detail
    assert "\x1b" not in info.value.detail


# --- The Things Stack v3 -------------------------------------------------------------------------
def test_tts_fixture_agrees_with_its_topic() -> None:
    up = _tts(_fixture("tts_uplink.json"))
    assert (up.device_id, up.application, up.tenant) == ("air-quality-17", "city-sensors", "ttn")


def test_tts_payload_device_id_other_than_the_topics_is_refused() -> None:
    doc = _fixture("tts_uplink.json")
    doc["end_device_ids"]["device_id"] = "someone-else"
    with pytest.raises(IdentityMismatch, match=r"'air-quality-17'.*'someone-else'"):
        _tts(doc)


def test_tts_topic_device_id_other_than_the_payloads_is_refused() -> None:
    with pytest.raises(IdentityMismatch, match="device id"):
        _tts(_fixture("tts_uplink.json"), "v3/city-sensors@ttn/devices/victim/up")


def test_tts_payload_application_other_than_the_topics_is_refused() -> None:
    doc = _fixture("tts_uplink.json")
    doc["end_device_ids"]["application_ids"]["application_id"] = "other-app"
    with pytest.raises(IdentityMismatch, match=r"application id 'city-sensors'.*'other-app'"):
        _tts(doc)


def test_tts_topic_application_other_than_the_payloads_is_refused() -> None:
    with pytest.raises(IdentityMismatch, match="application id"):
        _tts(_fixture("tts_uplink.json"), "v3/other-app@ttn/devices/air-quality-17/up")


def test_tts_device_id_differing_only_in_case_is_another_id() -> None:
    with pytest.raises(IdentityMismatch):
        _tts(_fixture("tts_uplink.json"), "v3/city-sensors@ttn/devices/Air-Quality-17/up")


def test_tts_payload_without_ids_takes_the_topics() -> None:
    doc = _fixture("tts_uplink.json")
    del doc["end_device_ids"]
    up = _tts(doc)
    assert (up.device_id, up.application, up.dev_eui) == ("air-quality-17", "city-sensors", None)
    doc = _fixture("tts_uplink.json")
    del doc["end_device_ids"]["application_ids"]
    assert _tts(doc).application == "city-sensors"


def test_tts_the_topics_tenant_does_not_change_the_comparison() -> None:
    doc = _fixture("tts_uplink.json")
    up = _tts(doc, "v3/city-sensors/devices/air-quality-17/up")
    assert (up.application, up.tenant) == ("city-sensors", None)


# --- ChirpStack v4 -------------------------------------------------------------------------------
def test_chirpstack_fixture_agrees_with_its_topic_whatever_the_euis_case() -> None:
    up = _cs(_fixture("chirpstack_uplink.json"))  # the payload's devEui is upper case
    assert (up.dev_eui, up.device_id, up.application) == (CS_EUI, f"eui-{CS_EUI}", CS_APP)
    up = _cs(_fixture("chirpstack_uplink.json"), CS_TOPIC.replace(CS_EUI, CS_EUI.upper()))
    assert up.dev_eui == CS_EUI


def test_chirpstack_payload_dev_eui_other_than_the_topics_is_refused() -> None:
    doc = _fixture("chirpstack_uplink.json")
    doc["deviceInfo"]["devEui"] = "70b3d57ed0000001"
    with pytest.raises(IdentityMismatch, match=f"DevEUI '{CS_EUI}'.*'70b3d57ed0000001'"):
        _cs(doc)


def test_chirpstack_payload_application_other_than_the_topics_is_refused() -> None:
    doc = _fixture("chirpstack_uplink.json")
    doc["deviceInfo"]["applicationId"] = "00000000-0000-0000-0000-000000000001"
    with pytest.raises(IdentityMismatch, match="application id"):
        _cs(doc)
    other_topic = CS_TOPIC.replace(CS_APP, "00000000-0000-0000-0000-000000000001")
    with pytest.raises(IdentityMismatch, match="application id"):
        _cs(_fixture("chirpstack_uplink.json"), other_topic)


def test_chirpstack_payload_without_device_info_takes_the_topics() -> None:
    up = _cs({"data": "AQ=="})
    assert (up.dev_eui, up.application, up.tenant) == (CS_EUI, CS_APP, None)
