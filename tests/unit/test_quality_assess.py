"""Quality flags of an uplink's observations: which limits apply (catalogue, setting, device
type; ``null`` switches a check off), the device's own faults, and the settings' validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cityhub.schemas.observation import NetworkMeta, Observation
from cityhub.schemas.quality import QualitySettings, QualitySpec, QuantityLimits
from cityhub.schemas.quality_limits import CATALOGUE_LIMITS
from cityhub.schemas.quantities import QUANTITIES
from cityhub.schemas.registry import DeviceType, DeviceTypeSpec
from cityhub.streams.quality.assess import (
    MAX_SERIES_PER_DEVICE,
    QualityAssessor,
    field_key,
    is_fault,
)
from cityhub.streams.quality.checks import Limits


def obs(
    field: str, quantity: str, value: object, at: str = "2026-12-04T10:00:00.000Z"
) -> Observation:
    return Observation(
        event_id="8c1f7f5e-4c1e-5a35-9d3c-2f6a3c1b0e11",
        device_id="air-0001",
        dev_eui=None,
        quantity=quantity,
        field=field,
        value=value,  # type: ignore[arg-type]
        unit=None,
        observed_at=at,
        received_at=at,
        format="cityhub-json",
        network=NetworkMeta(name="mqtt"),
    )


def device_type(
    quality: QualitySpec | None, updated_at: str = "2026-12-01T00:00:00.000Z"
) -> DeviceType:
    return DeviceType(
        tenant="city",
        id="air",
        name="Air",
        decoder="network",
        fields=[],
        only_mapped=False,
        classification="public",
        created_at=updated_at,
        updated_at=updated_at,
        quality=quality,
    )


def test_every_catalogue_entry_is_a_catalogued_quantity_with_a_reason() -> None:
    assert set(CATALOGUE_LIMITS) <= set(QUANTITIES)
    for name, entry in CATALOGUE_LIMITS.items():
        assert len(entry.reason) >= 5, name
    assert CATALOGUE_LIMITS["pm2_5"].limits.min == 0  # no negative PM2.5
    assert CATALOGUE_LIMITS["temperature"].limits.min is not None
    assert CATALOGUE_LIMITS["temperature"].limits.min > -80  # no -80 degC in a Dutch street


def test_limits_are_laid_catalogue_then_setting_then_type() -> None:
    settings = QualitySettings.model_validate(
        {"limits": {"temperature": {"max": 45}, "sound_level": {"flat_line_seconds": None}}}
    )
    assessor = QualityAssessor(settings)
    assert assessor.limits(None, "temperature") == Limits(-40, 45, 0.05, 6 * 3600)
    assert assessor.limits(None, "sound_level").flat is None
    spec = QualitySpec.model_validate(
        {"limits": {"temperature": {"min": 0, "max_rate_per_second": None}, "level": {"max": 3}}}
    )
    typed = device_type(spec)
    assert assessor.limits(typed, "temperature") == Limits(0, 45, None, 6 * 3600)
    assert assessor.limits(typed, "level") == Limits(None, 3, None, None)
    assert assessor.limits(typed, "uncatalogued").checks_anything is False


def test_a_bound_given_beyond_the_inherited_other_means_its_own_range() -> None:
    # a freezer's thermometer: the type says max -10, the catalogue's min -40 still stands
    merged = QuantityLimits(max=-10).over(CATALOGUE_LIMITS["temperature"].limits)
    assert (merged.min, merged.max) == (-40, -10)
    # a type that says min 100 for a quantity whose catalogue max is 60 drops the 60
    merged = QuantityLimits(min=100).over(CATALOGUE_LIMITS["temperature"].limits)
    assert (merged.min, merged.max) == (100, None)


def test_a_type_revision_is_not_served_from_the_cache() -> None:
    assessor = QualityAssessor(QualitySettings())
    old = device_type(QualitySpec.model_validate({"limits": {"temperature": {"max": 30}}}))
    assert assessor.limits(old, "temperature").high == 30
    new = device_type(
        QualitySpec.model_validate({"limits": {"temperature": {"max": 35}}}),
        updated_at="2026-12-02T00:00:00.000Z",
    )
    assert assessor.limits(new, "temperature").high == 35


def test_assess_flags_each_observation_and_keeps_the_series() -> None:
    assessor = QualityAssessor(QualitySettings())
    series: dict[str, list[float]] = {}
    first = [obs("temperature_1", "temperature", 10.0), obs("pm25", "pm2_5", -3)]
    assert assessor.assess(first, None, series) is True
    assert [o.quality for o in first] == [(), ("out_of_range",)]
    later = [obs("temperature_1", "temperature", 40.0, "2026-12-04T10:05:00.000Z")]
    assessor.assess(later, None, series)
    assert later[0].quality == ("spike",)
    assert set(series) == {"temperature_1"}  # by field; -3 is out of range: no reference


def test_booleans_and_words_are_not_range_checked() -> None:
    assessor = QualityAssessor(QualitySettings.model_validate({"limits": {"presence": {"max": 0}}}))
    observations = [obs("presence", "presence", True), obs("mode", "mode", "eco")]
    assert assessor.assess(observations, None, {}) is False
    assert [o.quality for o in observations] == [(), ()]


def test_disabled_checks_flag_nothing() -> None:
    assessor = QualityAssessor(QualitySettings(enabled=False))
    observations = [obs("pm25", "pm2_5", -3), obs("error", "error", True)]
    assert assessor.assess(observations, None, {}) is False
    assert [o.quality for o in observations] == [(), ()]


@pytest.mark.parametrize(
    ("field", "value", "faulty"),
    [
        ("error", True, True),
        ("Error_Code", 17, True),
        ("status.alarm", "LOW BATTERY", True),
        ("fault_2", 1, True),
        ("error", False, False),
        ("error_code", 0, False),
        ("alarm", "ok", False),
        ("fault", "None", False),
        ("status", 3, False),  # not a fault field by default
        ("digital_in_3", 1, False),  # Cayenne's digital inputs are not faults
    ],
)
def test_a_device_fault_flags_every_observation_of_its_uplink(
    field: str, value: object, faulty: bool
) -> None:
    assessor = QualityAssessor(QualitySettings())
    observations = [obs("temperature", "temperature", 12.0), obs(field, field_key(field), value)]
    assessor.assess(observations, None, {})
    expected = ("device_fault",) if faulty else ()
    assert [o.quality for o in observations] == [expected, expected]


def test_a_type_names_its_own_fault_fields_or_none() -> None:
    assessor = QualityAssessor(QualitySettings())
    with_status = device_type(QualitySpec(fault_fields=["status"]))
    observations = [obs("status", "status", 2), obs("error", "error", True)]
    assessor.assess(observations, with_status, {})
    assert observations[0].quality == ("device_fault",)
    none = device_type(QualitySpec(fault_fields=[]))
    observations = [obs("error", "error", True)]
    assessor.assess(observations, none, {})
    assert observations[0].quality == ()


def test_flags_come_in_the_canonical_order() -> None:
    assessor = QualityAssessor(QualitySettings())
    observations = [obs("pm25", "pm2_5", 5000), obs("error", "error", 1)]
    assessor.assess(observations, None, {})
    assert observations[0].quality == ("out_of_range", "device_fault")


def test_metric_labels_are_bounded() -> None:
    assessor = QualityAssessor(QualitySettings.model_validate({"limits": {"level": {"max": 1}}}))
    assert assessor.label("pm2_5") == "pm2_5"
    assert assessor.label("level") == "level"
    assert assessor.label("x" * 100) == "other"


def test_is_fault_words() -> None:
    assert is_fault("FAILED")
    assert is_fault(-1)
    assert is_fault(0.5)
    assert not is_fault(" OK ")
    assert not is_fault("0")
    assert not is_fault(None)


@pytest.mark.parametrize(
    "limits",
    [
        {"min": 5, "max": 1},
        {"max_rate_per_second": 0},
        {"max_rate_per_second": -1},
        {"flat_line_seconds": 10},
        {"flat_line_seconds": 1.5},
        {"flat_line_seconds": "600"},
        {"min": float("nan")},
        {"max": float("inf")},
        {"maximum": 3},
    ],
    ids=repr,
)
def test_implausible_limits_are_refused(limits: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        QualitySpec.model_validate({"limits": {"temperature": limits}})


def test_a_type_spec_validates_its_quality() -> None:
    spec = DeviceTypeSpec.model_validate(
        {"id": "air", "name": "Air", "quality": {"limits": {"pm2_5": {"max": 500}}}}
    )
    assert spec.quality is not None
    assert spec.quality.limits["pm2_5"].max == 500
    for bad in (
        {"limits": {"PM 2.5": {"max": 1}}},
        {"limits": {f"q{i}": {"max": 1} for i in range(65)}},
        {"fault_fields": ["a b"]},
        {"fault_fields": ["x"] * 33},
        {"colour": "red"},
    ):
        with pytest.raises(ValidationError):
            DeviceTypeSpec.model_validate({"id": "air", "name": "Air", "quality": bad})


def test_a_stored_type_keeps_left_out_apart_from_null() -> None:
    """The registry topic carries a type as its JSON: a left-out limit must come back left out
    (inherited), a null one null (switched off)."""
    spec = QualitySpec.model_validate(
        {"limits": {"pm2_5": {"max": 500, "flat_line_seconds": None}}}
    )
    stored = device_type(spec).model_dump_json()
    assert '"min"' not in stored
    back = DeviceType.model_validate_json(stored)
    assessor = QualityAssessor(QualitySettings())
    # min 0 of the catalogue still holds, the flat line is off, the max is the type's
    assert assessor.limits(back, "pm2_5") == Limits(0, 500, None, None)


def test_two_channels_of_one_quantity_are_two_series() -> None:
    """An air and a water thermometer on one device: neither is the other's spike."""
    assessor = QualityAssessor(QualitySettings())
    series: dict[str, list[float]] = {}
    for minute in range(0, 60, 10):
        at = f"2026-12-04T10:{minute:02d}:00.000Z"
        uplink = [
            obs("temperature_1", "temperature", 2.0, at),
            obs("temperature_2", "temperature", 30.0, at),
        ]
        assessor.assess(uplink, None, series)
        assert [o.quality for o in uplink] == [(), ()]
    assert set(series) == {"temperature_1", "temperature_2"}


