"""Decoded fields to Measurements: what is kept, how it is named, and hostile input."""

from __future__ import annotations

import math
from typing import Any

import pytest

from cityhub.connectors import measurements as measurements_module
from cityhub.connectors.decoders.cayenne import decode_lpp, encode_lpp
from cityhub.connectors.formats.base import Measurement
from cityhub.connectors.measurements import (
    MAX_DEPTH,
    MAX_KEYS_WALKED,
    MAX_MEASUREMENTS,
    MAX_STRING_LENGTH,
    measurements_from_fields,
)


def _one(fields: dict[str, Any]) -> Measurement:
    found = measurements_from_fields(fields)
    assert len(found) == 1, found
    return found[0]


def test_catalogued_and_unknown_fields() -> None:
    got = measurements_from_fields({"temperature_1": 21.5, "wobble": 3}, "2024-05-01T10:00:00Z")
    assert got == [
        Measurement("temperature_1", "temperature", 21.5, "Cel", "2024-05-01T10:00:00Z"),
        Measurement("wobble", "wobble", 3, None, "2024-05-01T10:00:00Z"),
    ]


def test_cayenne_output_with_gps_and_accelerometer() -> None:
    fields = decode_lpp(
        encode_lpp(
            [
                (1, "temperature", 21.5),
                (7, "accelerometer", {"x": 0.1, "y": 0.2, "z": 1.0}),
                (8, "gps", {"latitude": 52.37, "longitude": 4.89, "altitude": 3.5}),
            ]
        )
    )
    got = {m.field: (m.quantity, m.value, m.unit) for m in measurements_from_fields(fields)}
    assert got == {
        "temperature_1": ("temperature", 21.5, "Cel"),
        "accelerometer_7.x": ("acceleration_x", 0.1, None),
        "accelerometer_7.y": ("acceleration_y", 0.2, None),
        "accelerometer_7.z": ("acceleration_z", 1.0, None),
        "gps_8.latitude": ("latitude", 52.37, "lat"),
        "gps_8.longitude": ("longitude", 4.89, "lon"),
        "gps_8.altitude": ("altitude", 3.5, "m"),
    }


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (True, True),
        (False, False),
        (0, 0),
        (-7, -7),
        (2**63, 2**63),
        (2**64 - 1, 2**64 - 1),
        (-(2**63), -(2**63)),
        ("ok", "ok"),
        ("x" * MAX_STRING_LENGTH, "x" * MAX_STRING_LENGTH),
    ],
)
def test_scalars_kept(value: Any, kept: Any) -> None:
    m = _one({"v": value})
    assert m.value == kept
    assert type(m.value) is type(kept)


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        None,
        "",
        "x" * (MAX_STRING_LENGTH + 1),
        [1, 2, 3],
        [],
        {},
        b"bytes",
        10**400,
    ],
)
def test_values_skipped(value: Any) -> None:
    assert measurements_from_fields({"v": value}) == []


def test_huge_integers_become_floats() -> None:
    m = _one({"count": 2**70})
    assert m.value == float(2**70)
    assert type(m.value) is float


def test_explicit_unit_wins() -> None:
    assert _one({"battery": {"value": 3.2, "unit": "V"}}) == Measurement(
        "battery", "battery", 3.2, "V", None
    )


def test_value_object_without_unit_uses_catalogue() -> None:
    assert _one({"temperature": {"value": 3.2}}).unit == "Cel"


@pytest.mark.parametrize("unit", [None, 7, "", "u" * 100])
def test_bad_explicit_unit_falls_back(unit: Any) -> None:
    assert _one({"temperature": {"value": 3.2, "unit": unit}}).unit == "Cel"


def test_value_object_with_more_keys_is_flattened() -> None:
    got = measurements_from_fields({"sensor": {"value": 1, "unit": "V", "temp": 20}})
    assert [m.field for m in got] == ["sensor.value", "sensor.unit", "sensor.temp"]


def test_deep_nesting_is_cut_off_without_recursion_error() -> None:
    deep: dict[str, Any] = {"temperature": 1.0}
    for _ in range(100_000):
        deep = {"a": deep}
    assert measurements_from_fields(deep) == []


def test_nesting_up_to_max_depth_is_kept() -> None:
    fields: dict[str, Any] = {"t": 1}
    for _ in range(MAX_DEPTH - 1):
        fields = {"a": fields}
    assert [m.field for m in measurements_from_fields(fields)] == [
        ".".join(["a"] * (MAX_DEPTH - 1) + ["t"])
    ]
    assert measurements_from_fields({"a": fields}) == []


def test_measurement_count_is_bounded() -> None:
    fields = {f"f{i}": i for i in range(MAX_MEASUREMENTS * 3)}
    assert len(measurements_from_fields(fields)) == MAX_MEASUREMENTS


def test_keys_walked_are_bounded() -> None:
    # Found by fuzzing: thousands of empty objects nested eight deep, every key walked (66 ms)
    # for no value at all.
    def nest(level: int) -> dict[str, Any]:
        return {} if level == 0 else {f"k{i}": nest(level - 1) for i in range(4)}

    calls = 0
    real = measurements_module.scalar_value

    def counted(raw: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(raw)

    measurements_module.scalar_value = counted  # type: ignore[assignment]
    try:
        assert measurements_from_fields(nest(8)) == []  # 87 380 keys in all
    finally:
        measurements_module.scalar_value = real  # type: ignore[assignment]
    assert calls <= MAX_KEYS_WALKED
    # Within the bound, a value after many empty objects is still found.
    fields: dict[str, Any] = {f"e{i}": {} for i in range(100)} | {"t": 3}
    assert measurements_from_fields(fields) == [Measurement("t", "t", 3, None, None)]


def test_non_string_keys_skipped() -> None:
    assert measurements_from_fields({1: 2, "t": 3}) == [  # type: ignore[dict-item]
        Measurement("t", "t", 3, None, None)
    ]


def test_empty_keys_are_skipped_at_every_level() -> None:
    # Found by the fuzzer: {"": false} became an observation whose quantity was "", which
    # observation.schema.json refuses (quantity has at least one character).
    assert measurements_from_fields({"": 1, "gps": {"": 2, "latitude": 52.3}, "t": 3}) == [
        Measurement("gps.latitude", "latitude", 52.3, "lat", None),
        Measurement("t", "t", 3, None, None),
    ]


def test_empty() -> None:
    assert measurements_from_fields({}) == []


def test_a_field_name_longer_than_a_mapping_can_name_is_skipped() -> None:
    # The name becomes the quantity that aggregates, filters and topics carry.
    long = "k" * 129
    found = measurements_from_fields({long: 1.0, "nested": {long[:122]: 2.0}, "ok": 3.0})
    assert [m.field for m in found] == ["ok"]


def test_the_catalogues_unit_goes_with_numbers_only() -> None:
    found = {
        m.field: (m.quantity, m.value, m.unit)
        for m in measurements_from_fields(
            {"temperature": "23.50", "time": "2026-12-05T03:00:00Z", "temp": 21.5, "rh": True}
        )
    }
    assert found["temperature"] == ("temperature", "23.50", None)
    assert found["time"][2] is None
    assert found["temp"] == ("temperature", 21.5, "Cel")
    assert found["rh"][2] is None
