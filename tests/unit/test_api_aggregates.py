"""GET /api/v1/tenants/{tenant}/aggregates over an in-memory registry and the in-memory
aggregates topic: shape, order and current revisions; who sees what (own tenant everything,
another tenant's device only when its type is public, and then only its public windows; areas
per tenant); every 400, 404, 401 and the 503 when the data cannot be read."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.aggregate import Aggregate, aggregate_id
from cityhub.schemas.registry import Classification, DeviceSpec, DeviceTypeSpec, Role
from cityhub.streams.aggregation.memory import InMemoryAggregates
from cityhub.streams.aggregation.points import epoch_us
from cityhub.streams.aggregation.query import (
    AggregateQuery,
    AggregatesUnavailable,
    QueryLimits,
    ScanResult,
    format_ms,
)
from cityhub.streams.api.aggregates import AGGREGATES_KEY, AggregateList
from cityhub.streams.api.app import build_api
from cityhub.streams.api.openapi import build_openapi
from cityhub.streams.registry.principals import Principal
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore
from tests.personal_reads import personal_reads_for_home

from .test_api_support import Api, seeded_registry

T0_MS = epoch_us("2026-11-29T10:00:00Z") // 1000
MIN = 60_000
A = "/api/v1/tenants/acme/aggregates"
B = "/api/v1/tenants/beta/aggregates"

LIMITS = QueryLimits(
    grace_seconds=60,
    largest_window_seconds=3600,
    max_range_seconds=86400,
    max_scanned_records=10_000,
    max_items=1000,
    timeout_seconds=5.0,
    concurrency=2,
)


def aggregate(
    key: str,
    *,
    tenant: str | None,
    classification: str | None,
    grouping: str = "device",
    quantity: str = "temperature",
    size: int = 60,
    start_ms: int = T0_MS,
    revision: int = 0,
    count: int = 1,
) -> Aggregate:
    """A real aggregate record, as the window agent writes it."""
    return Aggregate(
        aggregate_id=aggregate_id(grouping, tenant, key, quantity, "Cel", size, start_ms * 1000),
        grouping=grouping,  # type: ignore[arg-type]
        key=key,
        tenant=tenant,
        classification=classification,
        device_id=key if grouping == "device" else None,
        area=key if grouping == "area" else "north",
        quantity=quantity,
        unit="Cel",
        window_size=size,
        window_start=format_ms(start_ms),
        window_end=format_ms(start_ms + size * 1000),
        count=count,
        min=1.0,
        max=2.0 + count,
        sum=3.0,
        mean=1.5,
        last=2.0,
        last_observed_at=format_ms(start_ms + 1000),
        last_event_id="e-1",
        revision=revision,
    )


@pytest.fixture
async def api() -> AsyncIterator[tuple[Api, InMemoryAggregates]]:
    async with seeded_registry() as (registry, store, keys):
        system = Principal.system()
        await registry.create_type(
            system,
            "acme",
            DeviceTypeSpec(id="pub", name="Open", classification=Classification.PUBLIC),
        )
        for tenant, device, type_id in (
            ("acme", "a-1", "th"),
            ("acme", "a-pub", "pub"),
            ("beta", "b-1", "th"),
        ):
            await registry.create_device(
                system, tenant, DeviceSpec(id=device, name=device, type=type_id, area="north")
            )
        topic = InMemoryAggregates(LIMITS, partitions=4)
        subscriptions = Subscriptions(InMemorySubscriptionStore(), registry.view)
        app = build_api(registry, subscriptions=subscriptions)
        app[AGGREGATES_KEY] = topic  # instead of the Kafka reader, before the app starts
        async with TestClient(TestServer(app)) as client:
            yield Api(client, registry, store, keys, subscriptions), topic


def params(**kw: Any) -> dict[str, str]:
    doc = {"from": format_ms(T0_MS), "to": format_ms(T0_MS + 10 * MIN)}
    doc.update({k: str(v) for k, v in kw.items()})
    return doc


async def test_a_devices_windows_current_revisions_in_order(
    api: tuple[Api, InMemoryAggregates],
) -> None:
    client, topic = api
    # In the order a window state writes them: closes by window end, late revisions within grace.
    for a in (
        aggregate("a-1", tenant="acme", classification="internal", count=1),
        aggregate("a-1", tenant="acme", classification="internal", quantity="humidity"),
        aggregate("a-2", tenant="acme", classification="internal"),
        aggregate("a-1", tenant="acme", classification="internal", start_ms=T0_MS + MIN),
        aggregate("a-1", tenant="acme", classification="internal", revision=1, count=2),
        aggregate("a-1", tenant="acme", classification="internal", start_ms=T0_MS + 10 * MIN),
        aggregate("a-1", tenant="acme", classification="internal", size=900),
    ):
        topic.add(a)
    for who in ("sub_a", "op_a", "admin"):
        status, doc, _ = await client.call("GET", A, who, params=params(deviceId="a-1"))
        assert status == 200, doc
        items = AggregateList.model_validate(doc).items
        assert [(i.window_start, i.window_size, i.quantity, i.revision) for i in items] == [
            (format_ms(T0_MS), 60, "humidity", 0),
            (format_ms(T0_MS), 60, "temperature", 1),
            (format_ms(T0_MS), 900, "temperature", 0),
            (format_ms(T0_MS + MIN), 60, "temperature", 0),
        ]
        assert items[1].count == 2
    status, doc, _ = await client.call(
        "GET", A, "sub_a", params=params(deviceId="a-1", quantity="temperature", windowSize=60)
    )
    assert [(i["window_start"], i["revision"]) for i in doc["items"]] == [
        (format_ms(T0_MS), 1),
        (format_ms(T0_MS + MIN), 0),
    ]
    # An alias of the catalogue finds the same windows (a review's pm25 found none).
    status, aliased, _ = await client.call(
        "GET", A, "sub_a", params=params(deviceId="a-1", quantity="temp", windowSize=60)
    )
    assert aliased == doc
    status, doc, _ = await client.call("GET", A, "sub_a", params=params(deviceId="a-pub"))
    assert (status, doc) == (200, {"items": [], "source": "kafka"})


async def test_the_response_matches_the_openapi_document(
    api: tuple[Api, InMemoryAggregates],
) -> None:
    from jsonschema import Draft202012Validator
    from referencing import Registry as RefRegistry
    from referencing import Resource
    from referencing.jsonschema import DRAFT202012

    client, topic = api
    topic.add(aggregate("a-1", tenant="acme", classification=None))
    _, doc, _ = await client.call("GET", A, "sub_a", params=params(deviceId="a-1"))
    spec = build_openapi(max_body_bytes=1024, max_import_bytes=1024)
    ok = spec["paths"]["/tenants/{tenant}/aggregates"]["get"]["responses"]["200"]
    ref = ok["content"]["application/json"]["schema"]["$ref"]
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    refs: RefRegistry[Any] = RefRegistry().with_resource("urn:openapi", resource)
    validator = Draft202012Validator({"$ref": f"urn:openapi{ref}"}, registry=refs)
    validator.validate(doc)
    assert len(doc["items"]) == 1


async def test_another_tenant_sees_only_public_windows_of_a_public_device(
    api: tuple[Api, InMemoryAggregates],
) -> None:
    client, topic = api
    topic.add(aggregate("a-pub", tenant="acme", classification="public"))
    topic.add(aggregate("a-pub", tenant="acme", classification=None, start_ms=T0_MS + MIN))
    topic.add(aggregate("a-pub", tenant="acme", classification="public", start_ms=T0_MS + 2 * MIN))
    # The latest revision became personal: no older public revision may show instead.
    topic.add(
        aggregate(
            "a-pub", tenant="acme", classification="personal", start_ms=T0_MS + 2 * MIN, revision=1
        )
    )
    topic.add(aggregate("a-1", tenant="acme", classification="public"))
    status, doc, _ = await client.call("GET", B, "sub_b", params=params(deviceId="a-pub"))
    assert status == 200
    assert [(i["window_start"], i["classification"]) for i in doc["items"]] == [
        (format_ms(T0_MS), "public")
    ]
    status, doc, _ = await client.call("GET", A, "sub_a", params=params(deviceId="a-pub"))
    # Its own: all three windows, but the personal one only for an activity that admits it.
    assert len(doc["items"]) == 2
    assert doc["personal_withheld"] == 1
    # a-1's type is internal: another tenant is told it does not exist, public windows or not.
    status, doc, _ = await client.call("GET", B, "sub_b", params=params(deviceId="a-1"))
    assert status == 404
    assert "a-1" in doc["detail"]


async def test_tenant_scope_and_unknown_things_are_not_found(
    api: tuple[Api, InMemoryAggregates],
) -> None:
    client, _ = api
    for who in ("sub_b", "op_b"):
        status, _, _ = await client.call("GET", A, who, params=params(deviceId="a-1"))
        assert status == 404
        status, _, _ = await client.call("GET", A, who, params=params(area="north"))
        assert status == 404
    status, _, _ = await client.call("GET", A, "sub_a", params=params(deviceId="nope"))
    assert status == 404
    status, _, _ = await client.call(
        "GET", "/api/v1/tenants/gamma/aggregates", "admin", params=params(area="x")
    )
    assert status == 404
    status, _, headers = await client.call("GET", A, None, params=params(deviceId="a-1"))
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_areas_are_per_tenant(api: tuple[Api, InMemoryAggregates]) -> None:
    client, topic = api
    topic.add(aggregate("north", grouping="area", tenant="acme", classification="internal"))
    topic.add(aggregate("north", grouping="area", tenant="beta", classification="public"))
    status, doc, _ = await client.call("GET", A, "sub_a", params=params(area="north"))
    assert [(i["tenant"], i["key"]) for i in doc["items"]] == [("acme", "north")]
    status, doc, _ = await client.call("GET", B, "sub_b", params=params(area="north"))
    assert [(i["tenant"], i["grouping"]) for i in doc["items"]] == [("beta", "area")]
    status, doc, _ = await client.call("GET", A, "sub_a", params=params(area="south"))
    assert (status, doc) == (200, {"items": [], "source": "kafka"})


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"deviceId": "a-1", "to": format_ms(T0_MS)}, "from"),
        ({"deviceId": "a-1", "from": format_ms(T0_MS)}, "to"),
        ({"deviceId": "a-1", "from": "yesterday", "to": format_ms(T0_MS)}, "from"),
        ({"deviceId": "a-1", "from": "2026-11-29T10:00:00", "to": format_ms(T0_MS)}, "from"),
        ({"deviceId": "a-1", "from": format_ms(T0_MS), "to": format_ms(T0_MS)}, "to"),
        (
            {"deviceId": "a-1", "from": format_ms(T0_MS), "to": format_ms(T0_MS + 86400_001)},
            "to",
        ),
        ({"from": format_ms(T0_MS), "to": format_ms(T0_MS + MIN)}, "deviceId"),
        (
            {
                "deviceId": "a-1",
                "area": "north",
                "from": format_ms(T0_MS),
                "to": format_ms(T0_MS + MIN),
            },
            "deviceId",
        ),
        (
            {
                "deviceId": "a-1",
                "windowSize": "1m",
                "from": format_ms(T0_MS),
                "to": format_ms(T0_MS + MIN),
            },
            "windowSize",
        ),
        # A NUL (or any non-printable) in a text parameter: PostgreSQL would refuse it as if
        # the history store had failed (a 503 that anyone could provoke).
        ({"area": "cen\x00trum", "from": format_ms(T0_MS), "to": format_ms(T0_MS + MIN)}, "area"),
        (
            {
                "deviceId": "a-1",
                "quantity": "\x00",
                "from": format_ms(T0_MS),
                "to": format_ms(T0_MS + MIN),
            },
            "quantity",
        ),
        (
            {"deviceId": "a-\u202e1", "from": format_ms(T0_MS), "to": format_ms(T0_MS + MIN)},
            "deviceId",
        ),
    ],
)
async def test_bad_queries_are_400_naming_the_parameter(
    api: tuple[Api, InMemoryAggregates], query: dict[str, str], field: str
) -> None:
    client, topic = api
    status, doc, headers = await client.call("GET", A, "sub_a", params=query)
    assert status == 400, doc
    assert headers["Content-Type"].startswith("application/problem+json")
    assert doc["errors"][0]["field"] == field
    assert topic.reads == 0


async def test_an_offset_with_an_unencoded_plus_is_understood(
    api: tuple[Api, InMemoryAggregates],
) -> None:
    client, topic = api
    topic.add(aggregate("a-1", tenant="acme", classification="internal"))
    path = f"{A}?deviceId=a-1&from=2026-11-29T11:00:00+01:00&to=2026-11-29T11:10:00+01:00"
    status, doc, _ = await client.call("GET", path, "sub_a")
    assert status == 200, doc
    assert len(doc["items"]) == 1


async def test_a_partition_too_large_to_scan_is_400(api: tuple[Api, InMemoryAggregates]) -> None:
    client, topic = api
    topic.limits = dataclasses.replace(LIMITS, max_scanned_records=5)
    for i in range(10):
        topic.add(
            aggregate("a-1", tenant="acme", classification="internal", start_ms=T0_MS + i * MIN)
        )
    status, doc, _ = await client.call("GET", A, "sub_a", params=params(deviceId="a-1"))
    assert status == 400
    assert "more than 5 records" in doc["detail"]
    assert doc["errors"][0]["field"] == "to"


async def test_kafka_unavailable_is_503_with_retry_after(
    api: tuple[Api, InMemoryAggregates], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, topic = api

    async def down(query: AggregateQuery) -> ScanResult:
        raise AggregatesUnavailable("Kafka failed the read: KafkaConnectionError")

    monkeypatch.setattr(topic, "read", down)
    status, doc, headers = await client.call("GET", A, "sub_a", params=params(deviceId="a-1"))
    assert status == 503
    assert headers["Retry-After"] == "5"
    assert "KafkaConnectionError" in doc["detail"]


async def test_personal_windows_go_out_only_for_an_admitting_activity_and_are_logged() -> None:
    async with seeded_registry() as (registry, store, keys):
        system = Principal.system()
        reads, log = await personal_reads_for_home(registry)
        app = build_api(registry, personal_reads=reads)
        topic = InMemoryAggregates(LIMITS, partitions=4)
        app[AGGREGATES_KEY] = topic
        topic.add(aggregate("h-1", tenant="acme", classification="personal"))
        async with TestClient(TestServer(app)) as test_client:
            subscriptions = Subscriptions(InMemorySubscriptionStore(), registry.view)
            client = Api(test_client, registry, store, keys, subscriptions)
            for activity in (None, "parking", "nonesuch"):
                query = params(deviceId="h-1") | (
                    {"processingActivity": activity} if activity else {}
                )
                status, doc, _ = await client.call("GET", A, "sub_a", params=query)
                assert status == 200
                assert doc["items"] == []
                assert doc["personal_withheld"] == 1
            assert log.records == []
            query = params(deviceId="h-1", processingActivity="care")
            status, doc, _ = await client.call("GET", A, "sub_a", params=query)
            assert [i["classification"] for i in doc["items"]] == ["personal"]
            assert "personal_withheld" not in doc
            (record,) = log.records
            assert record.action == "read"
            assert record.activity_id == "urn:x:acme:care"
            assert record.items == 1
            # Another tenant never gets them, whatever activity it names; not even its admin key,
            # which may read the tenant's other windows.
            status, _, _ = await client.call("GET", A, "sub_b", params=query)
            assert status == 404
            beta_admin = (await registry.create_key(system, "beta", Role.ADMIN, "beta-admin"))[1]
            client.keys["beta_admin"] = beta_admin
            status, doc, _ = await client.call("GET", A, "beta_admin", params=query)
            assert status == 200
            assert doc["items"] == []
            assert doc["personal_withheld"] == 1
            assert len(log.records) == 1
