"""The worker's routing loop over an in-memory subscriptions store and a fake topic admin:
topics first, then routing; a topic that could not be created is retried; a deleted
subscription's topic is deleted only after the grace period."""

from __future__ import annotations

import asyncio
from typing import Any

from cityhub.schemas.errors import StackError
from cityhub.schemas.subscription import SubscriptionSpec, build_subscription
from cityhub.streams.subscriptions.router import SubscriptionRouter
from cityhub.streams.subscriptions.routing import Routing
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore


class FakeTopics:
    def __init__(self, failures: int = 0) -> None:
        self.known: set[str] = set()
        self.deleted: list[str] = []
        self.failures = failures

    async def ensure(self, topic: str) -> None:
        if self.failures:
            self.failures -= 1
            raise StackError("Kafka said no")
        self.known.add(topic)

    async def delete(self, topic: str) -> None:
        self.deleted.append(topic)
        self.known.discard(topic)

    async def close(self) -> None:
        return None


def record(sub_id: str) -> Any:
    spec = SubscriptionSpec.model_validate(
        {"id": sub_id, "name": sub_id, "delivery": {"kind": "kafka"}}
    )
    return build_subscription(spec, tenant="acme", now="2026-11-29T00:00:00.000Z")[0]


async def test_topics_first_then_routing_and_retry_of_a_failed_creation() -> None:
    store = InMemorySubscriptionStore()
    await store.put(record("a"))
    topics = FakeTopics(failures=1)
    routing = Routing(store, SubscriptionRouter("px"), topics)
    runner = asyncio.create_task(routing.run())
    try:
        for _ in range(50):
            if routing.router.topics:
                break
            await asyncio.sleep(0.1)
        # The first creation failed; the loop tried again without any change to the view.
        assert routing.ready
        assert routing.router.topics == {"px.sub.acme.a"}
        assert topics.known == {"px.sub.acme.a"}
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_a_deleted_subscriptions_topic_goes_after_the_grace() -> None:
    store = InMemorySubscriptionStore()
    await store.put(record("a"))
    topics = FakeTopics()
    routing = Routing(store, SubscriptionRouter("px"), topics, delete_grace=0.3)
    await routing.sync()
    assert routing.router.topics == {"px.sub.acme.a"}
    await store.delete("subscription/acme/a")
    await routing.sync()
    assert routing.router.topics == set()
    assert topics.deleted == []  # not yet: a lagging worker might still route to it
    await asyncio.sleep(0.35)
    await routing.sync()
    assert topics.deleted == ["px.sub.acme.a"]


async def test_a_subscription_back_within_the_grace_keeps_its_topic() -> None:
    store = InMemorySubscriptionStore()
    await store.put(record("a"))
    topics = FakeTopics()
    routing = Routing(store, SubscriptionRouter("px"), topics, delete_grace=0.2)
    await routing.sync()
    await store.delete("subscription/acme/a")
    await routing.sync()
    await store.put(record("a"))
    await asyncio.sleep(0.25)
    await routing.sync()
    assert topics.deleted == []
    assert routing.router.topics == {"px.sub.acme.a"}
