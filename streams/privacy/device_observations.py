"""A device's recent observations, read back from the observations topic for a resident.

Observations are keyed by device id, so every observation of one device is in one partition
(Kafka's default partitioner, ``partition_for_key``, as the aggregates reader finds a group's).
A read goes backwards from the partition's end in chunks of ``chunk`` offsets, keeps the
records whose key is the device's, and stops when it has ``limit`` of them, reaches the first
offset at or after ``since_ms`` (the records' timestamps), or has looked at ``max_scanned``
records; the answer says whether it stopped early (``complete``). Nothing is decoded here:
which records are the resident's, and opening their sealed values, is ``subject_access.py``'s.

Consumers are made per read without a consumer group (``assign``; nobody's offsets move) and at
most ``concurrency`` reads run at once; each read is bounded by ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from cityhub.connectors.kafka_clients import kafka_consumer
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.aggregation.query import partition_for_key
from cityhub.streams.service_errors import Unavailable

DEFAULT_CHUNK = 2_000
DEFAULT_MAX_SCANNED = 100_000
"""Records one read may look at: about a day of a busy partition at today's rates."""
POLL_MS = 200


class ObservationsUnavailable(Unavailable):
    """The observations topic could not be read in time; trying again may work."""

    title = "Observations unavailable"


@dataclass(frozen=True, slots=True)
class RawObservation:
    """One record of the device's key, as the topic holds it."""

    offset: int
    timestamp_ms: int
    value: bytes


@dataclass(frozen=True, slots=True)
class DeviceRecords:
    """A device's records, newest first, and whether the read covered all of ``since_ms`` on
    (False: it stopped at its scan bound, so older records may exist)."""

    records: list[RawObservation]
    complete: bool


class ObservationSource(Protocol):
    """Where a resident's read finds a device's recent observations."""

    async def recent(self, device_id: str, *, since_ms: int, limit: int) -> DeviceRecords: ...


class KafkaObservationReader:
    """``recent`` over ``<prefix>.observations`` on the settings' Kafka."""

    def __init__(
        self,
        settings: Settings,
        *,
        chunk: int = DEFAULT_CHUNK,
        max_scanned: int = DEFAULT_MAX_SCANNED,
        timeout: float = 10.0,
        concurrency: int = 4,
    ) -> None:
        self._kafka = settings.kafka
        self._fetch_bytes = max(1024 * 1024, settings.kafka.max_message_bytes)
        self.topic = Topics.for_prefix(settings.kafka.topic_prefix).observations
        self._chunk = chunk
        self._max_scanned = max_scanned
        self._timeout = timeout
        self._slots = asyncio.Semaphore(concurrency)

    async def recent(self, device_id: str, *, since_ms: int, limit: int) -> DeviceRecords:
        """Up to ``limit`` of the device's records from ``since_ms`` on, newest first.
        Unavailable when Kafka fails or the read takes longer than the timeout."""
        try:
            async with asyncio.timeout(self._timeout), self._slots:
                consumer = kafka_consumer(
                    self._kafka,
                    client_id="cityhub-subject-access",
                    group_id=None,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    max_partition_fetch_bytes=self._fetch_bytes,
                    fetch_max_wait_ms=POLL_MS,
                )
                await consumer.start()
                try:
                    return await self._read(consumer, device_id, since_ms, limit)
                finally:
                    with contextlib.suppress(Exception):
                        await consumer.stop()
        except TimeoutError:
            raise ObservationsUnavailable(
                f"reading the observations took longer than {self._timeout:g} s; try again"
            ) from None
        except KafkaError as exc:
            raise ObservationsUnavailable(f"Kafka failed the read: {type(exc).__name__}") from None

    async def _read(
        self, consumer: Any, device_id: str, since_ms: int, limit: int
    ) -> DeviceRecords:
        # An unassigned consumer holds no topic's metadata: ask its client for the map (as the
        # aggregates reader does).
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(self.topic)
        if not partitions:
            return DeviceRecords([], True)  # no observations topic yet: nothing was collected
        key = device_id.encode()
        tp = TopicPartition(self.topic, partition_for_key(key, len(partitions)))
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        first = (await consumer.beginning_offsets([tp]))[tp]
        found = (await consumer.offsets_for_times({tp: max(since_ms, 0)}))[tp]
        lower = max(first, found.offset if found is not None else end)
        newest_first: list[RawObservation] = []
        high, scanned = end, 0
        while high > lower and len(newest_first) < limit and scanned < self._max_scanned:
            low = max(lower, high - self._chunk)
            chunk = await self._chunk_of(consumer, tp, low, high, key)
            newest_first.extend(reversed(chunk))
            scanned += high - low
            high = low
        return DeviceRecords(newest_first[:limit], complete=high <= lower)

    async def _chunk_of(
        self, consumer: Any, tp: TopicPartition, low: int, high: int, key: bytes
    ) -> list[RawObservation]:
        """The records of ``key`` at offsets ``low`` to ``high`` (exclusive), oldest first."""
        consumer.seek(tp, low)
        found: list[RawObservation] = []
        while True:
            batch = await consumer.getmany(tp, timeout_ms=POLL_MS, max_records=500)
            records = batch.get(tp, [])
            for record in records:
                if record.offset >= high:
                    return found
                if record.key == key and record.value is not None:
                    found.append(RawObservation(record.offset, record.timestamp, record.value))
            if records and records[-1].offset + 1 >= high:
                return found
            if not records and await consumer.position(tp) >= high:
                return found  # only offsets without records (transaction markers) were left
            await asyncio.sleep(0)


class InMemoryObservations:
    """An ``ObservationSource`` over records given by the test, by device."""

    def __init__(self) -> None:
        self.records: dict[str, list[RawObservation]] = {}
        self.reads = 0

    def add(self, device_id: str, value: bytes, *, timestamp_ms: int | None = None) -> None:
        held = self.records.setdefault(device_id, [])
        stamp = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        held.append(RawObservation(len(held), stamp, value))

    async def recent(self, device_id: str, *, since_ms: int, limit: int) -> DeviceRecords:
        self.reads += 1
        held = [r for r in self.records.get(device_id, []) if r.timestamp_ms >= since_ms]
        return DeviceRecords(list(reversed(held))[:limit], complete=True)


__all__ = [
    "DeviceRecords",
    "InMemoryObservations",
    "KafkaObservationReader",
    "ObservationSource",
    "ObservationsUnavailable",
    "RawObservation",
]
