"""Subscription topics on the real Kafka: a name that collides with another tenant's topic
(Kafka takes '.' and '_' for the same character in topic names) is recognised as taken, not
reported as a broken Kafka."""

from __future__ import annotations

import uuid

import pytest

from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.subscription import subscription_topic
from cityhub.streams.subscriptions.topics import SubscriptionTopics, TopicNameTaken

from .hub import BOOTSTRAP

pytestmark = pytest.mark.integration


async def test_a_colliding_topic_name_is_taken() -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    topics = SubscriptionTopics(
        Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    )
    try:
        await topics.ensure(subscription_topic(prefix, "a.b", "s1"))
        await topics.ensure(subscription_topic(prefix, "a.b", "s1"))  # idempotent
        with pytest.raises(TopicNameTaken):
            await topics.ensure(subscription_topic(prefix, "a_b", "s1"))
        await topics.ensure(subscription_topic(prefix, "a_b", "s2"))  # other ids are free
    finally:
        for name in list(topics.known):
            await topics.delete(name)
        await topics.close()
