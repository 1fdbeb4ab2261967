"""The delivery manager on the real Kafka, with subscriptions from an in-memory store: it runs a
task for an active MQTT subscription only, stops it when paused, reports the paused
subscription's lag from its committed position, and starts again on resume."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from cityhub.connectors.sinks import validate_spec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.subscription import SubscriptionState, build_subscription
from cityhub.streams.delivery import metrics as m
from cityhub.streams.delivery.consumer_group import group_id
from cityhub.streams.delivery.manager import DeliveryManager
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore
from cityhub.streams.subscriptions.topics import SubscriptionTopics

from .hub import BOOTSTRAP
from .subscribers import wait_for

pytestmark = pytest.mark.integration


async def test_manager_follows_the_view_and_reports_paused_lag() -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    store = InMemorySubscriptionStore()
    mqtt, _ = build_subscription(
        validate_spec({"id": "m1", "name": "m1", "delivery": {"kind": "mqtt", "topic": "x"}}),
        tenant="acme",
        now="2026-11-29T00:00:00.000Z",
    )
    kafka, _ = build_subscription(
        validate_spec({"id": "k1", "name": "k1", "delivery": {"kind": "kafka"}}),
        tenant="acme",
        now="2026-11-29T00:00:00.000Z",
    )
    topics = SubscriptionTopics(settings)
    topic = f"{prefix}.sub.acme.m1"
    await topics.ensure(topic)
    await store.put(kafka)
    await store.put(mqtt.model_copy(update={"state": SubscriptionState.PAUSED}))

    # Ten records in the paused subscription's topic, three of them delivered (committed).
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()
    for n in range(10):
        await producer.send_and_wait(topic, b'{"n": %d}' % n, key=b"dev")
    await producer.stop()
    committer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP, group_id=group_id(settings, mqtt), enable_auto_commit=False
    )
    await committer.start()
    tp = TopicPartition(topic, 0)
    committer.assign([tp])
    await committer.commit({tp: OffsetAndMetadata(3, "")})
    await committer.stop()

    manager = DeliveryManager(settings, store)
    runner = asyncio.create_task(manager.run())
    try:
        assert await wait_for(lambda: manager.ready, 30)
        assert manager.tasks == {}  # paused, and a Kafka-topic delivery needs no task
        await manager.report_paused_lag()
        assert m.LAG_MESSAGES.labels("acme", "m1")._value.get() == 7
        assert m.LAG_SECONDS.labels("acme", "m1")._value.get() >= 0
        assert m.STATE.labels("acme", "m1", "paused")._value.get() == 1

        await store.put(mqtt)  # resumed
        assert await wait_for(lambda: ("acme", "m1") in manager.tasks, 10)
        assert m.STATE.labels("acme", "m1", "active")._value.get() == 1
        await store.delete("subscription/acme/m1")
        assert await wait_for(lambda: not manager.tasks, 10)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await topics.delete(topic)
        await topics.close()
