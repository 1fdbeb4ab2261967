"""The Kafka producer every cityhub connector writes with: durable before fast.

aiokafka defaults to ``acks=1``: a write confirmed by the leader alone can vanish with it. cityhub
acknowledges a message upstream only after Kafka confirmed it, so the producer waits for all
in-sync replicas and is idempotent (retries neither duplicate nor reorder a partition's records).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from cityhub.schemas.settings import KafkaSettings


def create_producer(settings: KafkaSettings, *, client_id: str) -> AIOKafkaProducer:
    """A durable, idempotent producer; start it with ``await producer.start()``."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.linger_ms,
        max_batch_size=settings.max_batch_bytes,
        max_request_size=settings.max_message_bytes,
        request_timeout_ms=30_000,
    )


@dataclass(slots=True)
class _OpenBatch:
    builder: Any
    delivered: asyncio.Future[Any]
    linger: asyncio.TimerHandle | None = None


class BatchingWriter:
    """Writes records through aiokafka's batch API, for the bridge's hot path.

    ``AIOKafkaProducer.send`` costs a partitioner call (murmur2 in Python), an accumulator lookup
    and a future per record: a quarter of the bridge's time. Here a record is appended to the one
    open batch of its partition, and a batch goes to the producer when it is full or ``linger``
    seconds after it was opened. All records of a batch share one delivery future. Partitions
    are chosen exactly as aiokafka's default partitioner does (murmur2 of the key over all the
    topic's partitions), cached per key, so records land where ``send`` would have put them.

    Batches of one partition go out strictly in order. Memory is bounded by the caller: the
    bridge never has more than ``max_inflight`` records unconfirmed.
    """

    _CACHE_LIMIT = 200_000

    def __init__(self, producer: AIOKafkaProducer | None, *, linger: float) -> None:
        """``producer`` may come later, through :meth:`attach`, before the first send."""
        self._producer: AIOKafkaProducer = producer
        self._linger = linger
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._partition_of: dict[tuple[str, bytes], int] = {}
        self._open: dict[tuple[str, int], _OpenBatch] = {}
        self._ready: dict[tuple[str, int], deque[_OpenBatch]] = {}
        self._draining: dict[tuple[str, int], asyncio.Task[None]] = {}

    def attach(self, producer: AIOKafkaProducer) -> None:
        """Write through ``producer`` from now on (made once an event loop runs)."""
        self._producer = producer

    @property
    def attached(self) -> bool:
        """Whether a producer is there to write through."""
        return self._producer is not None

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        timestamp_ms: int | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        """Add a keyed record; the future resolves when Kafka confirmed its whole batch.
        ``timestamp_ms`` is the record's timestamp (ms since the epoch); None: the time of the
        append (aiokafka's default, CreateTime). ``partition``: that one instead of the key's."""
        if key is None:
            raise ValueError("BatchingWriter writes keyed records only")
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
        for tp in list(self._open):
            self._close(tp)
        if pending:
            await asyncio.wait(pending)

    async def _partition(self, topic: str, key: bytes) -> int:
        partitions = await self.partitions(topic)
        partition: int = self._partitioner(key, partitions, partitions)
        if len(self._partition_of) >= self._CACHE_LIMIT:
            self._partition_of.clear()
        self._partition_of[topic, key] = partition
        return partition

    def _start(self, tp: tuple[str, int]) -> _OpenBatch:
        batch = _OpenBatch(
            self._producer.create_batch(), asyncio.get_running_loop().create_future()
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
                batch = queue.popleft()
                try:
                    delivery = await self._producer.send_batch(
                        batch.builder, tp[0], partition=tp[1]
                    )
                except Exception as exc:  # the producer refused the batch: fail its records
                    if not batch.delivered.done():
                        batch.delivered.set_exception(exc)
                    continue
                delivery.add_done_callback(partial(_settle, batch.delivered))
        finally:
            del self._draining[tp]


def _settle(target: asyncio.Future[Any], delivery: asyncio.Future[Any]) -> None:
    if target.done():
        return
    if delivery.cancelled():
        target.cancel()
    elif (exc := delivery.exception()) is not None:
        target.set_exception(exc)
    else:
        target.set_result(delivery.result())
