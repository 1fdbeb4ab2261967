"""Cayenne LPP: encoder and decoder round trips, TTS field names, hostile payloads."""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest

from cityhub.connectors.decoders import decoder_names, get_decoder, register_decoder
from cityhub.connectors.decoders.base import PayloadDecoder
from cityhub.connectors.decoders.cayenne import TYPE_KEYS, decode_lpp, encode_lpp
from cityhub.schemas.errors import Reason, UndecodablePayload, UnknownDecoder

# One value per type, at the type's resolution, so the round trip must give it back exactly.
SAMPLES: dict[str, Any] = {
    "digital_in": 1,
    "digital_out": 0,
    "analog_in": -12.34,
    "analog_out": 3.3,
    "luminosity": 65535,
    "presence": 1,
    "temperature": -4.1,
    "relative_humidity": 54.5,
    "accelerometer": {"x": -0.012, "y": 0.98, "z": 1.5},
    "barometric_pressure": 1013.2,
    "gyrometer": {"x": 1.25, "y": -2.5, "z": 0.0},
    "gps": {"latitude": 52.3702, "longitude": -4.8952, "altitude": 12.34},
    "generic_sensor": 4_000_000_000,
    "voltage": 3.61,
    "current": 0.125,
    "frequency": 868_100_000,
    "percentage": 87,
    "altitude": -30,
    "concentration": 412,
    "power": 1500,
    "distance": 1.234,
    "energy": 123456.789,
    "direction": 270,
    "unix_time": 1_700_000_000,
    "colour": {"r": 255, "g": 128, "b": 0},
    "switch": 1,
}


def test_samples_cover_every_type() -> None:
    assert set(SAMPLES) == set(TYPE_KEYS)


@pytest.mark.parametrize(("key", "value"), SAMPLES.items())
def test_round_trip_every_type(key: str, value: Any) -> None:
    payload = encode_lpp([(7, key, value)])
    assert decode_lpp(payload) == {f"{key}_7": value}


def test_integer_types_decode_to_int() -> None:
    decoded = decode_lpp(encode_lpp([(1, "luminosity", 300), (2, "digital_in", 1)]))
    assert type(decoded["luminosity_1"]) is int
    assert type(decoded["digital_in_2"]) is int


# The reference payload from the Cayenne LPP documentation and TTS's formatter tests:
# 03 67 01 10 05 67 00 FF -> temperature 27.2 on channel 3, 25.5 on channel 5.
@pytest.mark.parametrize(
    ("hex_payload", "expected"),
    [
        ("03670110056700ff", {"temperature_3": 27.2, "temperature_5": 25.5}),
        ("0168 64".replace(" ", ""), {"relative_humidity_1": 50.0}),
        ("067104d2fb2e0000", {"accelerometer_6": {"x": 1.234, "y": -1.234, "z": 0.0}}),
        (
            "018806765ff2960a0003e8",
            {"gps_1": {"latitude": 42.3519, "longitude": -87.9094, "altitude": 10.0}},
        ),
        ("0273 2797", {"barometric_pressure_2": 1013.5}),
        ("0465 0190", {"luminosity_4": 400}),
        ("0502 fe0c", {"analog_in_5": -5.0}),
    ],
)
def test_decodes_documented_payloads_with_tts_names(hex_payload: str, expected: Any) -> None:
    assert decode_lpp(bytes.fromhex(hex_payload.replace(" ", ""))) == expected


def test_several_items_and_channels() -> None:
    payload = encode_lpp(
        [
            (1, "temperature", 21.5),
            (2, "relative_humidity", 40.0),
            (3, "barometric_pressure", 1001.3),
            (8, "gps", {"latitude": 1.0, "longitude": 2.0, "altitude": 3.0}),
        ]
    )
    assert list(decode_lpp(payload)) == [
        "temperature_1",
        "relative_humidity_2",
        "barometric_pressure_3",
        "gps_8",
    ]


def test_empty_payload_decodes_to_nothing() -> None:
    assert decode_lpp(b"") == {}


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"\x01", "truncated item header at byte 0"),
        (bytes.fromhex("0367010"[:6]), "truncated temperature (type 103) at byte 2: need 2 bytes"),
        (bytes.fromhex("0367011001"), "truncated item header at byte 4"),
        (bytes.fromhex("018806765ff2960a00"), "truncated gps (type 136) at byte 2: need 9 bytes"),
        (bytes.fromhex("03670110 05ff00".replace(" ", "")), "unknown type 255 (0xff) at byte 5"),
        (b"\x00\x63\x00", "unknown type 99"),
    ],
)
def test_bad_payloads_name_offset_and_type(payload: bytes, fragment: str) -> None:
    with pytest.raises(UndecodablePayload) as info:
        decode_lpp(payload)
    assert fragment in str(info.value)
    assert info.value.reason is Reason.UNDECODABLE_PAYLOAD


@pytest.mark.parametrize(
    ("items", "error"),
    [
        ([(1, "nope", 1)], ValueError),
        ([(256, "temperature", 1.0)], ValueError),
        ([(-1, "temperature", 1.0)], ValueError),
        ([(1, "temperature", 4000.0)], ValueError),
        ([(1, "relative_humidity", -1)], ValueError),
        ([(1, "temperature", math.nan)], ValueError),
        ([(1, "temperature", math.inf)], ValueError),
        ([(1, "temperature", "21")], TypeError),
        ([(1, "temperature", True)], TypeError),
        ([(1, "gps", 3.0)], TypeError),
        ([(1, "gps", {"latitude": 1.0, "longitude": 2.0})], ValueError),
    ],
)
def test_encoder_rejects_what_it_cannot_encode(items: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_lpp(items)


def test_encoder_rounds_to_resolution() -> None:
    assert decode_lpp(encode_lpp([(1, "temperature", 21.46)])) == {"temperature_1": 21.5}


def test_registry_has_builtin_cayenne() -> None:
    decoder = get_decoder("cayenne-lpp")
    assert isinstance(decoder, PayloadDecoder)
    assert "cayenne-lpp" in decoder_names()
    assert decoder.decode(base64.b64decode("A2cBEAVnAP8="), 1) == {
        "temperature_3": 27.2,
        "temperature_5": 25.5,
    }


def test_unknown_decoder() -> None:
    with pytest.raises(UnknownDecoder) as info:
        get_decoder("no-such-decoder")
    assert "no-such-decoder" in str(info.value)
    assert info.value.reason is Reason.UNKNOWN_DECODER


class _Echo:
    name = "test-echo"

    def decode(self, payload: bytes, f_port: int | None) -> dict[str, Any]:
        return {"length": len(payload)}


def test_register_and_replace() -> None:
    echo = _Echo()
    register_decoder(echo, replace=True)
    assert get_decoder("test-echo") is echo
    register_decoder(echo)  # the same object again is harmless
    with pytest.raises(ValueError, match="already registered"):
        register_decoder(_Echo())
    with pytest.raises(TypeError):
        register_decoder(object())  # type: ignore[arg-type]


def test_a_payload_longer_than_four_frames_is_refused() -> None:
    # A quarter MiB of items took 84 ms to decode (found by fuzzing).
    item = bytes([1, 103, 0, 100])  # temperature_1, 10.0 °C
    assert decode_lpp(item * 256) == {"temperature_1": 10.0}  # 1 024 bytes: taken
    with pytest.raises(UndecodablePayload, match="1028 bytes, at most 1024"):
        decode_lpp(item * 257)
