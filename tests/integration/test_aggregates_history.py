"""The aggregates API served from the history store, on the real stack: a ``cityhub api`` process
whose history schema is this module's own (rows written straight into it, as the writer keeps
them: the current revision of each window), and a little of the same data on Kafka.

Covers: a device's month of hourly aggregates comes back whole and in order from history
(``source: history``) and in time; a short recent range still reads Kafka (``source:
kafka``); the same visibility as the Kafka path (another tenant's key: 404 for an internal
device, public windows only of a public one; areas per tenant) and the same privacy rule
(personal windows withheld and counted without an activity, returned and logged for one that
admits them); the store's longer range limit; a store that cannot be read is a 503, not a
500."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityhub.connectors.kafka import create_producer
from cityhub.schemas.aggregate import Aggregate, aggregate_id
from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec, Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.aggregation.query import (
    AggregateQuery,
    AggregatesUnavailable,
    device_group,
    format_ms,
)
from cityhub.streams.aggregation.query import _order as kafka_order
from cityhub.streams.api.aggregates import AGGREGATES_KEY
from cityhub.streams.api.app import build_api
from cityhub.streams.history.aggregates_source import HistoryAggregateReader
from cityhub.streams.history.connection import connect, password_path
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore, RegistryStore
from cityhub.streams.topic_admin import ensure_topics
from tests.personal_reads import personal_reads_for_home

from .conftest import settings_with_schema
from .history_rows import insert_aggregates
from .hub import BOOTSTRAP, Hub

pytestmark = pytest.mark.integration

HOUR = 3600 * 1000
DAY = 24 * HOUR
NOW = int(time.time() * 1000) // HOUR * HOUR
M0 = NOW - 40 * DAY
"""The month of hourly windows: 30 days from 40 days ago."""
QUANTITIES = ("no2", "pm10", "temperature")
RECENT = NOW - 2 * HOUR
"""One window two hours ago, on Kafka and (with another count) in history."""


def window(
    key: str,
    start: int,
    *,
    tenant: str = "acme",
    classification: str = "internal",
    grouping: str = "device",
    quantity: str = "temperature",
    size: int = 3600,
    count: int = 1,
    revision: int = 0,
) -> Aggregate:
    return Aggregate(
        aggregate_id=aggregate_id(grouping, tenant, key, quantity, "ug/m3", size, start * 1000),
        grouping=grouping,  # type: ignore[arg-type]
        key=key,
        tenant=tenant,
        classification=classification,
        device_id=key if grouping == "device" else None,
        area="north",
        quantity=quantity,
        unit="ug/m3",
        window_size=size,
        window_start=format_ms(start),
        window_end=format_ms(start + size * 1000),
        count=count,
        min=1.0,
        max=float(count),
        sum=float(count),
        mean=1.0,
        last=1.0,
        last_observed_at=format_ms(start + 1000),
        last_event_id=f"e-{key}-{start}",
        revision=revision,
    )


def month() -> list[Aggregate]:
    out = []
    for hour in range(30 * 24):
        start = M0 + hour * HOUR
        for quantity in QUANTITIES:
            out.append(window("m-1", start, quantity=quantity))
        # A public device: every sixth window personal (a personal reading in it).
        out.append(
            window(
                "m-pub", start, classification="personal" if hour % 6 == 5 else "public", count=2
            )
        )
        out.append(window("b-1", start, tenant="beta"))
        if hour < 48:
            out.append(window("north", start, grouping="area", classification="public"))
            out.append(window("north", start, grouping="area", tenant="beta"))
    out.append(window("m-1", RECENT, count=7))  # history's copy of the recent window
    return out


async def seed(settings: Settings) -> dict[str, str]:
    store = RegistryStore(settings)
    await store.start()
    try:
        registry, system = Registry(store), Principal.system()
        for tenant in ("acme", "beta"):
            await registry.create_tenant(system, TenantSpec(id=tenant, name=tenant.title()))
            await registry.create_type(system, tenant, DeviceTypeSpec(id="aq", name="Air"))
        await registry.create_type(
            system, "acme", DeviceTypeSpec(id="pub", name="Open", classification="public")
        )
        for tenant, device_id, type_id in (
            ("acme", "m-1", "aq"),
            ("acme", "m-pub", "pub"),
            ("beta", "b-1", "aq"),
        ):
            spec = DeviceSpec(id=device_id, name=device_id, type=type_id, area="north")
            await registry.create_device(system, tenant, spec)
        keys = {}
        for name, tenant, role in (
            ("sub_a", "acme", Role.SUBSCRIBER),
            ("admin_b", "beta", Role.ADMIN),
            ("sub_b", "beta", Role.SUBSCRIBER),
        ):
            keys[name] = (await registry.create_key(system, tenant, role, name))[1]
        return keys
    finally:
        await store.stop()


async def produce_recent(settings: Settings) -> None:
    """The recent window on Kafka, with a count that tells it from history's copy."""
    producer = create_producer(settings.kafka, client_id="test-aggregates-history")
    await producer.start()
    try:
        a = window("m-1", RECENT, count=5)
        topic = Topics.for_prefix(settings.kafka.topic_prefix).aggregates
        await producer.send_and_wait(
            topic, a.to_json(), key=a.kafka_key(), timestamp_ms=a.timestamp_ms()
        )
    finally:
        await producer.stop()


