"""Which observations become open-data points, and what a point carries (no raw ids)."""

from __future__ import annotations

from typing import Any

import pytest

from cityhub.streams.opendata.points import (
    OpenPoint,
    PointRules,
    Skip,
    device_key,
    points_of,
    subject_key,
)
from tests.unit.opendata_support import NOW, Register, activity, observation, settings

RULES = PointRules.of(settings().open_data, max_future_seconds=300)
NOW_US = int(NOW.timestamp() * 1_000_000)


def run(doc: Any, register: Register | None = None) -> tuple[list[OpenPoint], Skip | None]:
    points, skip, _ = points_of(doc, RULES, register or Register(), NOW, NOW_US)
    return points, skip


@pytest.mark.parametrize("classification", ["public", "internal"])
def test_public_and_internal_devices_give_a_point_per_dataset_of_the_quantity(
    classification: str,
) -> None:
    points, skip = run(
        observation("d1", quantity="temperature", value=21.25, classification=classification)
    )
    assert skip is None
    # temperature is in "air" and "comfort"; a non-personal device counts for both.
    assert sorted(p.dataset for p in points) == ["air", "comfort"]
    assert {(p.area, p.value, p.unit, p.personal) for p in points} == {
        ("centrum", 21.25, "ug/m3", False)
    }


def test_a_point_names_its_device_and_subject_by_keys_only() -> None:
    (point,) = run(observation("sensor-0042"))[0]
    text = point.to_json().decode()
    assert "sensor-0042" not in text
    assert "acme" not in text
    assert point.device == device_key("acme", "sensor-0042")
    assert point.subject == "device:" + point.device
    assert OpenPoint.from_json(point.to_json()) == point
    assert point.kafka_key == b"air/centrum"


def test_keys_are_stable_and_tell_tenants_apart() -> None:
    assert device_key("acme", "d1") == device_key("acme", "d1")
    assert device_key("acme", "d1") != device_key("other", "d1")
    assert device_key("a", "b/c") != device_key("a/b", "c")
    assert subject_key("acme", "d1") != device_key("acme", "d1")


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"not": "an observation"}, Skip.INVALID),
        ([1, 2], Skip.INVALID),
        (observation("d1", at="yesterday"), Skip.INVALID),
        (observation("d1", sealed="b64...", data_subject="res-1", value=None), Skip.SEALED),
        (observation("d1", area=None), Skip.NO_AREA),
        (observation("d1", area=""), Skip.NO_AREA),
        (observation("d1", quantity="battery"), Skip.NO_DATASET),
        (observation("d1", value="high"), Skip.NON_NUMERIC),
        (observation("d1", value=True), Skip.NON_NUMERIC),
        (observation("d1", value=float("nan")), Skip.NON_NUMERIC),
        (observation("d1", classification=None), Skip.NOT_ELIGIBLE),
        (observation("d1", classification="secret"), Skip.NOT_ELIGIBLE),
        (observation("d1", tenant=None), Skip.NOT_ELIGIBLE),
        (observation("d1", at="2026-12-03T12:10:00Z"), Skip.FUTURE),
    ],
)
def test_what_is_skipped_and_why(doc: Any, reason: Skip) -> None:
    assert run(doc) == ([], reason)


def test_the_watermark_time_of_a_skipped_observation_still_counts_unless_from_the_future() -> None:
    _, skip, at = points_of(observation("d1", area=None), RULES, Register(), NOW, NOW_US)
    assert skip is Skip.NO_AREA
    assert at is not None
    _, _, ahead = points_of(
        observation("d1", at="2026-12-03T13:00:00Z"), RULES, Register(), NOW, NOW_US
    )
    assert ahead is None


def test_a_personal_device_counts_only_for_datasets_that_include_personal_devices() -> None:
    assert run(observation("p1", classification="personal"), Register(activity())) == (
        [],
        Skip.PERSONAL,
    )
    points, skip = run(
        observation("p1", quantity="temperature", classification="personal"), Register(activity())
    )
    assert skip is None
    assert [(p.dataset, p.personal) for p in points] == [("comfort", True)]


@pytest.mark.parametrize(
    "register",
    [
        Register(),
        Register(activity("other-purpose")),
        Register(activity(tenant="someone-else")),
        Register(activity(valid_to="2026-06-01T00:00:00Z")),
        Register(activity(valid_from="2027-01-01T00:00:00Z")),
    ],
)
def test_a_personal_device_needs_a_valid_open_data_activity_of_its_tenant(
    register: Register,
) -> None:
    doc = observation("p1", quantity="temperature", classification="personal")
    assert run(doc, register) == ([], Skip.NO_ACTIVITY)


def test_the_subject_of_a_linked_device_is_its_data_subject() -> None:
    # Unsealed with a subject only in a test: the normaliser seals those; the rule still holds.
    doc = observation("p1", quantity="temperature", classification="personal", data_subject="res-7")
    (point,) = run(doc, Register(activity()))[0]
    assert point.subject == subject_key("acme", "res-7")
    assert "res-7" not in point.to_json().decode()


@pytest.mark.parametrize(
    "raw",
    [
        b"{}",
        b"[]",
        b"nope",
        b'{"dataset":"a","area":"b","quantity":"q","unit":null,'
        b'"value":"x","observed_us":1,"device":"d","subject":"s","personal":false}',
    ],
)
def test_what_is_not_a_point_raises_value_key_or_type_error(raw: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        OpenPoint.from_json(raw)


def test_a_flagged_reading_stays_out_of_open_data_unless_the_settings_let_it_in() -> None:
    flagged = observation("d1", value=950.0, quality=["out_of_range"])
    assert run(flagged) == ([], Skip.FLAGGED)
    # An empty list of flags is an unflagged reading.
    assert run(observation("d1", quality=[]))[1] is None
    lenient = PointRules.of(settings(exclude_flagged=False).open_data, max_future_seconds=300)
    points, skip, _ = points_of(flagged, lenient, Register(), NOW, NOW_US)
    assert skip is None
    assert [p.value for p in points] == [950.0]
