"""Creating and deleting subscriptions' own topics (``<prefix>.sub.<tenant>.<id>``).

One partition each: a subscription's items stay in the order they were routed, and its
delivery task has one position to keep. Retention is ``SUBSCRIPTION_RETENTION_MS`` (7 days):
how long a paused or failing subscriber can be away and still catch up, and how far back a
replay can go.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from cityhub.connectors.kafka_clients import kafka_admin
from cityhub.schemas.errors import CityhubError, StackError
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.streams.topic_admin import durability_config

log = logging.getLogger("cityhub.subscriptions.topics")

SUBSCRIPTION_PARTITIONS = 1
SUBSCRIPTION_RETENTION_MS = 7 * 24 * 3600 * 1000


def subscription_topic_config(kafka: KafkaSettings) -> dict[str, str]:
    """The config of a subscription's topic: 7 days, records as large as cityhub's, and
    ``min.insync.replicas`` when it is replicated (``durability_config``)."""
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(SUBSCRIPTION_RETENTION_MS),
        "max.message.bytes": str(kafka.max_message_bytes + 64 * 1024),
        **durability_config(kafka),
    }


class TopicNameTaken(CityhubError):
    """Kafka refuses the topic because an existing one differs from it only by ``.`` versus
    ``_`` (tenants ``a.b`` and ``a_b`` with one subscription id): the name is not available."""


class SubscriptionTopics:
    """An admin client that creates (idempotently) and deletes subscription topics."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admin: AIOKafkaAdminClient | None = None
        self._lock = asyncio.Lock()
        self.known: set[str] = set()
        """Topics this instance created or found existing."""

    async def _client(self) -> AIOKafkaAdminClient:
        async with self._lock:
            if self._admin is None:
                admin = kafka_admin(
                    self._settings.kafka,
                    client_id="cityhub-subscription-topics",
                )
                await admin.start()
                self._admin = admin
            return self._admin

    async def ensure(self, topic: str) -> bool:
        """Create ``topic`` unless it exists; whether this call created it. Raises
        TopicNameTaken when another topic's name collides with it, StackError when Kafka
        refuses otherwise."""
        if topic in self.known:
            return False
        admin = await self._client()
        kafka = self._settings.kafka
        response = await admin.create_topics(
            [
                NewTopic(
                    name=topic,
                    num_partitions=SUBSCRIPTION_PARTITIONS,
                    replication_factor=kafka.replication_factor,
                    topic_configs=subscription_topic_config(kafka),
                )
            ]
        )
        created = False
        for name, code, *rest in response.topic_errors:
            created = created or code == 0
            if code not in (0, TopicAlreadyExistsError.errno):
                message = rest[0] if rest else ""
                if code == InvalidTopicError.errno and "collides" in str(message):
                    log.warning("topic %r not created: %s", name, message)
                    raise TopicNameTaken(f"the topic name {name!r} is not available")
                raise StackError(f"Kafka refused to create topic {name!r}: error {code} {message}")
        self.known.add(topic)
        return created

    async def delete(self, topic: str) -> None:
        """Delete ``topic``; a topic that is already gone is fine."""
        admin = await self._client()
        response = await admin.delete_topics([topic])
        for name, code, *_ in response.topic_error_codes:
            if code not in (0, UnknownTopicOrPartitionError.errno):
                log.warning("Kafka did not delete topic %r: error %d", name, code)
        self.known.discard(topic)
        log.info("deleted topic %s of a deleted subscription", topic)

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
