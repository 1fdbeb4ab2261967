"""A compacted Kafka topic materialised into an in-memory view, with read-your-writes.

``CompactedTopicStore`` produces records (keyed by a key function, JSON values, tombstones to
delete) to a one-partition compacted topic and tails it from the beginning, without a consumer
group, into a view: every instance holds the whole topic, and a restart rebuilds it. ``put`` and
``delete`` return once the local view has applied the write, so the caller's next read sees it.

``InMemoryCompactedStore`` has the same interface over a view and an ``InMemoryTopic``, for tests
that need no Kafka: several stores may share one topic (as several instances share the Kafka
topic), and a store started again catches up with what it missed. The registry
(``streams/registry/store.py``) and the subscriptions (``streams/subscriptions/store.py``) are
both built on these two; one contract suite runs against both (``tests/stores/``).

Both offer ``wait_beyond(offset, timeout)``: the delivery manager and the worker's routing wake
up when the view changes instead of polling it.

A view is anything with ``apply(key, value, offset)`` that never raises on a bad record, an
``offset`` (the last applied, -1 before the first) and a ``malformed`` count; most are built on
``compacted_view.CompactedView``, and most topics declare their two stores once, in a
``compacted_stores.TopicSpec``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import BaseModel

from cityhub.connectors.kafka import create_producer
from cityhub.connectors.kafka_clients import kafka_consumer
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


class _Changes:
    """Wakes whoever waits for the view to move past an offset (``wait_beyond``)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """The view applied records: wake every waiter (each one checks its offset again)."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait_beyond(self, view: View, offset: int, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while view.offset <= offset:
            left = deadline - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), left)
        return True


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
        self._changes = _Changes()
        # Made in start(): aiokafka clients need a running loop, and the store is built before.
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = False
        self._started = False
        self.caught_up_at = 0.0
        """Wall-clock time the view last held everything its topic held (0: never): a reader
        that must not decide on an old view (the privacy gate) looks at it."""

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
        consumer = kafka_consumer(
            self._settings.kafka,
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
        self.caught_up_at = time.time()
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
            # The high watermark of the fetch that just returned: the view has everything the
            # topic had then once its position reached it (an empty fetch says so too).
            high = consumer.highwater(self._tp)
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
                self._changes.notify()
            if high is not None and view.offset + 1 >= high:
                self.caught_up_at = time.time()

    async def wait_beyond(self, offset: int, timeout: float) -> bool:
        """Wait until the view applied a record past ``offset`` (``view.offset > offset``), at
        most ``timeout`` seconds; whether it did."""
        return await self._changes.wait_beyond(self._view, offset, timeout)

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


class InMemoryTopic:
    """A compacted topic's records in memory, before compaction: what several in-memory stores
    share, as several instances share the Kafka topic."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None]] = []
        """Every (key, value) written, in offset order."""
        self._readers: list[InMemoryCompactedStore[Any, Any]] = []

    def append(self, key: str, value: bytes | None) -> int:
        """Append a record; every started store on the topic applies it before this returns."""
        offset = len(self.records)
        self.records.append((key, value))
        for reader in list(self._readers):
            reader._catch_up()
        return offset

    def _attach(self, reader: InMemoryCompactedStore[Any, Any]) -> None:
        if reader not in self._readers:
            self._readers.append(reader)

    def _detach(self, reader: InMemoryCompactedStore[Any, Any]) -> None:
        if reader in self._readers:
            self._readers.remove(reader)


class InMemoryCompactedStore(Generic[V, R]):
    """The same interface without Kafka: a write applies to the view before it returns.

    Records go through their JSON, as on the topic, so a test sees what an instance reading
    Kafka would see. The store is started when made (its view holds what ``topic`` already
    had); after ``stop`` writes fail with ``Unavailable`` and the view stands still until
    ``start`` catches it up with what others wrote meanwhile.
    """

    def __init__(
        self, view: V, key_of: Callable[[R], str], *, topic: InMemoryTopic | None = None
    ) -> None:
        self._view = view
        self._key_of = key_of
        self.topic = topic if topic is not None else InMemoryTopic()
        self._next_offset = 0
        """The next record of the topic the view has not applied."""
        self._changes = _Changes()
        self._ready = False
        self._open()

    @property
    def view(self) -> V:
        return self._view

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def log(self) -> list[tuple[str, bytes | None]]:
        """Every (key, value) written to the topic, in order: what it holds before compaction."""
        return self.topic.records

    @property
    def caught_up_at(self) -> float:
        """Always now: an in-memory view applies every append at once."""
        return time.time() if self._ready else 0.0

    def _open(self) -> None:
        self.topic._attach(self)
        self._catch_up()
        self._ready = True

    def _catch_up(self) -> None:
        records = self.topic.records
        if self._next_offset >= len(records):
            return
        while self._next_offset < len(records):
            key, value = records[self._next_offset]
            self._view.apply(key, value, self._next_offset)
            self._next_offset += 1
        self._changes.notify()

    async def start(self) -> None:
        """Catch up with what the topic received while stopped; writes work again."""
        if not self._ready:
            self._open()

    async def stop(self) -> None:
        """Writes fail with ``Unavailable`` until ``start``."""
        self._ready = False
        self.topic._detach(self)

    async def wait_beyond(self, offset: int, timeout: float) -> bool:
        """Wait until the view applied a record past ``offset``, at most ``timeout`` seconds."""
        return await self._changes.wait_beyond(self._view, offset, timeout)

    def append(self, key: str, value: bytes | None) -> int:
        """Write a raw record (for tests of malformed records); return its offset."""
        if not self._ready:
            raise Unavailable("the in-memory store is stopped")
        return self.topic.append(key, value)

    async def put(self, record: R) -> int:
        return self.append(self._key_of(record), record.model_dump_json().encode())

    async def put_many(self, records: Sequence[R]) -> int:
        offset = -1
        for record in records:
            offset = self.append(self._key_of(record), record.model_dump_json().encode())
        return offset

    async def delete(self, key: str) -> int:
        return self.append(key, None)


__all__ = ["CompactedTopicStore", "InMemoryCompactedStore", "InMemoryTopic", "View"]
