"""A database outage under a stream of observations: the writer pauses, loses nothing, resumes.

PostgreSQL here is the test's own, started by the stack's code in a state dir and on a port of
its own (the shared one is never stopped); Kafka is the shared stack's.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from cityhub.schemas.settings import (
    HistorySettings,
    KafkaSettings,
    Settings,
    StackSettings,
    WorkerSettings,
)
from cityhub.schemas.topics import Topics
from cityhub.streams.devtools.stack import stack_down, stack_up
from cityhub.streams.history.connection import connect
from cityhub.streams.history.writer import HistoryWriter
from cityhub.streams.topic_admin import ensure_topics

from .hub import BOOTSTRAP, free_port
from .test_history_writer import committed_everything, observation, running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

STREAM = 3000
RATE = 250.0  # observations a second: the stream lasts 12 s


def reachable_state_dir() -> Path:
    """A fresh folder the server can reach when it runs as the postgres user (tests as root)."""
    state_dir = Path(tempfile.mkdtemp(prefix="cityhub-pg-"))
    state_dir.chmod(0o755)
    return state_dir


@pytest.fixture
async def own_postgres() -> AsyncIterator[Settings]:
    """Settings with a PostgreSQL of the test's own (and Kafka topics of its own prefix)."""
    state_dir = reachable_state_dir()
    port = free_port()
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(
        stack=StackSettings(state_dir=state_dir, postgres_port=port),
        history=HistorySettings(port=port, batch_max_records=200, batch_linger_ms=50),
        kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix, partitions=2),
        worker=WorkerSettings(app_id=f"{prefix}-app"),
    )
    try:
        assert (await stack_up(settings, only=["postgres"])).all_serving
        topics = Topics.for_prefix(prefix)
        await ensure_topics(
            settings, only=[topics.observations, topics.aggregates, topics.deadletter]
        )
        yield settings
    finally:
        await stack_down(settings, purge=True, only=["postgres"])
        shutil.rmtree(state_dir, ignore_errors=True)


async def stream(settings: Settings, event_ids: list[str]) -> None:
    """Produce STREAM observations at RATE a second, from 20 devices."""
    topic = Topics.for_prefix(settings.kafka.topic_prefix).observations
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    try:
        began = time.monotonic()
        for n in range(STREAM):
            device = f"dev-{n % 20}"
            item = observation(device, n)
            event_ids.append(item.event_id)
            await producer.send(topic, item.to_json(), key=device.encode())
            ahead = began + (n + 1) / RATE - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()


async def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {within} s")
        await asyncio.sleep(0.05)


def paused_metric() -> float:
    return REGISTRY.get_sample_value("cityhub_history_paused") or 0.0


async def test_an_outage_pauses_the_writer_and_loses_nothing(own_postgres: Settings) -> None:
    settings = own_postgres
    writer = HistoryWriter(settings)
    event_ids: list[str] = []
    async with running(writer):
        await wait_for(lambda: writer.ready, 60, "ready")
        producing = asyncio.create_task(stream(settings, event_ids))
        try:
            await asyncio.sleep(2.0)
            await stack_down(settings, only=["postgres"])
            await wait_for(lambda: writer.paused, 30, "paused")
            assert not writer.ready
            assert paused_metric() == 1
            await asyncio.sleep(3.0)  # the stream goes on into Kafka meanwhile
            assert writer.paused
            assert (await stack_up(settings, only=["postgres"])).all_serving
            await wait_for(lambda: not writer.paused, 60, "resumed")
            assert paused_metric() == 0
            await producing
        finally:
            if not producing.done():
                producing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await producing

        async def stored() -> tuple[int, int]:
            async with await connect(settings) as conn:
                cursor = await conn.execute(
                    "SELECT count(*), count(DISTINCT event_id) FROM observations"
                )
                row = await cursor.fetchone()
                assert row is not None
                return int(row[0]), int(row[1])

        deadline = time.monotonic() + 60
        while (await stored())[0] < STREAM and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
        deadline = time.monotonic() + 30
        while not await committed_everything(settings) and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
        assert await committed_everything(settings)

    assert len(event_ids) == STREAM
    assert await stored() == (STREAM, STREAM)  # every event id, once
    async with await connect(settings) as conn:
        cursor = await conn.execute("SELECT event_id::text FROM observations")
        assert {row[0] for row in await cursor.fetchall()} == set(event_ids)
