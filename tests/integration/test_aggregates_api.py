"""Aggregates read back through the API on the real stack: a ``cityhub api`` process over its own
topic prefix, aggregate records produced to ``<prefix>.aggregates`` as the window agent writes
them (real ``Aggregate`` records, key = group, timestamp = window end, several revisions,
several groups and tenants), then queried over HTTP and with the Kafka reader directly.

The hub runs without the history store (``CITYHUB_HISTORY__ENABLED=false``): every query reads
Kafka, as a hub does that has no store; ``test_aggregates_history.py`` tests the store's path.

Covers: current revisions in order, quantity and size filters, who sees what (another tenant's
key finds another tenant's internal device not at all and a public device's public windows
only, areas per tenant), 400 for bad ranges, 401 without a key, the watermark early stop and the
high-watermark stop on the real partition, concurrent queries through the consumer pool, and the
time of a query over a partition of 100 000 aggregates (printed; bounded loosely).
"""

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

from cityhub.connectors.kafka import create_producer
from cityhub.schemas.aggregate import Aggregate, aggregate_id
from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec, Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.aggregation.query import (
    AggregateQuery,
    area_group,
    device_group,
    format_ms,
    partition_for_key,
)
from cityhub.streams.aggregation.reader import KafkaAggregateReader
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.topic_admin import ensure_topics

from .hub import BOOTSTRAP, Hub

pytestmark = pytest.mark.integration

PARTITIONS = 4  # the Hub's CITYHUB_KAFKA__PARTITIONS
MIN = 60_000
HOUR = 60 * MIN
# In the past (Kafka refuses timestamps more than an hour ahead of its clock) and recent (within
# the topic's retention): the small data set from T0 on, the large one from T0 + 3 h for 6 h.
T0 = (int(time.time() * 1000) - 30 * HOUR) // HOUR * HOUR
BIG_BASE = T0 + 3 * HOUR
BIG_DEVICES = 250
BIG_HOURS = 6


def aggregate(
    key: str,
    *,
    tenant: str,
    classification: str | None,
    grouping: str = "device",
    quantity: str = "temperature",
    size: int = 60,
    start: int = T0,
    revision: int = 0,
    count: int = 1,
) -> Aggregate:
    return Aggregate(
        aggregate_id=aggregate_id(grouping, tenant, key, quantity, "Cel", size, start * 1000),
        grouping=grouping,  # type: ignore[arg-type]
        key=key,
        tenant=tenant,
        classification=classification,
        device_id=key if grouping == "device" else None,
        area="north",
        quantity=quantity,
        unit="Cel",
        window_size=size,
        window_start=format_ms(start),
        window_end=format_ms(start + size * 1000),
        count=count,
        min=1.0,
        max=1.0 + count,
        sum=2.0 * count,
        mean=2.0,
        last=2.0,
        last_observed_at=format_ms(start + 1000),
        last_event_id=f"e-{key}-{start}",
        revision=revision,
    )


def small_data() -> list[Aggregate]:
    """The functional data set, in the order a worker would write it."""
    out: list[Aggregate] = []
    for minute in range(10):
        start = T0 + minute * MIN
        if minute == 9:  # late changes of minute 8's window, before minute 9 closes: in grace
            for revision in (1, 2):
                out.append(
                    aggregate(
                        "a-1",
                        tenant="acme",
                        classification="internal",
                        start=T0 + 8 * MIN,
                        revision=revision,
                        count=1 + revision,
                    )
                )
            # a-pub's window of minute 8 was public; a late personal observation restricts it.
            out.append(
                aggregate(
                    "a-pub",
                    tenant="acme",
                    classification="personal",
                    start=T0 + 8 * MIN,
                    revision=1,
                )
            )
        out.append(aggregate("a-1", tenant="acme", classification="internal", start=start))
        out.append(
            aggregate("a-1", tenant="acme", classification="internal", start=start, quantity="rh")
        )
        out.append(
            aggregate(
                "a-pub",
                tenant="acme",
                classification="public" if minute % 2 == 0 else "internal",
                start=start,
            )
        )
        out.append(aggregate("b-1", tenant="beta", classification="internal", start=start))
        out.append(
            aggregate("north", grouping="area", tenant="acme", classification=None, start=start)
        )
        out.append(
            aggregate("north", grouping="area", tenant="beta", classification="public", start=start)
        )
    out.append(aggregate("a-1", tenant="acme", classification="internal", size=900))
    # Hours later: the early stop for any query ending before T0 + 2 h - grace - 1 h.
    out.append(aggregate("a-1", tenant="acme", classification="internal", start=T0 + 2 * HOUR))
    return out


