"""The pure parts of delivery: the router's choice of subscription topics, the bounded queue
(pause and drop-oldest), webhook bodies and their ids, Server-Sent Events, and the replay
generation kept in commit metadata."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import orjson
import pytest

from cityhub.schemas.observation import NetworkMeta, Observation
from cityhub.schemas.subscription import Source, Subscription, SubscriptionSpec, build_subscription
from cityhub.streams.delivery.batch import message_id, parse_event_id, sse_event, webhook_body
from cityhub.streams.delivery.consumer_group import applied_generation
from cityhub.streams.delivery.queue import DeliveryQueue, Item
from cityhub.streams.subscriptions.router import SubscriptionRouter


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
        network=NetworkMeta(name="mqtt"),
        area="centre",
        classification="internal",
        tenant="acme",
    )
    return replace(base, **overrides)


def sub(tenant: str, sub_id: str, **spec: Any) -> Subscription:
    doc = {"id": sub_id, "name": sub_id, "delivery": {"kind": "kafka"}, **spec}
    record, _ = build_subscription(
        SubscriptionSpec.model_validate(doc), tenant=tenant, now="2026-11-29T00:00:00.000Z"
    )
    return record


def item(offset: int, value: bytes = b"{}") -> Item:
    return Item(0, offset, 1_000 * offset, b"dev-1", value)


# --- router ------------------------------------------------------------------------------------


def test_router_routes_by_filter_source_and_tenant_rule() -> None:
    router = SubscriptionRouter("px")
    subs = [
        sub("acme", "all"),
        sub("acme", "pm", filter={"quantities": ["pm2_5"]}),
        sub("acme", "noise", filter={"quantities": ["noise_level"]}),
        sub("acme", "aggs", source="aggregates"),
        sub("beta", "theirs"),  # another tenant: only public data
    ]
    assert router.refresh(subs)
    assert sorted(router.route(obs())) == ["px.sub.acme.all", "px.sub.acme.pm"]
    assert sorted(router.route(obs(classification="public"))) == [
        "px.sub.acme.all",
        "px.sub.acme.pm",
        "px.sub.beta.theirs",
    ]
    assert router.route(obs(tenant=None)) == []  # an unregistered device: nobody's
    aggregate = {"tenant": "acme", "quantity": "pm2_5", "classification": "internal"}
    assert router.route(aggregate, Source.AGGREGATES) == ["px.sub.acme.aggs"]


def test_router_waits_for_topics_and_keeps_unchanged_filters() -> None:
    router = SubscriptionRouter("px")
    a, b = sub("acme", "a"), sub("acme", "b")
    assert router.refresh([a, b], ready_topics={"px.sub.acme.a"})
    assert router.route(obs()) == ["px.sub.acme.a"]
    generation = router.generation
    assert not router.refresh([a, b], ready_topics={"px.sub.acme.a"})
    assert router.generation == generation
    paused = a.model_copy(update={"state": "paused"})
    assert not router.refresh([paused, b], ready_topics={"px.sub.acme.a"})  # still routed
    assert router.refresh([b], ready_topics={"px.sub.acme.a", "px.sub.acme.b"})
    assert router.topics == {"px.sub.acme.b"}


# --- queue -------------------------------------------------------------------------------------


async def test_queue_pauses_when_full() -> None:
    q = DeliveryQueue(2)
    q.put(item(0))
    q.put(item(1))
    assert q.space() == 0
    with pytest.raises(ValueError, match="full"):
        q.put(item(2))
    assert not await q.wait_for_space(0.01)
    waiter = asyncio.create_task(q.wait_for_space(5.0))
    batch = await q.take(1)
    assert [i.offset for i in batch] == [0]
    assert await asyncio.wait_for(waiter, 1.0)


async def test_queue_drops_oldest_when_asked() -> None:
    q = DeliveryQueue(3, drop_oldest=True)
    dropped = [q.put(item(n)) for n in range(5)]
    assert [d.offset if d else None for d in dropped] == [None, None, None, 0, 1]
    assert [i.offset for i in await q.take(10)] == [2, 3, 4]


async def test_take_lingers_for_a_fuller_batch_but_not_longer() -> None:
    q = DeliveryQueue(10)
    q.put(item(0))

    async def later() -> None:
        await asyncio.sleep(0.02)
        q.put(item(1))

    feeder = asyncio.create_task(later())
    batch = await q.take(5, linger=0.2)
    await feeder
    assert [i.offset for i in batch] == [0, 1]  # waited for the second, not for five
    q.put(item(2))
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert [i.offset for i in await q.take(5, linger=0.05)] == [2]
    assert loop.time() - started < 1.0


async def test_take_waits_for_the_first_item_and_clear_empties() -> None:
    q = DeliveryQueue(10)
    taker = asyncio.create_task(q.take(5))
    await asyncio.sleep(0.01)
    assert not taker.done()
    q.put(item(7))
    assert [i.offset for i in await asyncio.wait_for(taker, 1.0)] == [7]
    q.put(item(8))
    assert q.clear() == 1
    assert len(q) == 0
    assert q.oldest() is None


def test_queue_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        DeliveryQueue(0)


# --- bodies, ids, events -----------------------------------------------------------------------


def test_webhook_body_splices_items_unchanged() -> None:
    items = [item(0, b'{"event_id":"a","value":1.5}'), item(1, b'{"event_id":"b"}')]
    body = orjson.loads(webhook_body("observations", "acme", "hook", items))
    assert body == {
        "type": "cityhub.observations",
        "tenant": "acme",
        "subscription": "hook",
        "items": [{"event_id": "a", "value": 1.5}, {"event_id": "b"}],
    }


def test_message_id_is_stable_per_batch_and_differs_between_batches() -> None:
    a = [item(0), item(1)]
    assert message_id("acme", "hook", a) == message_id("acme", "hook", list(a))
    assert message_id("acme", "hook", a) != message_id("acme", "hook", [item(0), item(2)])
    assert message_id("acme", "hook", a) != message_id("acme", "other", a)
    assert message_id("acme", "hook", a).startswith("msg_")


def test_sse_event_and_its_id_round_trip() -> None:
    event = sse_event("aggregates", Item(0, 42, 0, None, b'{"a":\n1}'))
    assert event == b'id: 0:42\nevent: cityhub.aggregates\ndata: {"a": 1}\n\n'
    assert parse_event_id("0:42") == (0, 42)
    for bad in ("", "42", "a:1", "0:-1", "0:1:2", "1" * 12 + ":1"):
        assert parse_event_id(bad) is None


def test_replay_generation_from_commit_metadata() -> None:
    assert applied_generation("replay=3") == 3
    assert applied_generation("") == 0
    assert applied_generation(None) == 0
    assert applied_generation("replay=x") == 0
    assert applied_generation("something else") == 0


def test_router_looks_up_the_device_type_of_aggregates() -> None:
    types = {("acme", "dev-1"): "air_quality"}
    router = SubscriptionRouter("px", lambda tenant, device: types.get((tenant, device)))
    router.refresh(
        [sub("acme", "air", source="aggregates", filter={"device_types": ["air_quality"]})]
    )
    aggregate = {"tenant": "acme", "device_id": "dev-1", "quantity": "pm2_5"}
    assert router.route(aggregate, Source.AGGREGATES) == ["px.sub.acme.air"]
    assert router.route({**aggregate, "device_id": "dev-2"}, Source.AGGREGATES) == []


def test_fetch_limit_is_the_room_unless_full_drops() -> None:
    pausing, dropping = DeliveryQueue(3), DeliveryQueue(3, drop_oldest=True)
    for q in (pausing, dropping):
        q.put(item(0))
        q.put(item(1))
    assert pausing.fetch_limit(500) == 1
    assert dropping.fetch_limit(500) == 500
    pausing.put(item(2))
    assert pausing.fetch_limit(500) == 0