def test_a_devices_series_are_bounded() -> None:
    assessor = QualityAssessor(QualitySettings())
    series: dict[str, list[float]] = {}
    many = [obs(f"temperature_{i}", "temperature", 99.0 if i == 99 else 10.0) for i in range(100)]
    assert assessor.assess(many, None, series) is True
    assert len(series) == MAX_SERIES_PER_DEVICE
    assert many[99].quality == ("out_of_range",)  # the range is still checked


_FIELDS = ["temperature_1", "temperature_2", "pm25", "laeq", "error", "mode"]
_VALUES = st.one_of(
    st.floats(-100, 1500, allow_nan=False),
    st.integers(-5, 5),
    st.booleans(),
    st.sampled_from(["ok", "FAIL", "eco", 55.0, 55.0]),
)
_UPLINKS = st.lists(
    st.tuples(
        st.integers(1, 4000),
        st.dictionaries(st.sampled_from(_FIELDS), _VALUES, min_size=1, max_size=4),
    ),
    min_size=1,
    max_size=25,
)


def _observations(at: float, fields: dict[str, object]) -> list[Observation]:
    stamp = (
        datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    return [
        obs(name, field_key(name) if name != "pm25" else "pm2_5", v, stamp)
        for name, v in fields.items()
    ]


@settings(max_examples=200, deadline=None)
@given(uplinks=_UPLINKS, replayed=st.integers(1, 3))
def test_a_replayed_tail_of_uplinks_gets_the_same_flags(
    uplinks: list[tuple[int, dict[str, object]]], replayed: int
) -> None:
    """Whatever the uplinks carry, assessing never raises, and a worker restored from the
    stored series that replays the last uplinks flags them as the first time."""
    assessor = QualityAssessor(QualitySettings())
    series: dict[str, list[float]] = {}
    at, first = 1_795_914_000.0, []
    for gap, fields in uplinks:
        at += gap
        batch = _observations(at, fields)
        assessor.assess(batch, None, series)
        first.append((at, fields, [o.quality for o in batch]))
    stored = json.loads(json.dumps(series))  # as the changelog keeps it
    again = QualityAssessor(QualitySettings())
    for at, fields, flags in first[-replayed:]:
        batch = _observations(at, fields)
        again.assess(batch, None, stored)
        assert [o.quality for o in batch] == flags
