"""A compacted Kafka topic materialised into an in-memory view, with read-your-writes.

``CompactedTopicStore`` produces records (keyed by a key function, JSON values, tombstones to
delete) to a one-partition compacted topic and tails it from the beginning, without a consumer
group, into a view: every instance holds the whole topic, and a restart rebuilds it. ``put`` and
``delete`` return once the local view has applied the write, so the caller's next read sees it.

``InMemoryCompactedStore`` has the same interface over a view and a counter, for tests that need
no Kafka. The registry (``streams/registry/store.py``) and the subscriptions
(``streams/subscriptions/store.py``) are both built on these two.

A view is anything with ``apply(key, value, offset)`` that never raises on a bad record, an
``offset`` (the last applied, -1 before the first) and a ``malformed`` count.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import BaseModel

from cityhub.connectors.kafka import create_producer
from cityhub.schemas.settings import Settings
from cityhub.streams.service_errors import Unavailable
from cityhub.streams.topic_admin import ensure_topics

log = logging.getLogger("cityhub.compacted")

DEFAULT_WRITE_TIMEOUT = 30.0


class View(Protocol):
    """What a store feeds: a materialised view of a compacted topic."""

    @property
    def offset(self) -> int: ...

    @property
    def malformed(self) -> int: ...

    def apply(self, key: str, value: bytes | None, offset: int) -> None: ...


V = TypeVar("V", bound=View)
R = TypeVar("R", bound=BaseModel)


class _OffsetWaiters:
    """Futures waiting for the view to reach an offset, resolved in offset order."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def wait_for(self, offset: int) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (offset, next(self._seq), fut))
        return fut

    def reached(self, offset: int) -> None:
        while self._heap and self._heap[0][0] <= offset:
            _, _, fut = heapq.heappop(self._heap)
            if not fut.done():
                fut.set_result(None)

    def fail_all(self, exc: BaseException) -> None:
        while self._heap:
            _, _, fut = heapq.heappop(self._heap)
            if not fut.done():
                fut.set_exception(exc)


