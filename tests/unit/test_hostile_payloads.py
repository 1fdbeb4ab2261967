"""Hostile payloads through the whole normalisation, every format: a value nested a thousand
levels deep (orjson takes 1 024) where the format wants a scalar or an object is refused with a
short ``MessageError`` (a dead letter with a reason), never a RecursionError (the agent made an
``internal_error`` of it, with a traceback in the log for each such message)."""

from __future__ import annotations

import json

import pytest

from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import MessageError
from cityhub.schemas.timefmt import bounded_repr, shown
from cityhub.streams.normaliser.normalise import normalise_envelope

from .test_normalise import Directory

DEEP = "[" * 1000 + "]" * 1000
T = "2026-11-29T01:00:00.000Z"
EUI = "70b3d57ed0000001"
CS_TOPIC = f"application/5c1e6b1e-2f0a-4d0b-9c4e-1f2a3b4c5d6e/device/{EUI}/event/up"
INGEST = "cityhub/ingest/d1"
TTS_TOPIC = "v3/app/devices/d1/up"
UP = {"f_port": 1, "f_cnt": 1, "decoded_payload": {"t": 1}}
ME = {"device_id": "d1"}

CASES: dict[str, tuple[str, str, object]] = {
    "cityhub-json values": ("cityhub-json", INGEST, {"values": "DEEP"}),
    "cityhub-json time": ("cityhub-json", INGEST, {"values": {"t": 1}, "time": "DEEP"}),
    "tts end_device_ids": ("tts-v3", TTS_TOPIC, {"end_device_ids": "DEEP", "uplink_message": UP}),
    "tts uplink_message": ("tts-v3", TTS_TOPIC, {"end_device_ids": ME, "uplink_message": "DEEP"}),
    "tts rx_metadata": (
        "tts-v3",
        TTS_TOPIC,
        {"end_device_ids": ME, "uplink_message": {**UP, "rx_metadata": ["DEEP"]}},
    ),
    "chirpstack deviceInfo": ("chirpstack-v4", CS_TOPIC, {"deviceInfo": "DEEP", "fCnt": 1}),
    "senml record": ("senml-json", INGEST, ["DEEP"]),
}
"""Where the fuzzer found the formats reaching for a nested value; ``"DEEP"`` stands for it."""


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_value_nested_a_thousand_deep_is_a_message_error(case: str) -> None:
    fmt, topic, doc = CASES[case]
    payload = json.dumps(doc).replace('"DEEP"', DEEP).encode()
    envelope = RawEnvelope("mqtt", fmt, topic, "d1", T, payload)
    with pytest.raises(MessageError) as refused:
        normalise_envelope(
            envelope,
            offset=0,
            directory=Directory([], []),
            frames={},
            window=300,
            allow_unknown=True,
        )
    assert len(refused.value.detail) < 400


def test_an_envelope_version_nested_deep_is_refused() -> None:
    raw = b'{"v": ' + DEEP.encode() + b', "source": "mqtt"}'
    with pytest.raises(MessageError, match="version"):
        RawEnvelope.from_json(raw)


def test_refused_values_are_shown_bounded() -> None:
    deep: list[object] = []
    cursor = deep
    for _ in range(5000):
        cursor.append([])
        cursor = cursor[0]  # type: ignore[assignment]
    assert bounded_repr(deep) == "[[[[...]]]]"
    assert bounded_repr([[10**5000]]) == "[[<an integer of 16610 bits>]]"
    assert len(shown({"a": "x" * 100_000, "b": list(range(10**5))})) <= 48
