"""The API process's reader of the dead-letter topic, started lazily, that feeds the console's
``DeadLetterView``.

Nothing reads the dead letters until the console first asks (``ensure_started``): then one
consumer without a group is assigned every partition of ``<prefix>.deadletter``, starts
``scan_back`` records before each partition's end (or at its beginning: what the topic's
retention still holds), and follows the topic from there for as long as the process runs. The
view keeps the last letters of each tenant (``view.py``); ``ready`` turns true once the reader
reached the ends it saw when it started. A fetch error is logged and retried; the console shows
the letters read so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from cityhub.connectors.kafka_clients import kafka_consumer
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.deadletters.view import (
    DEFAULT_PER_TENANT,
    DEFAULT_PREVIEW_BYTES,
    DeadLetterView,
)
from cityhub.streams.registry.view import RegistryView

log = logging.getLogger("cityhub.deadletters")

DEFAULT_SCAN_BACK = 5000
"""Records read back from each partition's end when the reader starts."""


class DeadLetterReader:
    """Feeds a ``DeadLetterView`` from the dead-letter topic once it is first asked for."""

    def __init__(
        self,
        settings: Settings,
        registry: RegistryView,
        *,
        scan_back: int = DEFAULT_SCAN_BACK,
        per_tenant: int = DEFAULT_PER_TENANT,
        preview_bytes: int = DEFAULT_PREVIEW_BYTES,
    ) -> None:
        self._settings = settings
        self._topic = Topics.for_prefix(settings.kafka.topic_prefix).deadletter
        self._scan_back = scan_back
        self.view = DeadLetterView(
            registry,
            per_tenant=per_tenant,
            preview_bytes=preview_bytes,
            topic_prefix=settings.kafka.topic_prefix,
        )
        self._task: asyncio.Task[None] | None = None
        self.ready = False
        self.failed: str | None = None
        """Why the reader could not start, for the page; None otherwise."""

    @property
    def started(self) -> bool:
        return self._task is not None

    def ensure_started(self) -> None:
        """Start reading (once); returns at once."""
        if self._task is None or (self._task.done() and self.failed is not None):
            self.failed = None
            self._task = asyncio.create_task(self._run(), name="dead-letter reader")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self) -> None:
        consumer = kafka_consumer(
            self._settings.kafka,
            group_id=None,
            enable_auto_commit=False,
            client_id="cityhub-console-deadletters",
            max_partition_fetch_bytes=self._settings.kafka.max_message_bytes + 64 * 1024,
        )
        try:
            await consumer.start()
            try:
                ends = await self._assign(consumer)
                await self._follow(consumer, ends)
            finally:
                await consumer.stop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failed = f"{type(exc).__name__}: {exc}"
            log.warning("cannot read the dead letters for the console: %s", self.failed)

    async def _assign(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(self._topic) or set()
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if not tps:
            return {}
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(begins[tp], ends[tp] - self._scan_back))
        return {tp: end for tp, end in ends.items() if end > begins[tp]}

    async def _follow(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        view = self.view
        pending = dict(ends)
        self.ready = not pending
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading %s failed; retrying", self._topic)
                await asyncio.sleep(1.0)
                continue
            for tp, messages in batches.items():
                for msg in messages:
                    view.add(msg.value, partition=tp.partition, offset=msg.offset)
                if tp in pending and messages and messages[-1].offset + 1 >= pending[tp]:
                    del pending[tp]
            if pending and not batches:
                for tp in list(pending):
                    if await consumer.position(tp) >= pending[tp]:
                        del pending[tp]
            if not pending:
                self.ready = True
            await asyncio.sleep(0)


__all__ = ["DEFAULT_SCAN_BACK", "DeadLetterReader"]