def big_devices() -> list[str]:
    """Device ids that share one partition with device big-0."""
    target = partition_for_key(device_group("big-0").encode(), PARTITIONS)
    ids, i = [], 0
    while len(ids) < BIG_DEVICES:
        device_id = f"big-{i}"
        if partition_for_key(device_group(device_id).encode(), PARTITIONS) == target:
            ids.append(device_id)
        i += 1
    return ids


def big_data(devices: list[str]) -> Iterator[Aggregate]:
    """Six hours of 60 s, 900 s and 3600 s windows of one quantity for each device, window by
    window as a worker closes them: about 100 000 records in one partition."""
    base = BIG_BASE
    for minute in range(BIG_HOURS * 60):
        start = base + minute * MIN
        end = start + MIN
        for device_id in devices:
            yield aggregate(device_id, tenant="acme", classification="internal", start=start)
            for size in (900, 3600):
                if (end - base) % (size * 1000) == 0:
                    yield aggregate(
                        device_id,
                        tenant="acme",
                        classification="internal",
                        size=size,
                        start=end - size * 1000,
                    )


async def produce(settings: Settings, aggregates: Iterator[Aggregate] | list[Aggregate]) -> int:
    producer = create_producer(settings.kafka, client_id="test-aggregates")
    await producer.start()
    topic = Topics.for_prefix(settings.kafka.topic_prefix).aggregates
    sent = 0
    try:
        pending = []
        for a in aggregates:
            pending.append(
                await producer.send(
                    topic, a.to_json(), key=a.kafka_key(), timestamp_ms=a.timestamp_ms()
                )
            )
            sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def seed(settings: Settings) -> dict[str, str]:
    store = RegistryStore(settings)
    await store.start()
    try:
        registry, system = Registry(store), Principal.system()
        for tenant in ("acme", "beta"):
            await registry.create_tenant(system, TenantSpec(id=tenant, name=tenant.title()))
            await registry.create_type(system, tenant, DeviceTypeSpec(id="th", name="Thermo"))
        await registry.create_type(
            system, "acme", DeviceTypeSpec(id="pub", name="Open", classification="public")
        )
        for tenant, device_id, type_id in (
            ("acme", "a-1", "th"),
            ("acme", "a-pub", "pub"),
            ("beta", "b-1", "th"),
            ("acme", "big-0", "th"),
        ):
            spec = DeviceSpec(id=device_id, name=device_id, type=type_id, area="north")
            await registry.create_device(system, tenant, spec)
        keys = {}
        for name, tenant, role in (
            ("admin", "acme", Role.ADMIN),
            ("sub_a", "acme", Role.SUBSCRIBER),
            ("op_a", "acme", Role.OPERATOR),
            ("sub_b", "beta", Role.SUBSCRIBER),
        ):
            keys[name] = (await registry.create_key(system, tenant, role, name))[1]
        return keys
    finally:
        await store.stop()


@dataclass
class Stack:
    hub: Hub
    settings: Settings
    keys: dict[str, str]
    big: list[str]
    big_records: int

    def get(
        self, tenant: str, who: str | None, **query: Any
    ) -> tuple[int, Any, dict[str, str], float]:
        url = (
            f"http://127.0.0.1:{self.hub.port}/api/v1/tenants/{tenant}/aggregates?"
            + urllib.parse.urlencode({k: str(v) for k, v in query.items()})
        )
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        request = urllib.request.Request(url, headers=headers)
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, body, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, body, got = exc.code, exc.read(), dict(exc.headers)
        return status, json.loads(body) if body else None, got, time.perf_counter() - started


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Kafka alone: this module tests the Kafka path (its data is hours old, which a hub with
    # history would read from the store; test_aggregates_history.py tests that path).
    hub = Hub(
        tmp_path_factory.mktemp("aggregates"),
        command="api",
        extra_env={"CITYHUB_HISTORY__ENABLED": "false"},
    )
    settings = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=BOOTSTRAP, topic_prefix=hub.prefix, partitions=PARTITIONS
        )
    )
    big = big_devices()

    async def prepare() -> tuple[dict[str, str], int]:
        await ensure_topics(settings)
        keys = await seed(settings)
        await produce(settings, small_data())
        return keys, await produce(settings, big_data(big))

    keys, big_records = asyncio.run(prepare())
    hub.start()
    try:
        yield Stack(hub, settings, keys, big, big_records)
    finally:
        hub.stop()


