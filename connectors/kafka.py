"""The Kafka producer every cityhub connector writes with: durable before fast.

aiokafka defaults to ``acks=1``: a write confirmed by the leader alone can vanish with it. cityhub
acknowledges a message upstream only after Kafka confirmed it, so the producer waits for all
in-sync replicas and is idempotent (retries neither duplicate nor reorder a partition's records).
The hot paths write through :class:`cityhub.connectors.batching_writer.BatchingWriter`, which
also keeps poison records away from Kafka.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer

from cityhub.connectors.kafka_clients import kafka_producer
from cityhub.schemas.settings import KafkaSettings


def create_producer(settings: KafkaSettings, *, client_id: str) -> AIOKafkaProducer:
    """A durable, idempotent producer; start it with ``await producer.start()``."""
    return kafka_producer(
        settings,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.linger_ms,
        max_batch_size=settings.max_batch_bytes,
        max_request_size=settings.max_message_bytes,
        request_timeout_ms=30_000,
    )


def producer_factory(
    settings: KafkaSettings, *, client_id: str
) -> Callable[[], Awaitable[AIOKafkaProducer]]:
    """Makes and starts a new producer each call: what ``BatchingWriter`` needs to replace one
    that a refused record left unusable."""

    async def start() -> AIOKafkaProducer:
        producer = create_producer(settings, client_id=client_id)
        await producer.start()
        return producer

    return start
