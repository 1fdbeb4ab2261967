"""The history store refusing every write (a renamed table, a lock that never ends) is an outage,
not bad rows: the writer pauses, dead-letters nothing, and catches up once it is fixed.

Before, a renamed table or a revoked privilege had every row dead-lettered as
``schema_mismatch`` and its offset committed (an operator review lost 264 of 1 500 rows in 25 s,
with ``/healthz`` ok), and a server that stopped answering (SIGSTOP) left the writer waiting in
silence. The shared PostgreSQL, in a schema of the module's own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.history.connection import Connection, connect
from cityhub.streams.history.writer import HistoryWriter

from .test_history_writer import (
    committed_everything,
    count,
    eventually,
    hub_settings,  # noqa: F401 - a fixture
    observation,
    produce,
    running,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ROWS = 200


def history_dead_letters() -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "cityhub_deadletters"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("stage") == "history"
    )


@pytest.fixture
async def writer_conn(hub_settings: Settings) -> AsyncIterator[Connection]:  # noqa: F811
    async with await connect(hub_settings, autocommit=True) as conn:
        yield conn


async def _stream(settings: Settings, device: str, first: int) -> list[str]:
    items = [observation(device, n) for n in range(first, first + ROWS)]
    topic = Topics.for_prefix(settings.kafka.topic_prefix).observations
    await produce(settings, topic, [(device.encode(), o.to_json(), []) for o in items])
    return [o.event_id for o in items]


async def test_a_renamed_table_pauses_the_writer_and_loses_nothing(
    hub_settings: Settings,  # noqa: F811
    writer_conn: Connection,
) -> None:
    device = f"dev-{uuid.uuid4().hex[:8]}"
    writer = HistoryWriter(hub_settings)
    dead_before = history_dead_letters()
    async with running(writer):
        await eventually(lambda: asyncio.sleep(0, writer.ready))
        await _stream(hub_settings, device, 0)
        await eventually(lambda: _stored(writer_conn, "observations", device, ROWS), within=60)
        await writer_conn.execute("ALTER TABLE observations RENAME TO observations_away")
        try:
            await _stream(hub_settings, device, ROWS)
            await eventually(lambda: asyncio.sleep(0, writer.paused), within=30)
            assert not writer.ready
            await asyncio.sleep(2.0)  # retried meanwhile, still refused
            assert writer.paused
        finally:
            await writer_conn.execute("ALTER TABLE observations_away RENAME TO observations")
        await eventually(lambda: asyncio.sleep(0, not writer.paused), within=60)
        await eventually(lambda: _stored(writer_conn, "observations", device, 2 * ROWS), within=60)
        await eventually(lambda: committed_everything(hub_settings))
    assert history_dead_letters() == dead_before


async def test_a_write_that_never_ends_is_an_outage_too(
    hub_settings: Settings,  # noqa: F811
    writer_conn: Connection,
) -> None:
    """A server that stops answering mid-write (here: a lock held by another session)."""
    settings = hub_settings.model_copy(
        update={"history": hub_settings.history.model_copy(update={"write_timeout_seconds": 2.0})}
    )
    device = f"dev-{uuid.uuid4().hex[:8]}"
    writer = HistoryWriter(settings)
    async with running(writer), await connect(settings) as locker:
        await eventually(lambda: asyncio.sleep(0, writer.ready))
        async with locker.transaction():
            await locker.execute("LOCK TABLE observations IN ACCESS EXCLUSIVE MODE")
            await _stream(settings, device, 0)
            await eventually(lambda: asyncio.sleep(0, writer.paused), within=30)
            assert not writer.ready
        await eventually(lambda: asyncio.sleep(0, not writer.paused), within=60)
        await eventually(lambda: _stored(writer_conn, "observations", device, ROWS), within=60)
        await eventually(lambda: committed_everything(settings))


async def _stored(conn: Connection, table: str, device: str, rows: int) -> bool:
    query = f"SELECT count(DISTINCT event_id) FROM {table} WHERE device_id = %s"
    return await count(conn, query, device) == rows
