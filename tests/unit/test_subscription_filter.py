"""Subscription filters and the tenant rule, on Observation objects and on their JSON dicts
alike; and what one check costs."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import pytest

from cityhub.schemas.observation import Location, NetworkMeta, Observation
from cityhub.schemas.subscription import SubscriptionFilter
from cityhub.streams.subscriptions.filter import compile_filter, device_tenant, may_see

TYPES = {("acme", "dev-1"): "airq", ("acme", "dev-2"): "noise", ("other", "dev-9"): "airq"}


def type_of(tenant: str, device_id: str) -> str | None:
    return TYPES.get((tenant, device_id))


def obs(**overrides: Any) -> Observation:
    base = Observation(
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
        network=NetworkMeta(name="mqtt", tenant="network-server-tenant"),
        location=Location(latitude=52.37, longitude=4.89),
        area="centre",
        tags=("school", "street"),
        classification="internal",
        tenant="acme",
    )
    return replace(base, **overrides)


def both(o: Observation) -> list[Observation | dict[str, Any]]:
    """The observation and its JSON dict as read from the topic."""
    return [o, o.to_dict()]


def flt(**fields: Any) -> SubscriptionFilter:
    return SubscriptionFilter.model_validate(fields)


BOX = {"min_lat": 52.3, "min_lon": 4.8, "max_lat": 52.4, "max_lon": 5.0}


@pytest.mark.parametrize(
    ("fields", "observation", "expected"),
    [
        ({}, obs(), True),
        ({"quantities": ["pm2_5", "no2"]}, obs(), True),
        ({"quantities": ["no2"]}, obs(), False),
        # An alias is the catalogue's name (observations never carry an alias: a review's
        # subscription on "pm25" was accepted and matched nothing).
        ({"quantities": ["pm25"]}, obs(), True),
        ({"quantities": ["my_own_field"]}, obs(quantity="my_own_field"), True),
        ({"device_ids": ["dev-1"]}, obs(), True),
        ({"device_ids": ["dev-2"]}, obs(), False),
        ({"areas": ["centre", "north"]}, obs(), True),
        ({"areas": ["north"]}, obs(), False),
        ({"areas": ["centre"]}, obs(area=None), False),
        ({"tags": ["park", "school"]}, obs(), True),
        ({"tags": ["park"]}, obs(), False),
        ({"tags": ["school"]}, obs(tags=()), False),
        ({"bbox": BOX}, obs(), True),
        ({"bbox": BOX}, obs(location=Location(52.3, 4.8)), True),  # edges are inside
        ({"bbox": BOX}, obs(location=Location(52.5, 4.89)), False),
        ({"bbox": BOX}, obs(location=Location(52.37, 5.01)), False),
        ({"bbox": BOX}, obs(location=None), False),
        ({"bbox": BOX}, obs(location=Location(math.nan, 4.89)), False),
        ({"bbox": BOX}, obs(location=Location(52.37, math.inf)), False),
        ({"device_types": ["airq"]}, obs(), True),
        ({"device_types": ["noise"]}, obs(), False),
        ({"device_types": ["airq"]}, obs(device_id="unknown"), False),
        # All criteria AND-ed: one failing criterion is enough to refuse.
        (
            {"quantities": ["pm2_5"], "areas": ["centre"], "tags": ["school"], "bbox": BOX},
            obs(),
            True,
        ),
        (
            {"quantities": ["pm2_5"], "areas": ["centre"], "tags": ["park"], "bbox": BOX},
            obs(),
            False,
        ),
    ],
)
def test_filter(fields: dict[str, Any], observation: Observation, expected: bool) -> None:
    check = compile_filter(flt(**fields), tenant="acme", device_type_of=type_of)
    for item in both(observation):
        assert check(item) is expected, item


def test_device_type_carried_by_the_item_wins_over_the_lookup() -> None:
    check = compile_filter(flt(device_types=["noise"]), tenant="acme", device_type_of=type_of)
    doc = both(obs())[1]
    assert isinstance(doc, dict)
    assert not check(doc)
    assert check({**doc, "device_type": "noise"})


def test_device_types_without_lookup_match_nothing() -> None:
    check = compile_filter(flt(device_types=["airq"]), tenant="acme")
    assert not any(check(item) for item in both(obs()))


@pytest.mark.parametrize(
    "doc",
    [
        {"tenant": "acme", "quantity": 5},
        {"tenant": "acme", "quantity": ["pm2_5"]},
        {"tenant": "acme", "tags": "school"},
        {"tenant": "acme", "location": [52.37, 4.89]},
        {"tenant": "acme", "location": {"latitude": "52.37", "longitude": 4.89}},
        {"tenant": "acme", "location": {"latitude": True, "longitude": 4.89}},
        {"tenant": "acme", "location": {"latitude": 52.37}},
        {"tenant": "acme"},
    ],
)
def test_hostile_dicts_do_not_match_and_do_not_raise(doc: dict[str, Any]) -> None:
    check = compile_filter(
        flt(quantities=["pm2_5"], tags=["school"], bbox=BOX, device_types=["airq"]),
        tenant="acme",
        device_type_of=type_of,
    )
    assert check(doc) is False


# The tenant rule: (subscriber, device's tenant, classification) -> visible.
@pytest.mark.parametrize(
    ("owner", "classification", "expected"),
    [
        ("acme", "public", True),
        ("acme", "internal", True),
        ("acme", "personal", True),  # the tenant's own data
        ("acme", None, True),
        ("other", "public", True),
        ("other", "internal", False),
        ("other", "personal", False),
        ("other", None, False),
        ("other", "PUBLIC", False),  # exact value only
        (None, "public", False),  # unknown owner: seen by nobody
        (None, None, False),
    ],
)
def test_tenant_rule(owner: str | None, classification: str | None, expected: bool) -> None:
    assert may_see("acme", owner, classification) is expected
    observation = obs(classification=classification, tenant=owner)
    check = compile_filter(flt(), tenant="acme")
    for item in both(observation):
        assert check(item) is expected, item


def test_the_network_servers_tenant_is_not_the_device_tenant() -> None:
    o = obs(tenant=None, network=NetworkMeta(name="tts", tenant="acme"))
    assert device_tenant(o) is None
    assert not compile_filter(flt(), tenant="acme")(o)


def test_wildcard_is_not_a_tenant() -> None:
    assert not compile_filter(flt(), tenant="*")(obs())
    assert compile_filter(flt(), tenant="*")(obs(classification="public"))


def test_device_type_lookup_uses_the_devices_tenant() -> None:
    # dev-9 belongs to "other" and is public: its type is looked up in "other", not "acme".
    check = compile_filter(flt(device_types=["airq"]), tenant="acme", device_type_of=type_of)
    public_other = obs(device_id="dev-9", classification="public", tenant="other")
    assert all(check(item) for item in both(public_other))


def test_cost_of_one_check_with_five_criteria() -> None:
    """Not a benchmark gate (CI machines vary), a figure for the README and a guard against a
    pathological regression: a check must stay well under 10 µs."""
    check = compile_filter(
        flt(
            quantities=["pm2_5", "no2", "pm10"],
            device_ids=[f"dev-{i}" for i in range(500)],
            areas=["centre", "north"],
            tags=["school"],
            bbox=BOX,
        ),
        tenant="acme",
    )
    items: list[Observation | dict[str, Any]] = both(obs())
    n = 200_000
    for item in items:
        assert check(item)
        best = math.inf
        for _ in range(3):
            start = time.perf_counter_ns()
            for _ in range(n):
                check(item)
            best = min(best, (time.perf_counter_ns() - start) / n)
        print(f"{type(item).__name__}: {best:.0f} ns per check, 5 criteria, all passing")
        assert best < 10_000


def test_a_filters_quantity_aliases_are_stored_as_the_catalogues_names() -> None:
    assert flt(quantities=["pm25", "pm2_5", "temp", "my_own_field"]).quantities == [
        "pm2_5",
        "pm2_5",
        "temperature",
        "my_own_field",
    ]