def window(minute: int) -> str:
    return format_ms(T0 + minute * MIN)


RANGE = {"from": window(0), "to": window(10)}


def test_a_devices_current_revisions_in_order(stack: Stack) -> None:
    for who in ("sub_a", "op_a", "admin"):
        status, doc, _, _ = stack.get("acme", who, deviceId="a-1", **RANGE)
        assert status == 200, doc
        assert doc["source"] == "kafka"
        got = [
            (i["window_start"], i["window_size"], i["quantity"], i["revision"])
            for i in doc["items"]
        ]
        expected = []
        for minute in range(10):
            expected.append((window(minute), 60, "rh", 0))
            expected.append((window(minute), 60, "temperature", 2 if minute == 8 else 0))
            if minute == 0:
                expected.append((window(0), 900, "temperature", 0))
        assert got == expected
    status, doc, _, _ = stack.get(
        "acme", "sub_a", deviceId="a-1", quantity="temperature", windowSize=60, **RANGE
    )
    assert [(i["window_start"], i["count"]) for i in doc["items"]] == [
        (window(m), 3 if m == 8 else 1) for m in range(10)
    ]
    status, doc, _, _ = stack.get(
        "acme", "sub_a", deviceId="a-1", **{"from": window(3), "to": window(5)}
    )
    assert {i["window_start"] for i in doc["items"]} == {window(0), window(3), window(4)}


def test_another_tenant_sees_only_public_windows(stack: Stack) -> None:
    status, doc, _, _ = stack.get("beta", "sub_b", deviceId="a-pub", **RANGE)
    assert status == 200, doc
    # Even minutes were public; minute 8 became personal in its latest revision.
    assert [(i["window_start"], i["classification"]) for i in doc["items"]] == [
        (window(m), "public") for m in (0, 2, 4, 6)
    ]
    status, doc, _, _ = stack.get("acme", "sub_a", deviceId="a-pub", **RANGE)
    # Its own tenant: every window but the personal one, which only a processing activity
    # that admits it may read (the answer counts it).
    assert len(doc["items"]) == 9
    assert doc["personal_withheld"] == 1
    for tenant, device_id in (("beta", "a-1"), ("acme", "a-1"), ("beta", "nope")):
        status, doc, _, _ = stack.get(tenant, "sub_b", deviceId=device_id, **RANGE)
        assert status == 404, (tenant, device_id, doc)
        assert doc["type"].endswith("/not-found")
    status, _, _, _ = stack.get("acme", "sub_b", area="north", **RANGE)
    assert status == 404


def test_areas_are_per_tenant(stack: Stack) -> None:
    status, doc, _, _ = stack.get("acme", "sub_a", area="north", **RANGE)
    assert status == 200
    assert {(i["grouping"], i["tenant"], i["key"]) for i in doc["items"]} == {
        ("area", "acme", "north")
    }
    assert len(doc["items"]) == 10
    status, doc, _, _ = stack.get("beta", "sub_b", area="north", **RANGE)
    assert {i["tenant"] for i in doc["items"]} == {"beta"}
    assert len(doc["items"]) == 10


def test_bad_ranges_are_400_and_no_key_is_401(stack: Stack) -> None:
    for query, field in (
        ({"from": window(0), "to": format_ms(T0 + 8 * 24 * HOUR)}, "to"),
        ({"from": window(5), "to": window(5)}, "to"),
        ({"from": window(5), "to": window(1)}, "to"),
        ({"from": "tomorrow", "to": window(1)}, "from"),
        ({"to": window(1)}, "from"),
    ):
        status, doc, headers, _ = stack.get("acme", "sub_a", deviceId="a-1", **query)
        assert status == 400, (query, doc)
        assert headers["Content-Type"].startswith("application/problem+json")
        assert doc["errors"][0]["field"] == field
    assert (
        "at most 604800 s"
        in stack.get(
            "acme",
            "sub_a",
            deviceId="a-1",
            **{"from": window(0), "to": format_ms(T0 + 8 * 24 * HOUR)},
        )[1]["detail"]
    )
    status, doc, headers, _ = stack.get("acme", None, deviceId="a-1", **RANGE)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_the_reader_stops_early_on_the_real_partition(stack: Stack) -> None:
    reader = KafkaAggregateReader(stack.settings)
    try:
        key = device_group("a-1")
        query = AggregateQuery(key, T0, T0 + 10 * MIN)
        result = await reader.read(query)
        assert result.stopped_early  # the record two hours later ended it
        assert len(result.items) == 21
        # Without a later record of the group the scan ends at the high watermark.
        late = AggregateQuery(key, T0, T0 + 2 * HOUR + 2 * MIN)
        result = await reader.read(late)
        assert not result.stopped_early
        assert len(result.items) == 22
        # Before 1970: from the partition's start, not Kafka's "latest" (-1) or "earliest" (-2).
        for before in (-1, -2, -HOUR):
            result = await reader.read(AggregateQuery(key, before, T0 + 10 * MIN))
            assert len(result.items) == 21
        # Nothing at or after from: nothing is read.
        empty = await reader.read(AggregateQuery(key, T0 + 400 * HOUR, T0 + 401 * HOUR))
        assert (empty.items, empty.scanned) == ([], 0)
    finally:
        await reader.close()


