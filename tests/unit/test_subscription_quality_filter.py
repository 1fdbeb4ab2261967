"""Subscriptions filtered by quality flags: ``"unflagged"`` and ``{"exclude": [...]}``, on
Observation objects and their JSON alike; items without flags pass; the spec refuses what it
cannot mean."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from cityhub.schemas.observation import NetworkMeta, Observation
from cityhub.schemas.quality import excluded_flags
from cityhub.schemas.subscription import SubscriptionFilter
from cityhub.streams.subscriptions.filter import compile_filter

BASE = Observation(
    event_id="e1",
    device_id="dev-1",
    dev_eui=None,
    quantity="pm2_5",
    field="pm2_5",
    value=12.5,
    unit="ug/m3",
    observed_at="2026-12-01T10:00:00.000Z",
    received_at="2026-12-01T10:00:00.100Z",
    format="cityhub-json",
    network=NetworkMeta(name="mqtt"),
    classification="internal",
    tenant="acme",
)


def matches(quality_filter: Any, flags: tuple[str, ...]) -> list[bool]:
    """Whether the observation with ``flags`` passes, as an object and as its JSON."""
    spec = SubscriptionFilter.model_validate({"quality": quality_filter})
    check = compile_filter(spec, tenant="acme")
    o = replace(BASE, quality=flags)
    return [check(o), check(o.to_dict())]


@pytest.mark.parametrize(
    ("quality_filter", "flags", "expected"),
    [
        (None, ("spike",), True),
        ("unflagged", (), True),
        ("unflagged", ("spike",), False),
        ("unflagged", ("device_fault",), False),
        ({"exclude": ["spike", "flat_line"]}, (), True),
        ({"exclude": ["spike", "flat_line"]}, ("flat_line",), False),
        ({"exclude": ["spike", "flat_line"]}, ("out_of_range", "spike"), False),
        ({"exclude": ["spike", "flat_line"]}, ("out_of_range",), True),
        ({"exclude": ["device_fault"]}, ("device_fault",), False),
    ],
)
def test_quality_criterion(quality_filter: Any, flags: tuple[str, ...], expected: bool) -> None:
    assert matches(quality_filter, flags) == [expected, expected]


@pytest.mark.parametrize("quality_filter", ["unflagged", {"exclude": ["spike"]}])
def test_items_without_flags_pass(quality_filter: Any) -> None:
    check = compile_filter(
        SubscriptionFilter.model_validate({"quality": quality_filter}), tenant="acme"
    )
    doc = BASE.to_dict()
    del doc["quality"]  # written before the flags existed
    assert check(doc)
    doc["quality"] = None
    assert check(doc)
    aggregate = {"tenant": "acme", "quantity": "pm2_5", "mean": 3.0, "classification": "internal"}
    assert check(aggregate)


@pytest.mark.parametrize("carried", ["spike", {"spike": True}, 5, [7], ["flat_line", None]])
def test_a_quality_of_another_shape_is_not_unflagged(carried: object) -> None:
    check = compile_filter(
        SubscriptionFilter.model_validate({"quality": "unflagged"}), tenant="acme"
    )
    doc = {**BASE.to_dict(), "quality": carried}
    assert check(doc) is False
    exclude = compile_filter(
        SubscriptionFilter.model_validate({"quality": {"exclude": ["spike"]}}), tenant="acme"
    )
    # never raises, whatever the record carries
    assert exclude(doc) in (True, False)


def test_the_tenant_rule_still_applies() -> None:
    check = compile_filter(
        SubscriptionFilter.model_validate({"quality": "unflagged"}), tenant="other"
    )
    assert not check(BASE)
    assert not check(BASE.to_dict())


def test_the_criterion_counts() -> None:
    assert SubscriptionFilter().criteria == 0
    assert SubscriptionFilter.model_validate({"quality": "unflagged"}).criteria == 1
    spec = SubscriptionFilter.model_validate({"quality": {"exclude": ["spike"]}})
    assert excluded_flags(spec.quality) == {"spike"}


@pytest.mark.parametrize(
    "bad",
    [
        "flagged",
        "",
        {"exclude": []},
        {"exclude": ["hot"]},
        {"exclude": ["spike", "spike"]},
        {"exclude": "spike"},
        {"include": ["spike"]},
        ["spike"],
        7,
    ],
    ids=repr,
)
def test_the_spec_refuses_what_it_cannot_mean(bad: object) -> None:
    with pytest.raises(ValidationError):
        SubscriptionFilter.model_validate({"quality": bad})