@dataclass
class Stack:
    hub: Hub
    keys: dict[str, str]

    def get(self, tenant: str, who: str, **query: Any) -> tuple[int, Any, float]:
        url = (
            f"http://127.0.0.1:{self.hub.port}/api/v1/tenants/{tenant}/aggregates?"
            + urllib.parse.urlencode({k: str(v) for k, v in query.items()})
        )
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.keys[who]}"})
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        return status, json.loads(body), time.perf_counter() - started


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, history_settings: Settings) -> Iterator[Stack]:
    hub = Hub(
        tmp_path_factory.mktemp("aggregates-history"),
        command="api",
        extra_env={
            "CITYHUB_HISTORY__ENABLED": "true",
            "CITYHUB_HISTORY__DB_SCHEMA": history_settings.history.db_schema,
            "CITYHUB_HISTORY__PASSWORD_FILE": str(password_path(history_settings).resolve()),
            "CITYHUB_HISTORY__KAFKA_WINDOW_HOURS": "6",
        },
    )
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=hub.prefix, partitions=4)
    )

    async def prepare() -> dict[str, str]:
        await ensure_topics(settings)
        keys = await seed(settings)
        await produce_recent(settings)
        async with await connect(history_settings, autocommit=True) as conn:
            await insert_aggregates(conn, month())
        return keys

    keys = asyncio.run(prepare())
    hub.start()
    try:
        yield Stack(hub, keys)
    finally:
        hub.stop()


MONTH = {"from": format_ms(M0), "to": format_ms(M0 + 30 * DAY)}


def test_a_devices_month_of_hourly_aggregates_comes_back_whole_and_in_order(
    stack: Stack,
) -> None:
    best = float("inf")
    for _ in range(3):
        status, doc, took = stack.get(
            "acme", "sub_a", deviceId="m-1", quantity="no2", windowSize=3600, **MONTH
        )
        assert status == 200, doc.get("errors")
        best = min(best, took)
    assert doc["source"] == "history"
    starts = [item["window_start"] for item in doc["items"]]
    assert starts == [format_ms(M0 + h * HOUR) for h in range(30 * 24)]
    assert {item["quantity"] for item in doc["items"]} == {"no2"}
    status, doc, _ = stack.get("acme", "sub_a", deviceId="m-1", **MONTH)
    assert status == 200
    assert len(doc["items"]) == 30 * 24 * len(QUANTITIES)
    assert doc["items"] == sorted(doc["items"], key=kafka_order)
    print(f"\na month of one device's hourly aggregates (720) through the API: {best:.3f} s")
    assert best < 1.0


def test_a_short_recent_range_still_reads_kafka(stack: Stack) -> None:
    recent = {"from": format_ms(RECENT), "to": format_ms(RECENT + HOUR)}
    status, doc, _ = stack.get("acme", "sub_a", deviceId="m-1", **recent)
    assert status == 200, doc
    assert (doc["source"], [i["count"] for i in doc["items"]]) == ("kafka", [5])
    # The same window in a range that reaches further back: history's copy.
    longer = {"from": format_ms(RECENT - 10 * HOUR), "to": format_ms(RECENT + HOUR)}
    status, doc, _ = stack.get("acme", "sub_a", deviceId="m-1", **longer)
    assert (doc["source"], [i["count"] for i in doc["items"]]) == ("history", [7])


