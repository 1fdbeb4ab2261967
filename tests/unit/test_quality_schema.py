"""The observation's quality flags: the enum, the dataclass field and the JSON Schema agree, and
``encode_uplink`` writes each observation's own flags (they are not shared across an uplink)."""

from __future__ import annotations

import orjson
import pytest

from cityhub.schemas.observation import NetworkMeta, Observation, encode_uplink
from cityhub.schemas.quality import QUALITY_FLAGS, QualityFlag, ordered_flags
from cityhub.schemas.validation import errors, load_schema


def _observation(quantity: str, value: float, quality: tuple[str, ...] = ()) -> Observation:
    return Observation(
        event_id="8c1f7f5e-4c1e-5a35-9d3c-2f6a3c1b0e11",
        device_id="air-0001",
        dev_eui=None,
        quantity=quantity,
        field=quantity,
        value=value,
        unit=None,
        observed_at="2026-12-04T10:00:00.000Z",
        received_at="2026-12-04T10:00:01.000Z",
        format="cityhub-json",
        network=NetworkMeta(name="mqtt"),
        quality=quality,
    )


def test_the_flags_are_the_four_the_contract_names() -> None:
    assert QUALITY_FLAGS == ("out_of_range", "spike", "flat_line", "device_fault")
    assert QualityFlag("spike") is QualityFlag.SPIKE
    assert f"{QualityFlag.FLAT_LINE}" == "flat_line"


def test_the_schema_lists_exactly_the_enum() -> None:
    prop = load_schema("observation")["properties"]["quality"]
    assert prop["items"]["enum"] == list(QUALITY_FLAGS)
    assert prop["default"] == []
    assert "quality" not in load_schema("observation")["required"]


def test_an_observation_without_flags_has_an_empty_array() -> None:
    doc = _observation("temperature", 12.5).to_dict()
    assert doc["quality"] == []
    assert errors("observation", doc) == []


def test_a_record_written_before_the_field_still_validates() -> None:
    doc = _observation("temperature", 12.5).to_dict()
    del doc["quality"]
    assert errors("observation", doc) == []


@pytest.mark.parametrize("quality", [["hot"], ["spike", "spike"], "spike", [1], None], ids=repr)
def test_the_schema_refuses_unknown_repeated_or_mistyped_flags(quality: object) -> None:
    doc = _observation("temperature", 12.5).to_dict()
    doc["quality"] = quality
    assert errors("observation", doc) != []


def test_ordered_flags_is_canonical() -> None:
    assert ordered_flags({"device_fault", "out_of_range"}) == ("out_of_range", "device_fault")
    assert ordered_flags(frozenset()) == ()


def test_encode_uplink_keeps_each_observations_own_flags() -> None:
    first = _observation("temperature", -80.0, ("out_of_range",))
    second = _observation("relative_humidity", 55.0)
    third = _observation("pm2_5", 9.0, ("flat_line", "device_fault"))
    # one uplink: one network object shared by all three
    second.network = first.network
    third.network = first.network
    docs = [orjson.loads(b) for b in encode_uplink([first, second, third])]
    assert [d["quality"] for d in docs] == [["out_of_range"], [], ["flat_line", "device_fault"]]
    for doc, observation in zip(docs, (first, second, third), strict=True):
        assert doc == observation.to_dict()
        assert errors("observation", doc) == []
