"""A worker is healthy (``/healthz``) only while it holds its share of the group's partitions: a
worker started again after a crash says so only once the group gave it its partitions, not as
soon as its loop runs (it used to say ok some 8 s before it processed anything), and a worker
whose partitions a rebalance moves is not healthy until they are settled again."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Collection, Sequence
from typing import Any

import pytest
from aiokafka import TopicPartition

from cityhub.connectors.batching_writer import BatchingWriter
from cityhub.schemas.settings import KafkaSettings, Settings, WorkerSettings
from cityhub.streams.runtime.agent import CaughtUp, Record, StoredEntry, Write
from cityhub.streams.runtime.worker import Worker
from cityhub.streams.topic_admin import ensure_topics

from .hub import BOOTSTRAP

pytestmark = pytest.mark.integration

PARTITIONS = 4


class HoldsPartitions:
    """An agent that does nothing but hold the partitions it is given."""

    name = "holds"
    changelog = None
    tick_interval = None

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.held: set[int] = set()
        self.worker: Worker | None = None
        self.healthy_while_moved: list[bool] = []
        """The worker's health each time a rebalance gave it a partition or took one away."""

    def assign(self, partition: int, stored: Sequence[StoredEntry]) -> list[Write]:
        assert self.worker is not None
        self.healthy_while_moved.append(self.worker.healthy)
        self.held.add(partition)
        return []

    def revoke(self, partition: int) -> None:
        assert self.worker is not None
        self.healthy_while_moved.append(self.worker.healthy)
        self.held.discard(partition)

    def step(self, partition: int, records: Sequence[Record], now: float) -> list[Write]:
        return []

    def tick(self, now: float, caught_up: CaughtUp) -> list[Write]:
        return []

    @property
    def partitions(self) -> Collection[int]:
        return self.held


class Watched:
    """A worker on its own task."""

    def __init__(self, settings: Settings, topic: str, name: str) -> None:
        self.agent = HoldsPartitions(topic)
        self.writer = BatchingWriter.for_kafka(settings.kafka, client_id=name, dead_letters=None)
        self.worker = Worker(settings, [self.agent], self.writer, client_id=name)
        self.agent.worker = self.worker
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.writer.start()
        self._tasks = [asyncio.create_task(self.worker.run())]

    async def healthy(self, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while not self.worker.healthy:
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if not self._tasks:
            return
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.writer.stop()


async def group_of_its_own(stem: str) -> tuple[str, Settings]:
    """A topic prefix and consumer group of the test's own, its topics made."""
    prefix = f"{stem}{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=BOOTSTRAP, topic_prefix=prefix, partitions=PARTITIONS
        ),
        worker=WorkerSettings(app_id=f"{prefix}-app", session_timeout_seconds=6),
    )
    await ensure_topics(settings)
    return prefix, settings


async def test_a_worker_is_healthy_only_while_it_holds_its_partitions() -> None:
    prefix, settings = await group_of_its_own("wh")
    topic = f"{prefix}.raw"
    first = Watched(settings, topic, f"{prefix}-a")
    second = Watched(settings, topic, f"{prefix}-b")
    try:
        await first.start()
        await first.healthy()
        assert first.agent.held == set(range(PARTITIONS))
        assert len(first.agent.healthy_while_moved) == PARTITIONS
        assert not any(first.agent.healthy_while_moved), "healthy before it held its partitions"
        first.agent.healthy_while_moved.clear()

        await second.start()
        await second.healthy()
        # Healthy means holding its share: the second worker has its partitions by then.
        assert second.agent.held, "the second worker said healthy holding nothing"
        assert not any(second.agent.healthy_while_moved)
        await first.healthy()
        assert first.agent.held | second.agent.held == set(range(PARTITIONS))
        assert not first.agent.held & second.agent.held
        # The first worker gave partitions away in between, and was not healthy meanwhile.
        assert len(first.agent.healthy_while_moved) >= len(second.agent.held)
        assert not any(first.agent.healthy_while_moved)

        await second.stop()  # leaves the group: the first takes everything back
        await first.healthy()
        async with asyncio.timeout(30):
            while first.agent.held != set(range(PARTITIONS)):
                await asyncio.sleep(0.05)
    finally:
        await second.stop()
        await first.stop()


async def test_a_restore_longer_than_the_session_timeout_keeps_the_worker_in_its_group() -> None:
    """aiokafka sends no heartbeat while its assignment callback runs. The restore used to run
    there: one longer than the session timeout (a changelog of some 300 000 records under
    load) had the group drop the worker, which rejoined, restored again and was dropped again;
    a killed worker stalled the pipeline for minutes. The restore now runs beside the callback,
    the partitions paused meanwhile, and the worker is restored once."""
    prefix, settings = await group_of_its_own("wr")
    watched = Watched(settings, f"{prefix}.raw", f"{prefix}-slow")
    real_read = watched.worker._reader.read

    async def slow_read(partitions: Sequence[TopicPartition]) -> dict[TopicPartition, Any]:
        await asyncio.sleep(9)  # longer than the session timeout
        return await real_read(partitions)

    watched.worker._reader.read = slow_read  # type: ignore[method-assign]
    try:
        await watched.start()
        await watched.healthy(timeout=60)
        await asyncio.sleep(8)  # another session timeout: a dropped worker would restore again
        assert watched.worker.healthy
        assert watched.agent.held == set(range(PARTITIONS))
        assert len(watched.agent.healthy_while_moved) == PARTITIONS, "restored more than once"
    finally:
        await watched.stop()