def test_who_sees_what_is_the_same_as_on_kafka(stack: Stack) -> None:
    # Another tenant's internal device: not found, for its admin too.
    for who in ("sub_b", "admin_b"):
        status, doc, _ = stack.get("beta", who, deviceId="m-1", **MONTH)
        assert status == 404, doc
    # A public device: its public windows only; never a personal one.
    status, doc, _ = stack.get("beta", "sub_b", deviceId="m-pub", **MONTH)
    assert status == 200, doc
    assert len(doc["items"]) == 30 * 24 * 5 // 6
    assert {i["classification"] for i in doc["items"]} == {"public"}
    # Its own tenant: every window but the personal ones, which are counted.
    status, doc, _ = stack.get("acme", "sub_a", deviceId="m-pub", **MONTH)
    assert len(doc["items"]) == 30 * 24 * 5 // 6
    assert doc["personal_withheld"] == 30 * 24 // 6
    # Areas are per tenant: beta's area of the same name, and acme's public one.
    status, doc, _ = stack.get("beta", "sub_b", area="north", **MONTH)
    assert {i["tenant"] for i in doc["items"]} == {"beta"}
    assert len(doc["items"]) == 48
    status, doc, _ = stack.get("acme", "sub_a", area="north", **MONTH)
    assert {i["tenant"] for i in doc["items"]} == {"acme"}


def test_the_stores_range_limit(stack: Stack) -> None:
    year = {"from": format_ms(M0 - 300 * DAY), "to": format_ms(M0 + 30 * DAY)}
    status, doc, _ = stack.get("acme", "sub_a", deviceId="m-1", quantity="no2", **year)
    assert (status, len(doc["items"]), doc["source"]) == (200, 720, "history")
    too_long = {"from": format_ms(M0 - 400 * DAY), "to": format_ms(M0)}
    status, doc, _ = stack.get("acme", "sub_a", deviceId="m-1", **too_long)
    assert status == 400, doc  # invalid input (NL API Design Rules)
    assert doc["errors"][0]["field"] == "to"


async def test_a_store_that_cannot_be_read_is_unavailable_not_an_error() -> None:
    missing = settings_with_schema("test_no_such_schema")
    reader = HistoryAggregateReader(missing)
    try:
        with pytest.raises(AggregatesUnavailable, match="history store failed"):
            await reader.read(AggregateQuery(device_group("m-1"), M0, M0 + DAY))
    finally:
        await reader.close()


async def test_personal_windows_from_history_only_for_an_admitting_activity_and_logged(
    history_settings: Settings,
) -> None:
    """The purpose check on the store's path: the API in this process over an in-memory
    registry and register, its aggregates read from this module's schema."""
    store = InMemoryRegistryStore()
    await store.start()
    registry, system = Registry(store), Principal.system()
    await registry.create_tenant(system, TenantSpec(id="acme", name="Acme"))
    key = (await registry.create_key(system, "acme", Role.SUBSCRIBER, "sub"))[1]
    reads, log = await personal_reads_for_home(registry)
    app = build_api(registry, personal_reads=reads)
    app[AGGREGATES_KEY] = HistoryAggregateReader(history_settings)
    async with await connect(history_settings, autocommit=True) as conn:
        await insert_aggregates(
            conn,
            [window("h-1", M0 + h * HOUR, classification="personal") for h in range(24)]
            + [window("h-1", M0 + h * HOUR, quantity="no2") for h in range(24)],
        )
    day = {"from": format_ms(M0), "to": format_ms(M0 + DAY), "deviceId": "h-1"}
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with TestClient(TestServer(app)) as client:
            for activity in (None, "parking", "nonesuch"):
                query = day | ({"processingActivity": activity} if activity else {})
                response = await client.get(
                    "/api/v1/tenants/acme/aggregates", params=query, headers=headers
                )
                doc = await response.json()
                assert response.status == 200, doc
                assert doc["source"] == "history"
                assert {i["quantity"] for i in doc["items"]} == {"no2"}
                assert doc["personal_withheld"] == 24
            assert log.records == []
            response = await client.get(
                "/api/v1/tenants/acme/aggregates",
                params=day | {"processingActivity": "care"},
                headers=headers,
            )
            doc = await response.json()
            assert len(doc["items"]) == 48
            assert "personal_withheld" not in doc
            (record,) = log.records
            assert (record.action, record.activity_id, record.items) == (
                "read",
                "urn:x:acme:care",
                24,
            )
    finally:
        await store.stop()
