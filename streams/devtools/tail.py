"""``cityhub tail``: print records of one of cityhub's topics as they arrive."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from cityhub.connectors.kafka_clients import kafka_consumer, login_refusal
from cityhub.schemas.errors import ConfigurationError
from cityhub.schemas.settings import Settings

SHORT_NAMES = ("observations", "aggregates", "deadletter", "raw")
"""Some of the hub's topics by their short names, for messages (every one has one)."""


def full_topic_name(prefix: str, topic: str) -> str:
    """``<prefix>.<topic>`` for a short name (no dot: ``aggregates``, ``device-health``), else
    ``topic`` as given (a full name; Kafka's own ``__consumer_offsets`` too)."""
    return topic if "." in topic or topic.startswith("_") else f"{prefix}.{topic}"


async def tail(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = False,
    limit: int | None = None,
    timeout: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print ``key<TAB>value`` lines of ``topic`` without joining a consumer group (so it moves
    nobody's offsets); stop after ``limit`` records or ``timeout`` seconds. Returns the count."""
    consumer = kafka_consumer(
        settings.kafka,
        enable_auto_commit=False,
        group_id=None,
    )
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        await consumer.stop()
        # aiokafka only says it could not bootstrap; a refused login or certificate says why.
        refusal = await login_refusal(settings.kafka)
        raise ConfigurationError(
            refusal or f"Kafka at {settings.kafka.bootstrap_servers} is not reachable: {exc}"
        ) from exc
    seen = 0
    try:
        # A consumer without subscriptions has no topic's metadata; aiokafka's public
        # topics() fetches it but keeps only the names, so ask its client for the whole map.
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise ConfigurationError(
                f"topic {topic!r} does not exist (yet): a hub's topic by its short name "
                f"({', '.join(SHORT_NAMES)}, ...) or any full topic name; is the hub running "
                "with this prefix (CITYHUB_KAFKA__TOPIC_PREFIX)?"
            )
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while limit is None or seen < limit:
            wait_ms = 1000
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    break
                wait_ms = int(min(1.0, left) * 1000)
            batches = await consumer.getmany(timeout_ms=wait_ms)
            # One fetch may hold records of several partitions: the limit is over all of them.
            records = [record for part in batches.values() for record in part]
            if limit is not None:
                records = records[: limit - seen]
            for record in records:
                key = record.key.decode(errors="replace") if record.key else ""
                value = record.value.decode(errors="replace") if record.value else ""
                out.write(f"{key}\t{value}\n")
            seen += len(records)
            out.flush()
    except TopicAuthorizationFailedError as exc:
        # A secured cluster's ACLs: say whose login may not read what, not a traceback.
        raise ConfigurationError(
            f"Kafka refuses {settings.kafka.sasl_username or 'this client'} reading {topic!r} "
            "(its ACLs); tail it as a user that may, such as the admin"
        ) from exc
    finally:
        await consumer.stop()
    return seen
