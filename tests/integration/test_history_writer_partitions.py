"""Time partitions on the real PostgreSQL: a hostile clock, rows moved out of DEFAULT, retention."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from cityhub.schemas.settings import HistorySettings, Settings
from cityhub.streams.history.batch_store import prepare_staging, write_batch
from cityhub.streams.history.connection import Connection
from cityhub.streams.history.partition_plan import OBSERVATIONS, partition_for
from cityhub.streams.history.partitions import (
    PartitionKeeper,
    apply_retention,
    create_partition,
    existing_partitions,
)
from cityhub.streams.history.rows import Row, observation_row

from .test_history_writer import observation

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def rows_at(device: str, *times: datetime) -> list[Row]:
    return [observation_row(observation(device, n, at=t).to_json()) for n, t in enumerate(times)]


def metric(name: str, table: str) -> float:
    return REGISTRY.get_sample_value(name, {"table": table}) or 0.0


async def partition_names(conn: Connection) -> set[str]:
    return {p.name for p in await existing_partitions(conn, OBSERVATIONS)}


async def where_rows_are(conn: Connection, device: str) -> dict[str, int]:
    cursor = await conn.execute(
        "SELECT tableoid::regclass::text, count(*) FROM observations WHERE device_id = %s"
        " GROUP BY 1",
        [device],
    )
    return {str(name): int(n) for name, n in await cursor.fetchall()}


async def test_a_hostile_clock_writes_to_default_and_makes_no_partition(
    history_settings: Settings, history_conn: Connection
) -> None:
    await prepare_staging(history_conn)
    keeper = await PartitionKeeper.load(history_conn)
    device = f"dev-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    hostile = [datetime(1971, 1, 1, tzinfo=UTC) + timedelta(days=37 * n) for n in range(300)]
    hostile += [datetime(2099, 12, 31, tzinfo=UTC) - timedelta(days=41 * n) for n in range(300)]
    before = await partition_names(history_conn)
    counted = metric("cityhub_history_default_partition_rows_total", "observations")

    written = await write_batch(
        history_conn,
        keeper,
        history_settings.history,
        rows_at(device, now, *hostile),
        [],
        now,
    )

    assert written.observations == 601
    made = await partition_names(history_conn) - before
    assert made <= {partition_for(OBSERVATIONS, now.date()).name}
    assert await where_rows_are(history_conn, device) == {
        partition_for(OBSERVATIONS, now.date()).name: 1,
        "observations_default": 600,
    }
    assert metric("cityhub_history_default_partition_rows_total", "observations") == counted + 600


async def test_a_new_partition_takes_its_rows_out_of_default(
    history_settings: Settings, history_conn: Connection
) -> None:
    await prepare_staging(history_conn)
    keeper = await PartitionKeeper.load(history_conn)
    device = f"dev-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    later = now + timedelta(days=history_settings.history.partitions_ahead_days + 3)
    rows = rows_at(device, later, later)
    await write_batch(history_conn, keeper, history_settings.history, rows, [], now)
    assert await where_rows_are(history_conn, device) == {"observations_default": 2}

    day = partition_for(OBSERVATIONS, later.date())
    assert await create_partition(history_conn, OBSERVATIONS, day) == 2
    assert await create_partition(history_conn, OBSERVATIONS, day) == 0  # made once only

    assert await where_rows_are(history_conn, device) == {day.name: 2}
    # Written again (a replay), the rows are recognised in their new partition.
    keeper = await PartitionKeeper.load(history_conn)
    again = await write_batch(history_conn, keeper, history_settings.history, rows, [], now)
    assert again.observations == 0
    assert await where_rows_are(history_conn, device) == {day.name: 2}


async def test_retention_drops_whole_partitions_and_old_default_rows(
    history_settings: Settings, history_conn: Connection
) -> None:
    await prepare_staging(history_conn)
    history = HistorySettings(
        **{**history_settings.history.model_dump(), "observations_retention_days": 5}
    )
    device = f"dev-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    old = now - timedelta(days=8)
    old_partition = partition_for(OBSERVATIONS, old.date())
    await create_partition(history_conn, OBSERVATIONS, old_partition)
    ancient = datetime(1999, 5, 5, tzinfo=UTC)
    keeper = await PartitionKeeper.load(history_conn)
    await write_batch(history_conn, keeper, history, rows_at(device, now, old, ancient), [], now)
    assert await where_rows_are(history_conn, device) == {
        partition_for(OBSERVATIONS, now.date()).name: 1,
        old_partition.name: 1,
        "observations_default": 1,
    }
    dropped_before = metric("cityhub_history_partitions_dropped_total", "observations")

    expiry = await apply_retention(history_conn, history, now)

    assert old_partition.name in expiry.partitions["observations"]
    assert expiry.default_rows["observations"] >= 1
    assert await where_rows_are(history_conn, device) == {
        partition_for(OBSERVATIONS, now.date()).name: 1
    }
    assert old_partition.name not in await partition_names(history_conn)
    assert metric("cityhub_history_partitions_dropped_total", "observations") >= dropped_before + 1
    ahead = {
        partition_for(OBSERVATIONS, (now + timedelta(days=n)).date()).name
        for n in range(history.partitions_ahead_days + 1)
    }
    assert ahead <= await partition_names(history_conn)
