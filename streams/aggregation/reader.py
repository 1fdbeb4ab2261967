"""Reads aggregates straight from the aggregates topic: no database, one partition per query
(``aggregate_source`` puts the history store beside it for long ranges).

A query (see ``query.py``) finds its group's partition with Kafka's default partitioner, takes
the partition's high watermark, looks up the first offset whose timestamp (the window end) is at
or after ``from``, and reads forward with a consumer of its own (manual ``assign``, no consumer
group, so nobody's offsets move) until the watermark rule says nothing more can match or the
high watermark of the query's start is reached. It yields to the event loop after every batch.

Consumers are pooled: at most ``query_concurrency`` queries read at once, each with a consumer
no other query touches while it reads; a consumer goes back to the pool after a query that ended
normally (or was refused for its size) and is closed after one that failed or timed out, since
its fetch state is then unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from cityhub.connectors.kafka_clients import kafka_consumer
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.aggregation.query import (
    AggregateQuery,
    AggregateSource,
    AggregatesUnavailable,
    QueryLimits,
    QueryRejected,
    Scan,
    ScanResult,
    partition_for_key,
)

log = logging.getLogger("cityhub.aggregates")

BATCH_RECORDS = 500
"""Records taken from the consumer's buffer at a time; the loop yields after each batch."""
POLL_MS = 200
METADATA_TTL_SECONDS = 60.0
"""How long the topic's partition count is trusted before it is asked again."""
FETCH_BYTES_PER_PARTITION = 4 * 1024 * 1024
"""One partition is read at a time: large fetches make the scan fast (aiokafka's 1 MiB default
made it fetch-bound)."""


class KafkaAggregateReader:
    """``read(query)`` over ``<prefix>.aggregates`` on the settings' Kafka. Nothing connects
    until the first query; ``close()`` stops the pooled consumers."""

    def __init__(self, settings: Settings, *, limits: QueryLimits | None = None) -> None:
        self._kafka = settings.kafka
        self._max_message_bytes = settings.kafka.max_message_bytes
        self.topic = Topics.for_prefix(settings.kafka.topic_prefix).aggregates
        self._limits = limits or QueryLimits.from_settings(settings.aggregation)
        self._slots = asyncio.Semaphore(self._limits.concurrency)
        self._idle: list[Any] = []
        self._partitions: int | None = None
        self._partitions_at = 0.0
        self._closed = False

    @property
    def limits(self) -> QueryLimits:
        return self._limits

    async def read(self, query: AggregateQuery) -> ScanResult:
        """The current revisions of the windows ``query`` asks for. QueryRejected past a limit;
        AggregatesUnavailable when Kafka fails, the topic is missing, or the read takes longer
        than ``query_timeout_seconds`` (waiting for a free consumer included)."""
        if self._closed:
            raise AggregatesUnavailable("the aggregates reader is closed")
        timeout = self._limits.timeout_seconds
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout), self._slots:
                consumer = await self._consumer()
                reusable = False
                try:
                    result = await self._scan(consumer, query)
                    reusable = True
                    return result
                except QueryRejected:
                    reusable = True
                    raise
                finally:
                    if reusable and not self._closed:
                        # Paused, an idle consumer fetches nothing in the background.
                        consumer.pause(*consumer.assignment())
                        self._idle.append(consumer)
                    else:
                        await _stop(consumer)
        except TimeoutError as exc:
            raise AggregatesUnavailable(
                f"reading the aggregates of {query.group} took longer than {timeout:g} s"
            ) from exc
        except KafkaError as exc:
            raise AggregatesUnavailable(f"Kafka failed the read: {type(exc).__name__}") from exc
        finally:
            log.debug("aggregates of %s read in %.3f s", query.group, time.perf_counter() - started)

    async def close(self) -> None:
        """Stop every pooled consumer; later reads fail with AggregatesUnavailable."""
        self._closed = True
        idle, self._idle = self._idle, []
        for consumer in idle:
            await _stop(consumer)

    # -- internals -----------------------------------------------------------------------------

    async def _consumer(self) -> Any:
        if self._idle:
            return self._idle.pop()
        consumer = kafka_consumer(
            self._kafka,
            client_id="cityhub-aggregates-reader",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=max(FETCH_BYTES_PER_PARTITION, self._max_message_bytes),
            fetch_max_bytes=max(FETCH_BYTES_PER_PARTITION, self._max_message_bytes) * 2,
            fetch_max_wait_ms=POLL_MS,
        )
        try:
            await consumer.start()
        except BaseException:
            await _stop(consumer)
            raise
        return consumer

    async def _partition_count(self, consumer: Any) -> int:
        now = time.monotonic()
        if self._partitions is None or now - self._partitions_at > METADATA_TTL_SECONDS:
            # A consumer without an assignment has no topic's metadata; aiokafka's public
            # topics() keeps only the names (as in cityhub tail), so ask its client for the map.
            cluster = await consumer._client.fetch_all_metadata()
            partitions = cluster.partitions_for_topic(self.topic)
            if not partitions:
                raise AggregatesUnavailable(
                    f"topic {self.topic!r} does not exist; is the hub running with this prefix?"
                )
            self._partitions, self._partitions_at = len(partitions), now
        return self._partitions

    async def _scan(self, consumer: Any, query: AggregateQuery) -> ScanResult:
        partition = partition_for_key(query.key, await self._partition_count(consumer))
        tp = TopicPartition(self.topic, partition)
        consumer.assign([tp])
        end_offset = (await consumer.end_offsets([tp]))[tp]
        # Negative timestamps mean "latest" (-1) and "earliest" (-2) to Kafka: none before 1970.
        found = (await consumer.offsets_for_times({tp: max(query.from_ms, 0)}))[tp]
        scan = Scan(query, self._limits)
        if found is None or found.offset >= end_offset:
            scan.finish()
            return scan.result(partition)
        consumer.seek(tp, found.offset)
        while True:
            batch = await consumer.getmany(tp, timeout_ms=POLL_MS, max_records=BATCH_RECORDS)
            records = batch.get(tp, [])
            if scan.feed(records, end_offset=end_offset):
                break
            if records:
                if records[-1].offset + 1 >= end_offset:
                    break
            elif await consumer.position(tp) >= end_offset:
                break  # only offsets without records (transaction markers) were left
            # A batch from the buffer returns without suspending: let the loop serve others.
            await asyncio.sleep(0)
        scan.finish()
        return scan.result(partition)


def aggregate_source(settings: Settings) -> AggregateSource:
    """The API's aggregates source: Kafka alone, or with ``history.enabled`` the history store
    for every range but short recent ones (``cityhub.streams.history.aggregates_source``).
    Nothing connects until the first query."""
    kafka = KafkaAggregateReader(settings)
    if not settings.history.enabled:
        return kafka
    # Imported here: a process without history never loads the PostgreSQL driver.
    from cityhub.streams.history.aggregates_source import (
        HistoryAggregateReader,
        RoutedAggregates,
    )

    return RoutedAggregates(
        kafka,
        HistoryAggregateReader(settings),
        kafka_window_hours=settings.history.kafka_window_hours,
    )


async def _stop(consumer: Any) -> None:
    with contextlib.suppress(Exception):
        await consumer.stop()
