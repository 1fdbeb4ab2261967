"""A worker whose state restore fails stops with WorkerFailed, so that its supervisor starts it
again, instead of holding its partitions paused for good behind a healthy-looking worker (the
error inside aiokafka's rebalance callback would otherwise be logged and swallowed)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection, Sequence

import pytest

from cityhub.connectors.batching_writer import BatchingWriter
from cityhub.schemas.settings import KafkaSettings, Settings, WorkerSettings
from cityhub.streams.runtime.agent import CaughtUp, Record, StoredEntry, Write
from cityhub.streams.runtime.worker import Worker, WorkerFailed
from cityhub.streams.topic_admin import ensure_topics

from .hub import BOOTSTRAP

pytestmark = pytest.mark.integration


class RefusesItsState:
    """An agent whose state cannot be rebuilt (a corrupt changelog entry, a bug)."""

    name = "refuses"
    changelog = None
    tick_interval = None

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.assigned: list[int] = []

    def assign(self, partition: int, stored: Sequence[StoredEntry]) -> list[Write]:
        self.assigned.append(partition)
        raise ValueError("state entry 7 is not JSON")

    def revoke(self, partition: int) -> None:
        pass

    def step(self, partition: int, records: Sequence[Record], now: float) -> list[Write]:
        return []

    def tick(self, now: float, caught_up: CaughtUp) -> list[Write]:
        return []

    @property
    def partitions(self) -> Collection[int]:
        return ()


async def test_a_failed_restore_fails_the_worker() -> None:
    prefix = f"wr{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix, partitions=2),
        worker=WorkerSettings(app_id=f"{prefix}-app"),
    )
    await ensure_topics(settings)
    agent = RefusesItsState(f"{prefix}.raw")
    writer = BatchingWriter.for_kafka(settings.kafka, client_id=f"{prefix}-out", dead_letters=None)
    await writer.start()
    try:
        with pytest.raises(WorkerFailed, match=r"could not restore the state.*not JSON"):
            await asyncio.wait_for(Worker(settings, [agent], writer).run(), 60)
    finally:
        await writer.stop()
    assert agent.assigned, "the agent was never asked to restore"
