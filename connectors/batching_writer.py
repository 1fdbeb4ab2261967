"""Writing records in batches, without a record that can stall a partition.

A record that Kafka refuses for what it is (too large, a timestamp outside the
broker's bounds) must not be retried for ever: that is how one message stops a partition.
``BatchingWriter`` sizes every record before it is written and sends the ones that cannot fit
to the dead-letter topic instead (reason ``oversize``). Should Kafka still refuse a record
(a topic created elsewhere with a smaller limit), the writer finds the record by sending the
batch's records one by one and dead-letters it (``kafka_refused``). An aiokafka idempotent
producer whose batch was refused is unusable for that partition from then on (its sequence
numbers ran ahead of the broker's: every later batch fails with ``OutOfOrderSequenceNumber``),
so the writer replaces its producer first. Only failures of Kafka itself (timeouts, lost
leaders, lost connections) reach the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidProducerEpoch,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    RecordListTooLargeError,
    UnknownProducerId,
)
from aiokafka.partitioner import DefaultPartitioner

from cityhub.connectors.dead_letter_route import DeadLetterRoute, RecordTooLarge
from cityhub.connectors.kafka import producer_factory
from cityhub.connectors.record_size import Headers, record_size
from cityhub.schemas.errors import Reason
from cityhub.schemas.settings import KafkaSettings

log = logging.getLogger("cityhub.kafka")

REFUSALS: tuple[type[Exception], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidTimestampError,
    CorruptRecordException,
)
"""Kafka's answers that refuse records for what they are: sending them again cannot help."""
SEQUENCE_BROKEN: tuple[type[Exception], ...] = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
)
"""What an idempotent producer's later batches get once its sequence for a partition broke (a
refused batch before them): the records are fine, the producer is not."""


@dataclass(slots=True)
class _OpenBatch:
    builder: Any
    delivered: asyncio.Future[Any]
    linger: asyncio.TimerHandle | None = None
    records: list[tuple[bytes, bytes | None, int | None, Headers | None]] | None = None
    """The records again, kept only when the writer can recover from a refusal (it resends
    them one by one to find the refused one)."""


