"""What The Things Stack v3 and ChirpStack v4 publish besides uplinks, and uplinks that carry no
measurement: passed by and counted by kind, never a dead letter, never an observation; a
payload still encrypted end to end never decoded; ChirpStack v3 and protobuf events refused
with a detail that says so. Shapes from the servers' sources: TTS ``ApplicationUp``
(api/ttn/lorawan/v3/messages.proto: ``simulated``, ``uplink_message.app_s_key``), ChirpStack
``integration.proto`` (``joinServerContext.appSKey``; pbjson with every scalar field)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest

from cityhub.connectors.decoders.cayenne import encode_lpp
from cityhub.connectors.formats.chirpstack import ChirpstackV4Format
from cityhub.connectors.formats.tts import TtsV3Format
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import (
    IGNORED_KINDS,
    IdentityMismatch,
    MalformedJSON,
    NotAnUplink,
    SchemaMismatch,
    UndecodablePayload,
)
from cityhub.streams.normaliser.normalise import measurements_of, normalise_envelope

FIXTURES = Path(__file__).parent.parent / "fixtures"
TTS = TtsV3Format()
CS = ChirpstackV4Format()
TTS_DEVICE = "v3/city-sensors@ttn/devices/air-quality-17"
CS_DEVICE = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0004a30b001c0530"
LPP = encode_lpp([(1, "temperature", 27.2)])
"""Bytes that would decode as a temperature: what an encrypted payload must never become."""


def _tts() -> dict[str, Any]:
    return orjson.loads((FIXTURES / "tts_uplink.json").read_bytes())  # type: ignore[no-any-return]


def _cs() -> dict[str, Any]:
    return orjson.loads((FIXTURES / "chirpstack_uplink.json").read_bytes())  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("suffix", "kind"),
    [
        ("join", "join"),
        ("down/queued", "downlink"),
        ("down/sent", "downlink"),
        ("down/ack", "downlink"),
        ("down/nack", "downlink"),
        ("down/failed", "downlink"),
        ("down/push", "downlink"),
        ("service/data", "service"),
        ("location/solved", "location"),
    ],
)
def test_the_things_stacks_other_events_are_passed_by(suffix: str, kind: str) -> None:
    with pytest.raises(NotAnUplink) as passed:
        TTS.parse(f"{TTS_DEVICE}/{suffix}", b'{"end_device_ids": {}}', 0.0)
    assert passed.value.kind == kind


@pytest.mark.parametrize(
    ("suffix", "kind"),
    [
        ("event/join", "join"),
        ("event/ack", "downlink"),
        ("event/txack", "downlink"),
        ("command/down", "downlink"),
        ("event/log", "log"),
        ("event/status", "status"),
        ("event/location", "location"),
        ("event/integration", "integration"),
    ],
)
def test_chirpstacks_other_events_are_passed_by_and_keyed_by_their_device(
    suffix: str, kind: str
) -> None:
    topic = f"{CS_DEVICE}/{suffix}"
    with pytest.raises(NotAnUplink) as passed:
        CS.parse(topic, b"{}", 0.0)
    assert passed.value.kind == kind
    assert CS.partition_key(topic, b"") == "0004a30b001c0530"  # in order with its uplinks


@pytest.mark.parametrize(
    "topic", [f"{TTS_DEVICE}/up/normalized", f"{TTS_DEVICE}/whatever", "v3/a/devices/b/c/d/e"]
)
def test_a_topic_no_one_knows_stays_a_dead_letter(topic: str) -> None:
    with pytest.raises(SchemaMismatch, match="topic"):
        TTS.parse(topic, b"{}", 0.0)
    with pytest.raises(SchemaMismatch, match="topic"):
        CS.parse(f"{CS_DEVICE}/event/unknown", b"{}", 0.0)


def test_a_simulated_uplink_is_not_the_citys_data() -> None:
    doc = {**_tts(), "simulated": True}
    with pytest.raises(NotAnUplink) as passed:
        TTS.parse(f"{TTS_DEVICE}/up", orjson.dumps(doc), 0.0)
    assert passed.value.kind == "simulated"
    TTS.parse(f"{TTS_DEVICE}/up", orjson.dumps({**doc, "simulated": False}), 0.0)


def test_frames_with_mac_commands_only_are_passed_by() -> None:
    tts = _tts()
    for field in ("f_port", "f_cnt", "frm_payload", "decoded_payload"):
        tts["uplink_message"].pop(field)  # TTS leaves FPort 0 out
    with pytest.raises(NotAnUplink, match="mac_only"):
        TTS.parse(f"{TTS_DEVICE}/up", orjson.dumps(tts), 0.0)
    cs = {**_cs(), "fPort": 0, "fCnt": 12, "data": ""}
    cs.pop("object")
    with pytest.raises(NotAnUplink, match="mac_only"):
        CS.parse(f"{CS_DEVICE}/event/up", orjson.dumps(cs), 0.0)


def test_a_payload_encrypted_end_to_end_is_never_decoded() -> None:
    tts = _tts()
    up = tts["uplink_message"]
    up.pop("decoded_payload")
    up["frm_payload"] = base64.b64encode(LPP).decode()
    up["app_s_key"] = {"encrypted_key": "AAECAwQFBgcICQoLDA0ODw==", "kek_label": "as:010042"}
    cs = {**_cs(), "data": base64.b64encode(LPP).decode()}
    cs.pop("object")
    cs["joinServerContext"] = {"sessionKeyId": "01020304", "appSKey": {"kekLabel": "js"}}
    for uplink in (
        TTS.parse(f"{TTS_DEVICE}/up", orjson.dumps(tts), 0.0),
        CS.parse(f"{CS_DEVICE}/event/up", orjson.dumps(cs), 0.0),
    ):
        assert uplink.payload_encrypted
        for decoder in ("network", "cayenne-lpp"):
            with pytest.raises(UndecodablePayload, match="encrypted end to end"):
                measurements_of(uplink, decoder=decoder)
    # Without the key, the same bytes decode: the flag is what stops them.
    tts["uplink_message"].pop("app_s_key")
    plain = TTS.parse(f"{TTS_DEVICE}/up", orjson.dumps(tts), 0.0)
    assert [m.value for m in measurements_of(plain)] == [27.2]


def test_decoded_fields_of_an_encrypted_uplink_still_count() -> None:
    """A network server that holds the key (a join server's session key, shared) decodes."""
    tts = _tts()
    tts["uplink_message"]["app_s_key"] = {"encrypted_key": "AAEC", "kek_label": "as"}
    uplink = TTS.parse(f"{TTS_DEVICE}/up", orjson.dumps(tts), 0.0)
    assert {m.field for m in measurements_of(uplink)} >= {"temperature_1", "pm2_5"}


def test_chirpstack_v3_and_protobuf_events_are_refused_saying_why() -> None:
    v3 = {
        "applicationID": "12",
        "applicationName": "air",
        "deviceName": "aq",
        "devEUI": "AASjCwAcBTA=",
        "fCnt": 3,
        "fPort": 2,
        "data": "AWcA1w==",
        "rxInfo": [{"gatewayID": "ABbAAfFToUw=", "rssi": -40}],
    }
    with pytest.raises(SchemaMismatch, match="ChirpStack v3 event"):
        CS.parse(f"{CS_DEVICE}/event/up", orjson.dumps(v3), 0.0)
    protobuf = b"\n$3ac7e3c4\x12\x0c\x08\x80\xe8\xff\xff\x05\x10\xc8\x01\x1a\x10\x00\x04\xa3\x0b"
    with pytest.raises(MalformedJSON, match="json=true"):
        CS.parse(f"{CS_DEVICE}/event/up", protobuf, 0.0)


def test_the_normaliser_counts_what_it_passes_by_and_writes_nothing() -> None:
    topic = f"{TTS_DEVICE}/join"
    envelope = RawEnvelope("mqtt", "tts-v3", topic, "k", "2026-12-05T10:00:00Z", b"{}")
    frames: dict[str, Any] = {}
    result = normalise_envelope(
        envelope, offset=0, directory=_Nothing(), frames=frames, window=300, allow_unknown=False
    )
    assert (result.network, result.ignored, result.observations) == ("tts", "join", ())
    assert not result.duplicate
    assert frames == {}


def test_a_kind_is_a_bounded_label() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        NotAnUplink("anything the topic said")
    assert "simulated" in IGNORED_KINDS


class _Nothing:
    """A registry without devices: an ignored message never reaches it."""

    def device_by_eui(self, dev_eui: str) -> None:
        raise AssertionError("a message passed by must not be resolved")

    device_by_id = device_by_eui

    def device_type(self, tenant: str, type_id: str) -> None:
        raise AssertionError("a message passed by must not be resolved")


@pytest.mark.parametrize("f_port", [0, None])
def test_a_tts_frame_on_port_0_is_mac_commands_even_with_a_payload(f_port: int | None) -> None:
    tts = _tts()
    up = tts["uplink_message"]
    up.pop("decoded_payload")
    up["frm_payload"] = base64.b64encode(LPP).decode()
    if f_port is None:
        up.pop("f_port")
    else:
        up["f_port"] = f_port
    with pytest.raises(NotAnUplink, match="mac_only"):
        TTS.parse(f"{TTS_DEVICE}/up", orjson.dumps(tts), 0.0)


def test_a_simulated_uplink_of_another_device_is_still_an_identity_mismatch() -> None:
    doc = {**_tts(), "simulated": True}
    with pytest.raises(IdentityMismatch):
        TTS.parse("v3/city-sensors@ttn/devices/someone-else/up", orjson.dumps(doc), 0.0)