class CompactedTopicStore(Generic[V, R]):
    """A compacted topic on Kafka: a producer for writes, a group-less consumer tailing it.

    ``what`` names the store in logs and errors (``registry``, ``subscriptions``);
    ``on_applied(view, applied, malformed)`` runs after each batch the tail applied (gauges).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str,
        view: V,
        key_of: Callable[[R], str],
        what: str,
        client_id: str,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
        on_applied: Callable[[V, int, int], None] | None = None,
        describe: Callable[[V], str] | None = None,
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._tp = TopicPartition(self._topic, 0)
        self._client_id = client_id
        self._write_timeout = write_timeout
        self._view = view
        self._key_of = key_of
        self._what = what
        self._on_applied = on_applied
        self._describe = describe
        self._waiters = _OffsetWaiters()
        # Made in start(): aiokafka clients need a running loop, and the store is built before.
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = False
        self._started = False

    @property
    def topic(self) -> str:
        """The topic's name."""
        return self._topic

    @property
    def view(self) -> V:
        return self._view

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self, *, timeout: float = 60.0) -> None:
        """Create the topic if missing, start the producer and the tailing consumer, and return
        once the view has applied every record the topic held when ``start`` looked.
        Unavailable if that takes longer than ``timeout`` seconds."""
        await ensure_topics(self._settings, timeout=timeout, only={self._topic})
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka.bootstrap_servers,
            client_id=f"{self._client_id}-view",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self._consumer = consumer
        self._producer = create_producer(
            self._settings.kafka, client_id=f"{self._client_id}-producer"
        )
        await self._producer.start()
        self._started = True
        try:
            await consumer.start()
            consumer.assign([self._tp])
            await consumer.seek_to_beginning(self._tp)
            end = (await consumer.end_offsets([self._tp]))[self._tp]
            self._task = asyncio.create_task(self._tail(), name=f"cityhub-{self._what}-tail")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while await consumer.position(self._tp) < end:
                if self._task.done():
                    self._task.result()
                if loop.time() > deadline:
                    raise Unavailable(
                        f"the {self._what} view did not catch up with {self._topic} (end offset "
                        f"{end}) within {timeout:.0f} s"
                    )
                await asyncio.sleep(0.01)
        except BaseException:
            await self.stop()
            raise
        self._ready = True
        loaded = self._describe(self._view) if self._describe is not None else ""
        log.info("%s view loaded from %s%s", self._what, self._topic, loaded and f": {loaded}")

    async def stop(self) -> None:
        """Stop tailing and close the clients; pending writes fail with Unavailable."""
        self._ready = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._waiters.fail_all(Unavailable(f"the {self._what} store stopped"))
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
            self._started = False

    async def _tail(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        view = self._view
        while True:
            try:
                batches = await consumer.getmany(self._tp, timeout_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception:
                # aiokafka reconnects by itself; a fetch error must not end the view's updates.
                log.exception("reading %s failed; retrying", self._topic)
                await asyncio.sleep(1.0)
                continue
            applied = malformed = 0
            for messages in batches.values():
                for msg in messages:
                    before = view.malformed
                    key = msg.key.decode("utf-8", "replace") if msg.key is not None else ""
                    view.apply(key, msg.value, msg.offset)
                    applied += 1
                    malformed += view.malformed - before
            if applied:
                if self._on_applied is not None:
                    self._on_applied(view, applied, malformed)
                self._waiters.reached(view.offset)

    async def _wait_applied(self, offset: int) -> None:
        if self._view.offset >= offset:
            return
        if self._task is None:
            raise Unavailable(f"the {self._what} store is not started")
        try:
            await asyncio.wait_for(self._waiters.wait_for(offset), self._write_timeout)
        except TimeoutError:
            raise Unavailable(
                f"the write at offset {offset} of {self._topic} was not read back within "
                f"{self._write_timeout:.0f} s"
            ) from None

    async def _send(self, key: str, value: bytes | None) -> asyncio.Future[object]:
        if self._producer is None or not self._started:
            raise Unavailable(f"the {self._what} store is not started")
        fut: asyncio.Future[object] = await self._producer.send(
            self._topic, value=value, key=key.encode(), partition=0
        )
        return fut

    async def put(self, record: R) -> int:
        """Write ``record``; return its offset once the local view has applied it."""
        return await self.put_many([record])

    async def put_many(self, records: Sequence[R]) -> int:
        """Write ``records`` in order (batched by the producer); return the last offset, once
        the view has applied it (-1 when ``records`` is empty)."""
        if not records:
            return -1
        futures = [await self._send(self._key_of(r), r.model_dump_json().encode()) for r in records]
        try:
            results = await asyncio.wait_for(asyncio.gather(*futures), self._write_timeout)
        except TimeoutError:
            raise Unavailable(
                f"Kafka did not confirm the write to {self._topic} within "
                f"{self._write_timeout:.0f} s"
            ) from None
        offset = max(int(getattr(md, "offset", -1)) for md in results)
        await self._wait_applied(offset)
        return offset

    async def delete(self, key: str) -> int:
        """Write a tombstone for ``key``; return its offset once the view has applied it."""
        fut = await self._send(key, None)
        try:
            md = await asyncio.wait_for(fut, self._write_timeout)
        except TimeoutError:
            raise Unavailable(
                f"Kafka did not confirm the delete in {self._topic} within "
                f"{self._write_timeout:.0f} s"
            ) from None
        offset = int(getattr(md, "offset", -1))
        await self._wait_applied(offset)
        return offset


class InMemoryCompactedStore(Generic[V, R]):
    """The same interface without Kafka: writes apply to the view at once, offsets count up.

    Records go through their JSON, as on the topic, so a test sees what an instance reading
    Kafka would see.
    """

    def __init__(self, view: V, key_of: Callable[[R], str]) -> None:
        self._view = view
        self._key_of = key_of
        self._next_offset = 0
        self._ready = True  # nothing to catch up with
        self.log: list[tuple[str, bytes | None]] = []
        """Every (key, value) written, in order: what the topic would hold before compaction."""

    @property
    def view(self) -> V:
        return self._view

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        self._ready = True

    async def stop(self) -> None:
        self._ready = False

    def append(self, key: str, value: bytes | None) -> int:
        """Apply a raw record (for tests of malformed records); return its offset."""
        offset = self._next_offset
        self._next_offset += 1
        self.log.append((key, value))
        self._view.apply(key, value, offset)
        return offset

    async def put(self, record: R) -> int:
        return self.append(self._key_of(record), record.model_dump_json().encode())

    async def put_many(self, records: Sequence[R]) -> int:
        offset = -1
        for record in records:
            offset = self.append(self._key_of(record), record.model_dump_json().encode())
        return offset

    async def delete(self, key: str) -> int:
        return self.append(key, None)


__all__ = ["CompactedTopicStore", "InMemoryCompactedStore", "View"]
