"""Writing one batch of rows to the history store: COPY into a temporary staging table, then one
``INSERT ... SELECT ... ON CONFLICT`` per table, all in one transaction.

Observations: ``DO NOTHING`` on the event id (a replayed observation is the same one).
Aggregates: ``DO UPDATE ... WHERE aggregates.revision < excluded.revision``: the stored row is
always the newest revision seen, whatever order the revisions come in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg import sql

from cityhub.schemas.settings import HistorySettings
from cityhub.streams.history import metrics
from cityhub.streams.history.connection import Connection
from cityhub.streams.history.partition_plan import (
    AGGREGATES,
    OBSERVATIONS,
    TableLayout,
    accepted_span,
    partitions_needed,
)
from cityhub.streams.history.partitions import PartitionKeeper, retention_days
from cityhub.streams.history.rows import AGGREGATE_COLUMNS, OBSERVATION_COLUMNS, Row

OBSERVATIONS_STAGE = "history_observations_stage"
AGGREGATES_STAGE = "history_aggregates_stage"

_STAGING_TABLES = (
    f"CREATE TEMP TABLE IF NOT EXISTS {OBSERVATIONS_STAGE} ("
    " event_id uuid, observed_at timestamptz, received_at timestamptz, tenant text,"
    " device_id text, device_type text, quantity text, unit text,"
    " value_number double precision, value_text text, value_boolean boolean, area text,"
    " longitude double precision, latitude double precision, altitude double precision,"
    " classification text, data_subject text, doc jsonb) ON COMMIT DELETE ROWS",
    f"CREATE TEMP TABLE IF NOT EXISTS {AGGREGATES_STAGE} ("
    " aggregate_id uuid, window_start timestamptz, window_end timestamptz,"
    " window_size integer, group_kind text, group_key text, tenant text, device_id text,"
    " area text, quantity text, unit text, classification text, count bigint,"
    " min double precision, max double precision, sum double precision,"
    " mean double precision, last double precision, last_observed_at timestamptz,"
    " revision integer, readings bigint, flagged bigint, expected double precision,"
    " coverage double precision, doc jsonb) ON COMMIT DELETE ROWS",
)

_INSERT_OBSERVATIONS = sql.SQL("""
INSERT INTO observations (event_id, observed_at, received_at, tenant, device_id, device_type,
    quantity, unit, value_number, value_text, value_boolean, area, location, altitude,
    classification, data_subject, doc)
SELECT event_id, observed_at, received_at, tenant, device_id, device_type, quantity, unit,
    value_number, value_text, value_boolean, area,
    CASE WHEN longitude IS NULL OR latitude IS NULL THEN NULL
         ELSE ST_SetSRID(ST_MakePoint(longitude, latitude), 4326) END,
    altitude, classification, data_subject, doc
FROM {stage} AS s
WHERE s.data_subject IS NULL OR NOT EXISTS (
    SELECT 1 FROM erased_subjects AS e
    WHERE e.tenant = s.tenant AND e.data_subject = s.data_subject AND s.received_at <= e.erased_at)
ON CONFLICT (event_id, observed_at) DO NOTHING
""").format(stage=sql.Identifier(OBSERVATIONS_STAGE))

_AGGREGATE_UPDATED = [c for c in AGGREGATE_COLUMNS if c not in ("aggregate_id", "window_start")]
_INSERT_AGGREGATES = sql.SQL(
    "INSERT INTO aggregates ({columns}) SELECT {columns} FROM {stage}"
    " ON CONFLICT (aggregate_id, window_start) DO UPDATE SET {updates}"
    " WHERE aggregates.revision < excluded.revision"
).format(
    columns=sql.SQL(", ").join(map(sql.Identifier, AGGREGATE_COLUMNS)),
    stage=sql.Identifier(AGGREGATES_STAGE),
    updates=sql.SQL(", ").join(
        sql.SQL("{} = excluded.{}").format(sql.Identifier(c), sql.Identifier(c))
        for c in _AGGREGATE_UPDATED
    ),
)


@dataclass(frozen=True)
class Written:
    """What one batch changed."""

    observations: int
    """Observation rows inserted (the others of the batch were stored already)."""
    aggregates: int
    """Aggregate rows inserted or replaced by a newer revision."""


async def prepare_staging(conn: Connection) -> None:
    """Make this connection's staging tables (temporary: each connection has its own)."""
    for statement in _STAGING_TABLES:
        await conn.execute(statement)


async def _copy(conn: Connection, stage: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(stage), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    async with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            await copy.write_row(row.values)


async def _partitions_for(
    conn: Connection,
    keeper: PartitionKeeper,
    history: HistorySettings,
    layout: TableLayout,
    rows: Sequence[Row],
    now: datetime,
) -> None:
    span = accepted_span(
        now,
        retention_days=retention_days(history, layout),
        ahead_days=history.partitions_ahead_days,
    )
    outside = sum(1 for row in rows if row.at not in span)
    if outside:
        metrics.ROWS_DEFAULT.labels(layout.table).inc(outside)
    await keeper.ensure(conn, layout, partitions_needed(layout, (r.at for r in rows), span))


async def write_batch(
    conn: Connection,
    keeper: PartitionKeeper,
    history: HistorySettings,
    observations: Sequence[Row],
    aggregates: Sequence[Row],
    now: datetime,
) -> Written:
    """Store the rows (``observations`` unique by event id, ``aggregates`` one per id: see
    ``rows.unique_events``/``current_revisions``) in one transaction; make the partitions they
    need first. ``conn`` is in autocommit mode with the staging tables made. Raises
    ``psycopg.Error`` when the database fails; then nothing of the batch is stored."""
    await _partitions_for(conn, keeper, history, OBSERVATIONS, observations, now)
    await _partitions_for(conn, keeper, history, AGGREGATES, aggregates, now)
    inserted = updated = 0
    async with conn.transaction():
        if observations:
            await _copy(conn, OBSERVATIONS_STAGE, OBSERVATION_COLUMNS, observations)
            cursor = await conn.execute(_INSERT_OBSERVATIONS)
            inserted = max(cursor.rowcount, 0)
        if aggregates:
            await _copy(conn, AGGREGATES_STAGE, AGGREGATE_COLUMNS, aggregates)
            cursor = await conn.execute(_INSERT_AGGREGATES)
            updated = max(cursor.rowcount, 0)
    metrics.ROWS_WRITTEN.labels(OBSERVATIONS.table).inc(inserted)
    metrics.ROWS_SKIPPED.labels(OBSERVATIONS.table).inc(len(observations) - inserted)
    metrics.ROWS_WRITTEN.labels(AGGREGATES.table).inc(updated)
    metrics.ROWS_SKIPPED.labels(AGGREGATES.table).inc(len(aggregates) - updated)
    return Written(inserted, updated)
