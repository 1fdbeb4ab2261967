"""Reading an agent's state back from its changelog: one partition, from its start to its end.

A changelog is a compacted topic with one partition per input partition; the last record of a
key is the key's state, a tombstone deletes it. Compaction may not have run yet, so the reader
keeps the last value per key itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from cityhub.connectors.kafka_clients import kafka_consumer
from cityhub.schemas.settings import KafkaSettings
from cityhub.streams.runtime.agent import StoredEntry

log = logging.getLogger("cityhub.runtime")

READ_TIMEOUT_S = 300.0
"""Longest a partition's restore may take before the worker gives up (and restarts)."""


class ChangelogReader:
    """Reads changelog partitions with one group-less consumer (made at the first read)."""

    def __init__(self, kafka: KafkaSettings, *, client_id: str, max_fetch_bytes: int) -> None:
        self._kafka = kafka
        self._client_id = client_id
        self._max_fetch_bytes = max_fetch_bytes
        self._consumer: AIOKafkaConsumer | None = None

    async def read(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, list[StoredEntry]]:
        """The entries of each changelog partition (the last value of each key, tombstoned keys
        left out, in the order their last records were written), all read in one pass."""
        if not partitions:
            return {}
        consumer = await self._client()
        wanted = list(dict.fromkeys(partitions))
        consumer.assign(wanted)
        await consumer.seek_to_beginning(*wanted)
        ends = await consumer.end_offsets(wanted)
        entries: dict[TopicPartition, dict[bytes, bytes]] = {tp: {} for tp in wanted}
        left = {tp for tp in wanted if ends[tp] > 0}
        started = time.monotonic()
        count = 0
        while left:
            if time.monotonic() - started > READ_TIMEOUT_S:
                raise TimeoutError(f"restoring {sorted(left)} took over {READ_TIMEOUT_S} s")
            batch = await consumer.getmany(*left, timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                held = entries[tp]
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    count += 1
                    if record.key is None:
                        continue
                    held.pop(record.key, None)  # keep the order of the last writes
                    if record.value is not None:
                        held[record.key] = record.value
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
        if count:
            log.info(
                "restored %d changelog partition(s): %d key(s) from %d record(s) in %.2f s",
                len(wanted),
                sum(len(held) for held in entries.values()),
                count,
                time.monotonic() - started,
            )
        return {
            tp: [StoredEntry(key, value) for key, value in held.items()]
            for tp, held in entries.items()
        }

    async def _client(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = kafka_consumer(
                self._kafka,
                client_id=self._client_id,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=self._max_fetch_bytes,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await asyncio.shield(consumer.stop())
