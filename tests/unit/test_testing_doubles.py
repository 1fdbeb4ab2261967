"""The test doubles shipped in ``cityhub.streams.testing``, used as its docstring shows: stores
sharing a topic, the aggregates topic, the clock, the recording writer, the topic admin and the
memory delivery kind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cityhub.connectors.sinks.errors import DeliveryFailed, FailureKind
from cityhub.schemas.aggregate import Aggregate, aggregate_id
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import SubscriptionSpec, build_subscription
from cityhub.streams.aggregation.query import AggregateQuery, QueryLimits, device_group, format_ms
from cityhub.streams.api.rate_limit import RateLimiter
from cityhub.streams.subscriptions.router import SubscriptionRouter
from cityhub.streams.subscriptions.routing import Routing
from cityhub.streams.testing import (
    FakeClock,
    InMemoryAggregates,
    InMemorySubscriptionStore,
    InMemoryTopic,
    InMemoryTopicAdmin,
    MemoryKind,
    RecordingWriter,
    registered,
)
from tests.contracts.sink import items, record_of

TS = "2026-01-01T00:00:00.000Z"


def subscription(sub_id: str) -> Any:
    spec = SubscriptionSpec.model_validate(
        {"id": sub_id, "name": sub_id, "delivery": {"kind": "kafka"}}
    )
    return build_subscription(spec, tenant="acme", now=TS)[0]


async def test_stores_sharing_a_topic_see_each_others_writes() -> None:
    topic = InMemoryTopic()
    api_side = InMemorySubscriptionStore(topic=topic)
    worker_side = InMemorySubscriptionStore(topic=topic)
    record = subscription("s1")
    await api_side.put(record)
    seen = worker_side.view.get(record.tenant, record.id)
    assert seen is not None
    assert seen.model_dump(mode="json") == record.model_dump(mode="json")
    late = InMemorySubscriptionStore(topic=topic)  # a restart: the view is rebuilt
    assert late.view.count() == 1


async def test_the_aggregates_topic_answers_a_query() -> None:
    aggregates = InMemoryAggregates(QueryLimits.from_settings(Settings().aggregation))
    start_ms = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    aggregates.add(
        Aggregate(
            aggregate_id=aggregate_id("device", "acme", "dev-1", "temperature", "Cel", 60, 0),
            grouping="device",
            key="dev-1",
            tenant="acme",
            classification="internal",
            device_id="dev-1",
            area=None,
            quantity="temperature",
            unit="Cel",
            window_size=60,
            window_start=format_ms(start_ms),
            window_end=format_ms(start_ms + 60_000),
            count=2,
            min=1.0,
            max=3.0,
            sum=4.0,
            mean=2.0,
            last=3.0,
            last_observed_at=format_ms(start_ms + 1000),
            last_event_id="e-1",
            revision=0,
        )
    )
    query = AggregateQuery(device_group("dev-1"), start_ms, start_ms + 3_600_000)
    result = await aggregates.read(query)
    assert [item["count"] for item in result.items] == [2]


def test_the_clock_moves_only_when_told() -> None:
    clock = FakeClock(1_700_000_000.0)
    limiter = RateLimiter(rate=1.0, burst=1)
    assert limiter.take("key-1", now=clock()) == 0.0
    assert limiter.take("key-1", now=clock()) > 0  # no time passed: the bucket is empty
    clock.advance(61)
    assert limiter.take("key-1", now=clock()) == 0.0
    stepping = FakeClock(10.0, step=1.0)
    assert [stepping(), stepping()] == [10.0, 11.0]
    with pytest.raises(ValueError):
        clock.advance(-1)


async def test_the_writer_records_and_confirms() -> None:
    writer = RecordingWriter()
    done = await writer.send("cityhub.observations", b'{"n": 1}', key=b"dev-1")
    await writer.send("cityhub.deadletter", b"{}", key=b"dev-2")
    assert done.done()
    assert writer.values("cityhub.observations") == [b'{"n": 1}']
    assert writer.json("cityhub.observations") == [{"n": 1}]
    assert writer.topics() == {"cityhub.observations", "cityhub.deadletter"}


async def test_a_holding_writer_confirms_or_fails_when_told() -> None:
    held = RecordingWriter(confirm=False)
    first = await held.send("t", b"1", key=b"k")
    flushed = asyncio.create_task(held.flush())
    await asyncio.sleep(0)
    assert not first.done()
    assert not flushed.done()  # flush waits for Kafka's confirmation
    held.confirm_all()
    await flushed
    second = await held.send("t", b"2", key=b"k")
    held.fail_all(ConnectionError("Kafka is away"))
    with pytest.raises(ConnectionError):
        await second


async def test_the_topic_admin_serves_the_routing_loop() -> None:
    store = InMemorySubscriptionStore()
    await store.put(subscription("s1"))
    topics = InMemoryTopicAdmin(failures=1)  # the first ensure() fails
    routing = Routing(store, SubscriptionRouter("t"), topics)
    await routing.sync()
    assert topics.known == set()  # not routed until its topic exists
    await routing.sync()
    assert topics.known == {"t.sub.acme.s1"}


async def test_the_memory_delivery_kind_is_shipped_here() -> None:
    kind = MemoryKind()
    with registered(kind):
        box = kind.mailbox("orders")
        box.fail_next(kind=FailureKind.TIMEOUT)
        sink = kind.build(record_of({"kind": "memory", "mailbox": "orders"}), Settings())
        with pytest.raises(DeliveryFailed):
            await sink.send(items(2), "msg_1")
        await sink.send(items(2), "msg_1")
        assert len(await box.wait_for(2)) == 2
        await sink.stop()
