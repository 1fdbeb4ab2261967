"""BatchingWriter with a stand-in producer: batches by partition, sends on size and on linger,
in order, and settles every record's future with its batch's outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from cityhub.connectors.batching_writer import BatchingWriter


class SmallBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes, bytes]] = []
        self.timestamps: list[int | None] = []
        self.headers: list[list[tuple[str, bytes]]] = []

    def append(
        self, *, key: bytes, value: bytes, timestamp: Any, headers: Any = ()
    ) -> object | None:
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value))
        self.timestamps.append(timestamp)
        self.headers.append(list(headers))
        return object()


class StandInProducer:
    def __init__(self, partitions: int = 4, capacity: int = 3) -> None:
        self.partitions = partitions
        self.capacity = capacity
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes]]]] = []
        self.batches: list[SmallBatch] = []
        self.deliveries: list[asyncio.Future[Any]] = []
        self.refuse = False

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> SmallBatch:
        return SmallBatch(self.capacity)

    async def send_batch(self, batch: SmallBatch, topic: str, *, partition: int) -> Any:
        if self.refuse:
            raise RuntimeError("producer closed")
        self.sent.append((topic, partition, batch.records))
        self.batches.append(batch)
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
        return delivery


pytestmark = pytest.mark.timeout(10)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_partition_is_aiokafkas_default_for_the_key() -> None:
    producer = StandInProducer(partitions=8)
    writer = BatchingWriter(producer, linger=10)  # type: ignore[arg-type]
    keys = [f"70b3d57ed00000{i:02x}".encode() for i in range(50)]
    for key in keys:
        await writer.send("t", b"v", key)
    await asyncio.gather(writer.flush(), _confirm_all(producer))
    got = {k: p for _, p, records in producer.sent for k, _ in records}
    expected = {k: DefaultPartitioner()(k, list(range(8)), list(range(8))) for k in keys}
    assert got == expected


async def test_a_full_batch_goes_at_once_and_batches_keep_their_order() -> None:
    producer = StandInProducer(partitions=1, capacity=3)
    writer = BatchingWriter(producer, linger=10)  # type: ignore[arg-type]
    futures = [await writer.send("t", f"v{i}".encode(), b"k") for i in range(7)]
    await settle()
    # two full batches sent, the seventh record waits for linger or flush
    assert [[v for _, v in records] for _, _, records in producer.sent][:1] == [
        [b"v0", b"v1", b"v2"]
    ]
    await asyncio.gather(writer.flush(), _confirm_all(producer))
    assert [[v for _, v in r] for _, _, r in producer.sent] == [
        [b"v0", b"v1", b"v2"],
        [b"v3", b"v4", b"v5"],
        [b"v6"],
    ]
    assert all(f.done() and f.exception() is None for f in futures)
    assert futures[0] is futures[2]
    assert futures[0] is not futures[3]


async def _confirm_all(producer: StandInProducer) -> None:
    for _ in range(50):
        for delivery in producer.deliveries:
            if not delivery.done():
                delivery.set_result(None)
        await asyncio.sleep(0)


async def test_linger_sends_a_partial_batch() -> None:
    producer = StandInProducer(partitions=1, capacity=100)
    writer = BatchingWriter(producer, linger=0.01)  # type: ignore[arg-type]
    await writer.send("t", b"v", b"k")
    assert producer.sent == []
    await asyncio.sleep(0.05)
    assert [records for _, _, records in producer.sent] == [[(b"k", b"v")]]


async def test_a_failed_batch_fails_its_records() -> None:
    producer = StandInProducer(partitions=1)
    writer = BatchingWriter(producer, linger=0.001)  # type: ignore[arg-type]
    future = await writer.send("t", b"v", b"k")
    await asyncio.sleep(0.02)
    producer.deliveries[0].set_exception(RuntimeError("NotEnoughReplicas"))
    with pytest.raises(RuntimeError, match="NotEnoughReplicas"):
        await future


async def test_a_refused_batch_fails_its_records() -> None:
    producer = StandInProducer(partitions=1)
    producer.refuse = True
    writer = BatchingWriter(producer, linger=0.001)  # type: ignore[arg-type]
    future = await writer.send("t", b"v", b"k")
    with pytest.raises(RuntimeError, match="producer closed"):
        await asyncio.wait_for(future, 1)


async def test_timestamp_is_the_callers_or_none() -> None:
    producer = StandInProducer(partitions=1, capacity=2)
    writer = BatchingWriter(producer, linger=10)  # type: ignore[arg-type]
    for ts in (1_700_000_000_000, None, 1_700_000_060_000):  # the third opens a new batch
        await writer.send("t", b"v", b"k", timestamp_ms=ts)
    await asyncio.gather(writer.flush(), _confirm_all(producer))
    assert [b.timestamps for b in producer.batches] == [
        [1_700_000_000_000, None],
        [1_700_000_060_000],
    ]


async def test_explicit_partition_and_headers() -> None:
    producer = StandInProducer(partitions=8)
    writer = BatchingWriter(producer, linger=10)  # type: ignore[arg-type]
    await writer.send("t", None, b"marker", partition=5, headers=[("h", b"1")])
    await writer.send("t", b"v", b"k", partition=5)
    await asyncio.gather(writer.flush(), _confirm_all(producer))
    ((topic, partition, records),) = producer.sent
    assert (topic, partition, records) == ("t", 5, [(b"marker", None), (b"k", b"v")])
    assert producer.batches[0].headers == [[("h", b"1")], []]
    assert await writer.partitions("t") == list(range(8))
