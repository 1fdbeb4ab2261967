"""Device health as the API serves it, over an in-memory registry and device-health topic: the
view, the states judged at the time of asking, the filters and pages, the 400s, tenant isolation
from the other side, and the gauges for alerting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from cityhub.schemas.device_health import (
    DeviceActivity,
    DeviceDeadLetters,
    ReasonCount,
    activity_key,
    dead_letters_key,
)
from cityhub.schemas.health_settings import HealthSettings
from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.api.app import build_api
from cityhub.streams.api.device_health import DEVICE_HEALTH_KEY
from cityhub.streams.health.queries import (
    DeviceHealthList,
    DeviceHealthOut,
    DeviceHealthQueries,
    decode_cursor,
)
from cityhub.streams.health.serving import export_counts
from cityhub.streams.health.store import InMemoryDeviceHealthStore
from cityhub.streams.health.view import DeviceHealthView
from cityhub.streams.registry.principals import Principal
from cityhub.streams.service_errors import NotFound

from .test_api_support import Api, seeded_registry

NOW = 1_796_371_200.0  # 2026-12-04T00:00:00Z
A = "/api/v1/tenants/acme"
B = "/api/v1/tenants/beta"


class Clock:
    now = NOW

    def __call__(self) -> float:
        return self.now


def activity(tenant: str, device: str, seen: float, **over: Any) -> DeviceActivity:
    doc: dict[str, Any] = {
        "tenant": tenant,
        "device": device,
        "device_type": "th",
        "first_seen": rfc3339(seen - 3600),
        "last_seen": rfc3339(seen),
        "last_observed": rfc3339(seen - 1),
        "readings": 10,
        "readings_24h": 8,
        "flagged_24h": 2,
        "flags_24h": {"spike": 2},
    }
    doc.update(over)
    return DeviceActivity.model_validate(doc)


def put(store: InMemoryDeviceHealthStore, key: str, record: Any) -> None:
    store.append(key, orjson.dumps(record.model_dump(mode="json")))


@dataclass
class World:
    api: Api
    health: InMemoryDeviceHealthStore
    clock: Clock
    queries: DeviceHealthQueries


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with seeded_registry() as (registry, store, keys):
        system = Principal.system()
        await registry.create_type(
            system, "acme", DeviceTypeSpec(id="slow", name="Slow", expected_interval_seconds=3600)
        )
        devices = [
            ("acme", {"id": "a-ok", "type": "th", "area": "north"}),
            ("acme", {"id": "a-quiet", "type": "th", "area": "south"}),
            ("acme", {"id": "a-never", "type": "th", "area": "north"}),
            ("acme", {"id": "a-slow", "type": "slow"}),
            ("acme", {"id": "a-fast", "type": "slow", "expected_interval_seconds": 60}),
            ("acme", {"id": "a-off", "type": "th", "active": False}),
            ("beta", {"id": "b-1", "type": "th"}),
        ]
        for tenant, spec in devices:
            await registry.create_device(
                system, tenant, DeviceSpec.model_validate({"name": spec["id"], **spec})
            )
        health = InMemoryDeviceHealthStore()
        put(health, activity_key("acme", "a-ok"), activity("acme", "a-ok", NOW - 600))
        put(health, activity_key("acme", "a-quiet"), activity("acme", "a-quiet", NOW - 2701))
        put(health, activity_key("acme", "a-slow"), activity("acme", "a-slow", NOW - 7200))
        put(health, activity_key("acme", "a-fast"), activity("acme", "a-fast", NOW - 200))
        put(health, activity_key("acme", "a-off"), activity("acme", "a-off", NOW - 99999))
        put(health, activity_key("beta", "b-1"), activity("beta", "b-1", NOW - 99999))
        for partition, count in ((0, 2), (3, 1)):
            put(
                health,
                dead_letters_key("acme", "a-quiet", partition),
                DeviceDeadLetters(
                    tenant="acme",
                    device="a-quiet",
                    partition=partition,
                    reasons=[
                        ReasonCount(
                            reason="undecodable_payload",
                            count=count,
                            last_at=rfc3339(NOW - 60 * (partition + 1)),
                        ),
                        ReasonCount(reason="oversize", count=1, last_at=rfc3339(NOW - 90_000)),
                    ],
                ),
            )
        clock = Clock()
        queries = DeviceHealthQueries(store.view, health.view, HealthSettings(), clock=clock)
        app = build_api(registry)
        app[DEVICE_HEALTH_KEY] = queries
        async with TestClient(TestServer(app)) as client:
            yield World(Api(client, registry, store, keys, None), health, clock, queries)  # type: ignore[arg-type]


async def test_one_device_s_health(world: World) -> None:
    status, doc, _ = await world.api.call("GET", f"{A}/devices/a-quiet/health", "sub_a")
    assert status == 200, doc
    out = DeviceHealthOut.model_validate(doc)
    assert (out.state, out.expected_interval_seconds, out.silent_after_seconds) == (
        "silent",
        900,
        2700,
    )
    assert out.silent_since == out.last_seen == rfc3339(NOW - 2701)
    assert (out.readings, out.flagged_share_24h, out.flags_24h) == (10, 0.25, {"spike": 2})
    # Both partitions' dead letters added up; a reason older than a day is not current.
    assert [(r.reason, r.count, r.last_at) for r in out.dead_letters] == [
        ("undecodable_payload", 3, rfc3339(NOW - 60))
    ]
    status, doc, _ = await world.api.call("GET", f"{A}/devices/a-never/health")
    assert (status, doc["state"], doc["last_seen"], doc["readings"]) == (200, "never_seen", None, 0)
    status, doc, _ = await world.api.call("GET", f"{A}/devices/a-ok/health")
    assert (doc["state"], doc["silent_since"]) == ("ok", None)


async def test_the_interval_that_applies_judges_the_device(world: World) -> None:
    slow = (await world.api.call("GET", f"{A}/devices/a-slow/health"))[1]
    fast = (await world.api.call("GET", f"{A}/devices/a-fast/health"))[1]
    assert (slow["state"], slow["expected_interval_seconds"]) == ("ok", 3600)
    assert (fast["state"], fast["expected_interval_seconds"]) == ("silent", 60)
    world.clock.now = NOW + 3 * 3600
    slow = (await world.api.call("GET", f"{A}/devices/a-slow/health"))[1]
    assert slow["state"] == "silent", "silent by the clock, with nothing written"


async def test_the_listing_filters_and_pages(world: World) -> None:
    status, doc, _ = await world.api.call("GET", f"{A}/device-health")
    assert status == 200
    listed = DeviceHealthList.model_validate(doc)
    assert [d.device for d in listed.items] == [
        "a-fast",
        "a-never",
        "a-off",
        "a-ok",
        "a-quiet",
        "a-slow",
    ]
    states = {d.device: d.state.value for d in listed.items}
    assert states["a-never"] == "never_seen"
    doc = (await world.api.call("GET", f"{A}/device-health?state=silent"))[1]
    assert [d["device"] for d in doc["items"]] == ["a-fast", "a-off", "a-quiet"]
    doc = (await world.api.call("GET", f"{A}/device-health?state=never_seen&area=north"))[1]
    assert [d["device"] for d in doc["items"]] == ["a-never"]
    doc = (await world.api.call("GET", f"{A}/device-health?type=slow&state=ok"))[1]
    assert [d["device"] for d in doc["items"]] == ["a-slow"]
    status, doc, headers = await world.api.call("GET", f"{A}/device-health?state=silent&limit=2")
    assert [d["device"] for d in doc["items"]] == ["a-fast", "a-off"]
    cursor = doc["next_cursor"]
    assert decode_cursor(cursor) == "a-off"  # opaque: the last id shown, encoded
    assert 'rel="next"' in headers["Link"]
    next_page = f"{A}/device-health?state=silent&limit=2&cursor={cursor}"
    doc = (await world.api.call("GET", next_page))[1]
    assert ([d["device"] for d in doc["items"]], doc["next_cursor"]) == (["a-quiet"], None)
    doc = (await world.api.call("GET", f"{A}/device-health?state=silent&limit=3"))[1]
    assert doc["next_cursor"] is None, "no empty last page"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=dead", "state"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("type=NOT%20AN%20ID", "type"),
        ("area=" + "x" * 65, "area"),
        ("colour=red", "colour"),
        ("cursor=zzzz", "cursor"),  # no cursor this listing gave
        ("cursor=a-off", "cursor"),  # an id is not a cursor
        ("cursor=" + "Y" * 200, "cursor"),
    ],
)
async def test_bad_queries_are_400_naming_the_parameter(
    world: World, query: str, field: str
) -> None:
    status, doc, headers = await world.api.call("GET", f"{A}/device-health?{query}")
    assert status == 400, doc
    assert headers["Content-Type"].startswith("application/problem+json")
    assert field in {e["field"] for e in doc["errors"]}


async def test_another_tenant_cannot_read_it(world: World) -> None:
    for who in ("op_b", "sub_b"):
        status, doc, _ = await world.api.call("GET", f"{A}/devices/a-quiet/health", who)
        assert status == 404, doc
        status, doc, _ = await world.api.call("GET", f"{A}/device-health", who)
        assert status == 404, doc
    # Its own device under the other tenant's path is not found either.
    status, _, _ = await world.api.call("GET", f"{A}/devices/b-1/health", "op_a")
    assert status == 404
    status, doc, _ = await world.api.call("GET", f"{B}/device-health", "op_b")
    assert [d["device"] for d in doc["items"]] == ["b-1"]
    status, _, _ = await world.api.call("GET", f"{A}/device-health", None)
    assert status == 401
    status, doc, _ = await world.api.call("GET", f"{B}/devices/b-1/health", "admin")
    assert (status, doc["state"]) == (200, "silent")


async def test_without_the_view_the_routes_answer_503() -> None:
    async with (
        seeded_registry() as (registry, _, keys),
        TestClient(TestServer(build_api(registry))) as client,
    ):
        response = await client.get(
            f"{A}/device-health", headers={"Authorization": f"Bearer {keys['op_a']}"}
        )
        assert response.status == 503


def test_the_gauges_count_active_devices_by_state(world: World) -> None:
    export_counts(world.queries)

    def value(name: str, tenant: str, type_id: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"tenant": tenant, "type": type_id})

    assert value("cityhub_devices_silent", "acme", "th") == 1  # a-quiet (a-off is inactive)
    assert value("cityhub_devices_silent", "acme", "slow") == 1  # a-fast
    assert value("cityhub_devices_silent", "beta", "th") == 1
    assert value("cityhub_devices_never_seen", "acme", "th") == 1
    assert value("cityhub_devices_never_seen", "acme", "slow") == 0
    world.clock.now = NOW - 3000  # before a-quiet went quiet
    export_counts(world.queries)
    assert value("cityhub_devices_silent", "acme", "th") == 0


def test_the_view_skips_malformed_records_and_follows_tombstones() -> None:
    view = DeviceHealthView()
    good = orjson.dumps(activity("acme", "d", NOW).model_dump(mode="json"))
    view.apply("device/acme/d", good, 0)
    view.apply("device/acme/other", good, 1)  # key and record disagree
    view.apply("device/acme/x", b"{", 2)
    view.apply("device/acme/y", b'{"tenant": "acme", "device": "y", "last_seen": "soon"}', 3)
    view.apply("what/ever", b"{}", 4)
    view.apply("deadletters/acme/d/zero", b"{}", 5)
    assert (view.malformed, view.devices(), view.offset) == (5, 1, 5)
    assert view.last_seen("acme", "d") == NOW
    view.apply("device/acme/d", None, 6)
    view.apply("deadletters/acme/d/0", None, 7)
    assert (view.devices(), view.activity("acme", "d")) == (0, None)


def test_many_answers_the_tenant_s_devices_only(world: World) -> None:
    who = world.api.registry.authenticate(world.api.keys["sub_a"])
    found = world.queries.many(who, "acme", ["a-ok", "a-never", "b-1", "nobody", "a-ok"])
    assert {k: v.state.value for k, v in found.items()} == {"a-ok": "ok", "a-never": "never_seen"}
    other = world.api.registry.authenticate(world.api.keys["op_b"])
    with pytest.raises(NotFound):
        world.queries.many(other, "acme", ["a-ok"])


async def test_a_personal_device_s_trends_carry_no_hours(world: World) -> None:
    system = Principal.system()
    registry = world.api.registry
    await registry.create_type(
        system, "acme", DeviceTypeSpec(id="home", name="Home", classification="personal")
    )
    await registry.create_device(
        system, "acme", DeviceSpec.model_validate({"id": "a-home", "name": "H", "type": "home"})
    )
    trend = {
        "quantity": "battery_voltage",
        "unit": "V",
        "last": 3.5,
        "last_at": rfc3339(NOW - 60),
        "hours_from": rfc3339(NOW - 7200),
        "hourly": [3.6, None, 3.5],
        "slope_per_day": -1.2,
    }
    for device in ("a-home", "a-ok"):
        record = activity(
            "acme", device, NOW - 60, battery=trend, rssi={**trend, "quantity": "rssi"}
        )
        put(world.health, activity_key("acme", device), record)
    status, doc, _ = await world.api.call("GET", f"{A}/devices/a-home/health")
    assert status == 200, doc
    for name in ("battery", "rssi"):
        assert (doc[name]["hourly"], doc[name]["hours_from"]) == ([], None)
        assert (doc[name]["last"], doc[name]["slope_per_day"]) == (3.5, -1.2)
    assert doc["last_seen"] == rfc3339(NOW - 60)
    doc = (await world.api.call("GET", f"{A}/devices/a-ok/health"))[1]
    assert doc["battery"]["hourly"] == [3.6, None, 3.5], "other devices keep their hours"
