"""Follows the ``processing_log`` topic into a ``ProcessingLogIndex`` in an API process.

Every partition, from the beginning at start (what Kafka still holds: the topic's retention,
seven years by default), then live; without a consumer group, so that every API process holds
the same index and moves nobody's offsets. ``start`` returns once the index holds what the
topic held when it looked (``ready``); until then the log's routes answer 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import Counter, Gauge

from cityhub.connectors.kafka_clients import kafka_consumer
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.privacy.log_index import ProcessingLogIndex
from cityhub.streams.service_errors import Unavailable
from cityhub.streams.topic_admin import ensure_topics

log = logging.getLogger("cityhub.privacy.log_follower")

HELD = Gauge("cityhub_processing_log_index_records", "Processing-log records held in the index.")
DROPPED = Counter(
    "cityhub_processing_log_index_dropped_total",
    "Processing-log records dropped from the index (oldest first) to stay within its bound.",
)
MALFORMED = Counter(
    "cityhub_processing_log_index_malformed_total",
    "Records on the processing-log topic that are not valid records (skipped).",
)


class ProcessingLogFollower:
    """Keeps ``index`` (default: a new one bounded by the settings) up to date with the topic."""

    def __init__(
        self,
        settings: Settings,
        index: ProcessingLogIndex | None = None,
        *,
        client_id: str = "cityhub-processing-log",
    ) -> None:
        self._settings = settings
        self._topic = Topics.for_prefix(settings.kafka.topic_prefix).processing_log
        self._index = index or ProcessingLogIndex(settings.privacy.processing_log_index_max_records)
        self._client_id = client_id
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def index(self) -> ProcessingLogIndex:
        return self._index

    @property
    def ready(self) -> bool:
        return self._index.ready

    async def start(self, *, timeout: float = 60.0) -> None:
        """Create the topic if missing, read it from the beginning, and return once the index
        holds every record the topic held when ``start`` looked; Unavailable past
        ``timeout`` seconds."""
        await ensure_topics(self._settings, timeout=timeout, only={self._topic})
        consumer = kafka_consumer(
            self._settings.kafka,
            client_id=self._client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=200,
        )
        self._consumer = consumer
        try:
            await consumer.start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            tps = await self._partitions(deadline)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            self._task = asyncio.create_task(self._follow(), name="cityhub-processing-log")
            while not await self._caught_up(ends):
                if self._task.done():
                    self._task.result()
                if loop.time() > deadline:
                    raise Unavailable(
                        f"the processing-log index did not catch up with {self._topic} within "
                        f"{timeout:.0f} s"
                    )
                await asyncio.sleep(0.02)
        except BaseException:
            await self.stop()
            raise
        self._index.mark_ready()
        log.info(
            "processing-log index loaded from %s: %d records held, %d dropped, %d malformed",
            self._topic,
            self._index.count(),
            self._index.dropped,
            self._index.malformed,
        )

    async def _partitions(self, deadline: float) -> list[TopicPartition]:
        """The topic's partitions, once the cluster's metadata shows them (a topic just created
        may take a moment to appear there)."""
        loop = asyncio.get_running_loop()
        while True:
            # A consumer without an assignment has no topic's metadata; ask its client for the
            # map (as cityhub tail and the aggregates' reader do).
            cluster = await self._consumer._client.fetch_all_metadata()
            partitions = cluster.partitions_for_topic(self._topic)
            if partitions:
                return [TopicPartition(self._topic, p) for p in sorted(partitions)]
            if loop.time() > deadline:
                raise Unavailable(f"the topic {self._topic} has no partitions")
            await asyncio.sleep(0.2)

    async def _caught_up(self, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            if await self._consumer.position(tp) < end:
                return False
        return True

    async def stop(self) -> None:
        """Stop following and close the consumer."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _follow(self) -> None:
        consumer = self._consumer
        index = self._index
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
            except asyncio.CancelledError:
                raise
            except Exception:
                # aiokafka reconnects by itself; a fetch error must not end the index's updates.
                log.exception("reading %s failed; retrying", self._topic)
                await asyncio.sleep(1.0)
                continue
            if not batches:
                continue
            dropped, malformed = index.dropped, index.malformed
            for tp, messages in batches.items():
                for msg in messages:
                    index.apply(msg.key, msg.value, partition=tp.partition, offset=msg.offset)
            DROPPED.inc(index.dropped - dropped)
            MALFORMED.inc(index.malformed - malformed)
            HELD.set(index.count())
            # A big backlog comes from the buffer without suspending: let the API serve.
            await asyncio.sleep(0)
