"""The Kafka side of the console's live observations: ``observations_reader(settings)``, the
``ReadBatches`` that ``cityhub.streams.console.live.LiveObservations`` runs while someone
watches (every partition of ``<prefix>.observations``, from its end, no consumer group)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import TopicPartition

from cityhub.connectors.kafka_clients import kafka_consumer
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.console.live import Batch, ReadBatches

MAX_RECORDS = 2000


def observations_reader(settings: Settings) -> ReadBatches:
    kafka = settings.kafka
    topic = Topics.for_prefix(kafka.topic_prefix).observations

    async def read(deliver: Callable[[Batch], None], positioned: asyncio.Event) -> None:
        consumer = kafka_consumer(
            kafka, group_id=None, enable_auto_commit=False, client_id="cityhub-console-live"
        )
        await consumer.start()
        try:
            partitions: set[int] | None = None
            while not partitions:  # the topic may not exist yet on a new hub
                # A consumer without an assignment has no topic's metadata; ask its client for
                # the map (as cityhub tail and the aggregates' reader do).
                cluster = await consumer._client.fetch_all_metadata()
                partitions = cluster.partitions_for_topic(topic)
                if not partitions:
                    await asyncio.sleep(1.0)
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:  # resolve the end offsets now, so nothing after this is missed
                await consumer.position(tp)
            positioned.set()
            while True:
                fetched = await consumer.getmany(timeout_ms=500, max_records=MAX_RECORDS)
                for records in fetched.values():
                    deliver([(record.key, record.value) for record in records])
        finally:
            await consumer.stop()

    return read