class BatchingWriter:
    """Writes records through aiokafka's batch API, for the hot paths.

    ``AIOKafkaProducer.send`` costs a partitioner call (murmur2 in Python), an accumulator lookup
    and a future per record: a quarter of the bridge's time. Here a record is appended to the one
    open batch of its partition, and a batch goes to the producer when it is full or ``linger``
    seconds after it was opened. All records of a batch share one delivery future. Partitions
    are chosen exactly as aiokafka's default partitioner does (murmur2 of the key over all the
    topic's partitions), cached per key, so records land where ``send`` would have put them.

    Batches of one partition go out strictly in order, except around a refused record: the
    records of its batch are written again one by one after the producer is replaced, possibly
    after records of later batches. Memory is bounded by the caller: the bridge never has more
    than ``max_inflight`` records unconfirmed.

    With ``max_record_bytes`` a record that cannot fit (``record_size``) never reaches Kafka: it
    goes to ``dead_letters`` (reason ``oversize``) when a route is given, else ``send`` raises
    ``RecordTooLarge``. With ``renew`` (a factory of started producers, see
    ``producer_factory``) a record Kafka refuses is dead-lettered (``kafka_refused``) and the
    producer replaced; without it the refusal fails the batch's future like any other error.
    """

    _CACHE_LIMIT = 200_000

    def __init__(
        self,
        producer: AIOKafkaProducer | None,
        *,
        linger: float,
        max_record_bytes: int | None = None,
        dead_letters: DeadLetterRoute | None = None,
        renew: Callable[[], Awaitable[AIOKafkaProducer]] | None = None,
    ) -> None:
        """``producer`` may come later, through :meth:`attach`, before the first send."""
        self._producer: AIOKafkaProducer = producer
        self._linger = linger
        self._max_record = max_record_bytes
        self._dead_letters = dead_letters
        self._renew = renew
        self._generation = 0
        """Bumped whenever the producer is replaced."""
        self._renewing = asyncio.Lock()
        self._handed: dict[int, int] = {}
        """Per producer generation, the batches and records handed to it and not yet settled."""
        self._replaced: dict[int, AIOKafkaProducer] = {}
        """Producers replaced while records were still handed to them: each is stopped once
        they settled (stopping it earlier would strand a batch waiting inside it)."""
        self._background: set[asyncio.Task[Any]] = set()
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._partition_of: dict[tuple[str, bytes], int] = {}
        self._open: dict[tuple[str, int], _OpenBatch] = {}
        self._ready: dict[tuple[str, int], deque[_OpenBatch]] = {}
        self._draining: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._redo: dict[tuple[str, int], deque[tuple[_OpenBatch, int, BaseException]]] = {}
        self._recovering: dict[tuple[str, int], asyncio.Task[None]] = {}

    @classmethod
    def for_kafka(
        cls,
        settings: KafkaSettings,
        *,
        client_id: str,
        dead_letters: DeadLetterRoute | None,
    ) -> BatchingWriter:
        """A writer as cityhub's stages use it: batches lingering ``linger_ms``, records sized
        against ``max_message_bytes``, its own producers (made by :meth:`start`, replaced after
        a refusal). Start it in the event loop that will use it."""
        return cls(
            None,
            linger=settings.linger_ms / 1000,
            max_record_bytes=settings.max_message_bytes,
            dead_letters=dead_letters,
            renew=producer_factory(settings, client_id=client_id),
        )

    async def start(self) -> None:
        """Make and start a producer with the ``renew`` factory."""
        assert self._renew is not None, "a writer made without a factory gets its producer"
        self._producer = await self._renew()

    async def stop(self, *, timeout: float = 10.0) -> None:
        """Send what is open (waiting at most ``timeout`` seconds), stop the producer."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), timeout)
        if self._producer is not None:
            await self._producer.stop()
        await self.close()

    def attach(
        self,
        producer: AIOKafkaProducer,
        *,
        renew: Callable[[], Awaitable[AIOKafkaProducer]] | None = None,
    ) -> None:
        """Write through ``producer`` from now on (made once an event loop runs); ``renew`` as
        in the constructor."""
        self._producer = producer
        if renew is not None:
            self._renew = renew

    @property
    def attached(self) -> bool:
        """Whether a producer is there to write through."""
        return self._producer is not None

    @property
    def producer(self) -> AIOKafkaProducer:
        """The producer written through now (it changes when a refusal made it unusable)."""
        return self._producer

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        timestamp_ms: int | None = None,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> asyncio.Future[Any]:
        """Add a keyed record; the future resolves when Kafka confirmed its whole batch (or the
        record's dead letter, when it could not be written). ``timestamp_ms`` is the record's
        timestamp (ms since the epoch); None: the time of the append (aiokafka's default,
        CreateTime). ``partition``: that one instead of the key's."""
        if key is None:
            raise ValueError("BatchingWriter writes keyed records only")
        if self._max_record is not None:
            size = record_size(key, value, headers)
            if size > self._max_record:
                return await self._too_large(topic, value, key, size, headers)
        if partition is None:
            partition = self._partition_of.get((topic, key))
            if partition is None:
                partition = await self._partition(topic, key)
        tp = (topic, partition)
        batch = self._open.get(tp) or self._start(tp)
        extra = {"headers": headers} if headers else {}
        if batch.builder.append(key=key, value=value, timestamp=timestamp_ms, **extra) is None:
            self._close(tp)
            batch = self._start(tp)
            batch.builder.append(key=key, value=value, timestamp=timestamp_ms, **extra)
        if batch.records is not None:
            batch.records.append((key, value, timestamp_ms, headers))
        return batch.delivered

    async def partitions(self, topic: str) -> list[int]:
        """The topic's partitions, as the producer's metadata has them."""
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = sorted(await self._producer.partitions_for(topic))
            self._partitions[topic] = partitions
        return partitions

    async def flush(self) -> None:
        """Send every open batch and wait until Kafka confirmed all of them."""
        pending = [b.delivered for b in self._open.values()]
        pending += [b.delivered for queue in self._ready.values() for b in queue]
        pending += [b.delivered for queue in self._redo.values() for b, _, _ in queue]
        for tp in list(self._open):
            self._close(tp)
        if pending:
            await asyncio.wait(pending)

    async def close(self) -> None:
        """Stop the producers replaced after refusals and wait for the writer's background work
        (the current producer is stopped by :meth:`stop`, or is the caller's)."""
        for generation in list(self._replaced):
            self._stop_replaced(generation)
        while self._background:
            await asyncio.wait(set(self._background))
            self._background = {task for task in self._background if not task.done()}

    # --- records that cannot be written -------------------------------------------------------

    async def _too_large(
        self, topic: str, value: bytes | None, key: bytes, size: int, headers: Headers | None
    ) -> asyncio.Future[Any]:
        assert self._max_record is not None
        if self._dead_letters is None:
            raise RecordTooLarge(topic, size, self._max_record)
        detail = (
            f"a record for {topic} would take {size} bytes, more than Kafka's record limit of "
            f"{self._max_record} bytes (kafka.max_message_bytes)"
        )
        letter, letter_key, traced = self._dead_letters.traced_letter(
            Reason.OVERSIZE, detail, topic, key, value, headers, self._max_record
        )
        return await self.send(self._dead_letters.topic, letter, letter_key, headers=traced)

    # --- batching -----------------------------------------------------------------------------

    async def _partition(self, topic: str, key: bytes) -> int:
        partitions = await self.partitions(topic)
        partition: int = self._partitioner(key, partitions, partitions)
        if len(self._partition_of) >= self._CACHE_LIMIT:
            self._partition_of.clear()
        self._partition_of[topic, key] = partition
        return partition

    def _start(self, tp: tuple[str, int]) -> _OpenBatch:
        batch = _OpenBatch(
            self._producer.create_batch(),
            asyncio.get_running_loop().create_future(),
            records=[] if self._renew is not None else None,
        )
        batch.linger = asyncio.get_running_loop().call_later(self._linger, self._expire, tp, batch)
        self._open[tp] = batch
        return batch

    def _expire(self, tp: tuple[str, int], batch: _OpenBatch) -> None:
        if self._open.get(tp) is batch:
            self._close(tp)

    def _close(self, tp: tuple[str, int]) -> None:
        batch = self._open.pop(tp)
        if batch.linger is not None:
            batch.linger.cancel()
        self._ready.setdefault(tp, deque()).append(batch)
        if tp not in self._draining:
            self._draining[tp] = asyncio.ensure_future(self._drain(tp))

    async def _drain(self, tp: tuple[str, int]) -> None:
        queue = self._ready[tp]
        try:
            while queue:
                recovering = self._recovering.get(tp)
                if recovering is not None:
                    # The partition's records wait until a refused batch is sorted out.
                    await asyncio.wait({recovering})
                    continue
                batch = queue.popleft()
                try:
                    delivery, generation = await self._hand(
                        partial(_send_batch, builder=batch.builder, topic=tp[0], partition=tp[1])
                    )
                except Exception as exc:  # the producer refused the batch: fail its records
                    if not batch.delivered.done():
                        batch.delivered.set_exception(exc)
                    continue
                delivery.add_done_callback(partial(self._settle, tp, batch, generation))
        finally:
            del self._draining[tp]

    def _settle(
        self,
        tp: tuple[str, int],
        batch: _OpenBatch,
        generation: int,
        delivery: asyncio.Future[Any],
    ) -> None:
        target = batch.delivered
        if target.done():
            return
        if delivery.cancelled():
            target.cancel()
            return
        exc = delivery.exception()
        if exc is None:
            target.set_result(delivery.result())
            return
        if batch.records is not None and isinstance(exc, REFUSALS + SEQUENCE_BROKEN):
            self._redo.setdefault(tp, deque()).append((batch, generation, exc))
            if tp not in self._recovering:
                self._recovering[tp] = asyncio.ensure_future(self._recover(tp))
            return
        if self._renew is not None:
            # A failed batch leaves an idempotent producer's sequence for the partition ahead
            # of the broker's: the caller's retry needs a new producer.
            self._in_background(self._renew_producer(generation))
        target.set_exception(exc)

    # --- recovering from a refusal ------------------------------------------------------------

    async def _recover(self, tp: tuple[str, int]) -> None:
        """Write the records of the partition's failed batches again, in order, through a new
        producer: one by one for a batch Kafka refused (dead-lettering the refused records), as
        a batch again for one that failed only because an earlier one was refused."""
        queue = self._redo[tp]
        try:
            while queue:
                batch, generation, exc = queue.popleft()
                try:
                    await self._renew_producer(generation)
                    if isinstance(exc, REFUSALS):
                        log.warning("Kafka refused a batch for %s[%d] (%r)", tp[0], tp[1], exc)
                        await self._resend_one_by_one(tp, batch)
                    else:
                        await self._resend(tp, batch)
                except Exception as failure:  # Kafka itself failed: the caller's business
                    if not batch.delivered.done():
                        batch.delivered.set_exception(failure)
                else:
                    if not batch.delivered.done():
                        batch.delivered.set_result(None)
        except asyncio.CancelledError:  # the callers must not wait for ever
            batch.delivered.cancel()
            for waiting, _, _ in queue:
                waiting.delivered.cancel()
            queue.clear()
            raise
        finally:
            del self._recovering[tp]
            if not queue:
                del self._redo[tp]

    async def _resend(self, tp: tuple[str, int], batch: _OpenBatch) -> None:
        assert batch.records is not None
        generation = self._generation
        sent = [await self._send_alone(tp, record) for record in batch.records]
        try:
            await asyncio.gather(*sent)
        except REFUSALS:
            await self._renew_producer(generation)
            await self._resend_one_by_one(tp, batch)

    async def _resend_one_by_one(self, tp: tuple[str, int], batch: _OpenBatch) -> None:
        assert batch.records is not None
        for record in batch.records:
            generation = self._generation
            try:
                await (await self._send_alone(tp, record))
            except REFUSALS as exc:
                await self._renew_producer(generation)
                await self._dead_letter_refused(tp[0], record[0], record[1], exc, record[3])

    async def _send_alone(
        self, tp: tuple[str, int], record: tuple[bytes, bytes | None, int | None, Headers | None]
    ) -> asyncio.Future[Any]:
        key, value, timestamp_ms, headers = record
        future, _ = await self._hand(
            lambda producer: producer.send(
                tp[0], value, key, partition=tp[1], timestamp_ms=timestamp_ms, headers=headers
            )
        )
        return future

    async def _dead_letter_refused(
        self,
        topic: str,
        key: bytes,
        value: bytes | None,
        exc: BaseException,
        headers: Headers | None,
    ) -> None:
        if self._dead_letters is None:
            raise exc
        detail = f"Kafka refused a record for {topic} ({len(value or b'')} bytes): {exc!r}"
        letter, letter_key, traced = self._dead_letters.traced_letter(
            Reason.KAFKA_REFUSED, detail, topic, key, value, headers, self._max_record
        )
        topic = self._dead_letters.topic
        future, _ = await self._hand(lambda p: p.send(topic, letter, letter_key, headers=traced))
        await future

    async def _renew_producer(self, failed_generation: int) -> None:
        """Replace the producer, unless it was replaced since ``failed_generation``."""
        assert self._renew is not None
        async with self._renewing:
            if failed_generation != self._generation:
                return
            old, old_generation = self._producer, self._generation
            self._producer = await self._renew()
            self._generation += 1
            log.info("replaced the Kafka producer after a refused or failed batch")
        # Its other batches still complete (or fail and come back here); then it stops.
        self._replaced[old_generation] = old
        if not self._handed.get(old_generation):
            self._stop_replaced(old_generation)

    async def _hand(
        self, call: Callable[[AIOKafkaProducer], Awaitable[asyncio.Future[Any]]]
    ) -> tuple[asyncio.Future[Any], int]:
        """``call(producer)`` (a send) on the current producer, counted as handed to it until
        its future is done; the future and the producer's generation."""
        generation = self._generation
        self._handed[generation] = self._handed.get(generation, 0) + 1
        try:
            future = await call(self._producer)
        except BaseException:
            self._settled(generation)
            raise
        future.add_done_callback(lambda _: self._settled(generation))
        return future, generation

    def _settled(self, generation: int) -> None:
        left = self._handed[generation] - 1
        if left:
            self._handed[generation] = left
            return
        del self._handed[generation]
        if generation in self._replaced:
            self._stop_replaced(generation)

    def _stop_replaced(self, generation: int) -> None:
        self._in_background(self._replaced.pop(generation).stop())

    def _in_background(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Replacing or stopping a producer failed (Kafka is away): the next write through
            # the writer meets the same and reports it to its caller.
            log.warning("Kafka producer upkeep failed: %r", exc)


def _send_batch(
    producer: AIOKafkaProducer, *, builder: Any, topic: str, partition: int
) -> Awaitable[asyncio.Future[Any]]:
    sent: Awaitable[asyncio.Future[Any]] = producer.send_batch(builder, topic, partition=partition)
    return sent
