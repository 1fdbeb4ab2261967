"""An in-memory aggregates topic and its reader: the test double of ``reader.KafkaAggregateReader``.

Records are kept per partition in append order with their timestamps, placed by the same
partitioner as Kafka's, and read with the same ``Scan``; ``first offset with a timestamp at or
after`` is found the way Kafka's time index answers it. Pure: no Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from cityhub.schemas.aggregate import Aggregate
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.aggregation.query import (
    AggregateQuery,
    QueryLimits,
    Scan,
    ScanResult,
    area_group,
    device_group,
    partition_for_key,
    to_ms,
)

_BATCH = 500


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


def group_of(doc: Mapping[str, Any]) -> str:
    """The record key of an aggregate's JSON, as ``Aggregate.kafka_key`` makes it."""
    if doc["grouping"] == "device":
        return device_group(doc["key"])
    return area_group(doc.get("tenant") or "", doc["key"])


class InMemoryAggregates:
    """An aggregates topic of ``partitions`` partitions, and ``read`` as the Kafka reader does."""

    def __init__(self, limits: QueryLimits, *, partitions: int = 8) -> None:
        self.limits = limits
        self._partitions: list[list[MemoryRecord]] = [[] for _ in range(partitions)]
        self.reads = 0

    def append(self, key: bytes, value: bytes, timestamp_ms: int) -> int:
        """Append one record where the default partitioner puts ``key``; return the partition."""
        partition = partition_for_key(key, len(self._partitions))
        log = self._partitions[partition]
        log.append(MemoryRecord(len(log), key, value, timestamp_ms))
        return partition

    def add(self, aggregate: Aggregate | Mapping[str, Any]) -> int:
        """Append an aggregate as the window agent writes it (key = group, timestamp = end)."""
        if isinstance(aggregate, Aggregate):
            return self.append(aggregate.kafka_key(), aggregate.to_json(), aggregate.timestamp_ms())
        doc = dict(aggregate)
        # start + size, as Aggregate.timestamp_ms: the last window of 2099 ends in 2100, which
        # the parser (rightly) refuses as a time from outside.
        end = to_ms(parse_rfc3339(doc["window_start"])) + int(doc["window_size"]) * 1000
        return self.append(group_of(doc).encode(), orjson.dumps(doc), end)

    @property
    def partitions(self) -> int:
        return len(self._partitions)

    def records(self, partition: int) -> list[MemoryRecord]:
        return self._partitions[partition]

    async def read(self, query: AggregateQuery) -> ScanResult:
        """The current revisions of the windows ``query`` asks for (QueryRejected past a limit)."""
        self.reads += 1
        partition = partition_for_key(query.key, len(self._partitions))
        log = self._partitions[partition]
        end_offset = len(log)
        start = next((r.offset for r in log if r.timestamp >= query.from_ms), end_offset)
        scan = Scan(query, self.limits)
        for i in range(start, end_offset, _BATCH):
            if scan.feed(log[i : i + _BATCH], end_offset=end_offset):
                break
            await asyncio.sleep(0)
        scan.finish()
        return scan.result(partition)

    async def close(self) -> None:
        return None