async def test_concurrent_queries_share_the_pool_and_agree(stack: Stack) -> None:
    reader = KafkaAggregateReader(stack.settings)
    try:
        queries = [
            AggregateQuery(device_group("a-1"), T0, T0 + 10 * MIN),
            AggregateQuery(device_group("a-pub"), T0, T0 + 10 * MIN),
            AggregateQuery(device_group("b-1"), T0, T0 + 10 * MIN),
            AggregateQuery(area_group("acme", "north"), T0, T0 + 10 * MIN),
            AggregateQuery(area_group("beta", "north"), T0, T0 + 10 * MIN, window_size=60),
            AggregateQuery(device_group(stack.big[3]), BIG_BASE, BIG_BASE + HOUR),
        ]
        alone = [await reader.read(q) for q in queries]
        together = await asyncio.gather(*(reader.read(q) for q in queries * 3))
        for i, result in enumerate(together):
            assert result.items == alone[i % len(queries)].items
        assert len(reader._idle) <= reader.limits.concurrency
    finally:
        await reader.close()


def test_query_time_on_a_partition_of_100000_aggregates(stack: Stack) -> None:
    assert stack.big_records > 95_000
    base = BIG_BASE
    timings = {}
    for label, start, end, size in (
        ("1 h at the start", base, base + HOUR, None),
        ("1 h in the middle", base + 3 * HOUR, base + 4 * HOUR, None),
        ("1 h in the middle, 60 s windows", base + 3 * HOUR, base + 4 * HOUR, 60),
        ("all 6 h", base, base + BIG_HOURS * HOUR, None),
    ):
        query: dict[str, Any] = {"from": format_ms(start), "to": format_ms(end)}
        if size is not None:
            query["windowSize"] = size
        best = float("inf")
        for _ in range(3):
            status, doc, _, took = stack.get("acme", "sub_a", deviceId="big-0", **query)
            assert status == 200, doc
            best = min(best, took)
        hours = (end - start) // HOUR
        assert len(doc["items"]) == hours * (60 if size else 60 + 4 + 1)
        timings[label] = round(best, 3)
    print(f"\naggregates query over {stack.big_records} records in one partition:", timings)
    assert timings["1 h in the middle, 60 s windows"] < timings["all 6 h"]
    assert timings["all 6 h"] < 15.0


def test_times_far_back_and_far_ahead_are_400_and_the_edges_of_the_range_find_nothing(
    stack: Stack,
) -> None:
    # Times are taken from 1970-01-01T00:00:00Z up to 2100 (cityhub.schemas.timefmt).
    for frm, to in (
        ("0001-01-01T00:00:00Z", "0001-01-02T00:00:00Z"),
        ("9999-12-30T00:00:00Z", "9999-12-31T00:00:00Z"),
    ):
        status, doc, _, _ = stack.get("acme", "sub_a", deviceId="a-1", **{"from": frm, "to": to})
        assert status == 400, doc
        # Both are outside the calendar the API takes: every fault is listed at once.
        assert [e["field"] for e in doc["errors"]] == ["from", "to"], doc
    for frm, to in (
        ("1970-01-01T00:00:00Z", "1970-01-02T00:00:00Z"),
        ("2099-12-30T00:00:00Z", "2099-12-31T00:00:00Z"),
    ):
        status, doc, _, _ = stack.get("acme", "sub_a", deviceId="a-1", **{"from": frm, "to": to})
        assert (status, doc) == (200, {"items": [], "source": "kafka"}), frm
