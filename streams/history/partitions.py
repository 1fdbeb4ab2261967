"""Making and dropping the history tables' time partitions (the plan: ``partition_plan``).

A partition is made in a transaction of its own under an advisory lock per table, so two
writers never race to make the same one. Rows already in the DEFAULT partition for its range
(they came while their time was outside the accepted span) are moved into it in the same
transaction: PostgreSQL refuses a new partition while DEFAULT holds rows of its range, and
nothing is lost or seen twice. Retention drops whole partitions, and deletes from DEFAULT the
rows older than the retention limit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from psycopg import sql

from cityhub.schemas.settings import HistorySettings
from cityhub.streams.history import metrics
from cityhub.streams.history.connection import Connection
from cityhub.streams.history.partition_plan import (
    AGGREGATES,
    OBSERVATIONS,
    TABLES,
    Partition,
    TableLayout,
    expired,
    parse_partition_name,
    partitions_ahead,
    retention_cutoff,
)

log = logging.getLogger("cityhub.history")


def retention_days(history: HistorySettings, layout: TableLayout) -> int:
    if layout is OBSERVATIONS:
        return history.observations_retention_days
    if layout is AGGREGATES:
        return history.aggregates_retention_days
    raise ValueError(f"no retention for {layout.table}")


async def existing_partitions(conn: Connection, layout: TableLayout) -> set[Partition]:
    """The time partitions ``layout.table`` has now (in the schema on the search path)."""
    cursor = await conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass",
        [layout.table],
    )
    found = (parse_partition_name(layout, row[0]) for row in await cursor.fetchall())
    return {p for p in found if p is not None}


async def _lock_table(conn: Connection, layout: TableLayout) -> None:
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('cityhub.history.partition:'"
        " || current_schema() || '.' || %s))",
        [layout.table],
    )


async def create_partition(conn: Connection, layout: TableLayout, partition: Partition) -> int:
    """Make ``partition`` (unless another process just did), moving into it the rows DEFAULT
    holds for its range; return how many were moved."""
    table, name = sql.Identifier(layout.table), sql.Identifier(partition.name)
    column = sql.Identifier(layout.column)
    lower = sql.Literal(partition.lower.isoformat())
    upper = sql.Literal(partition.upper.isoformat())
    async with conn.transaction():
        await _lock_table(conn, layout)
        cursor = await conn.execute("SELECT to_regclass(%s)", [partition.name])
        row = await cursor.fetchone()
        if row is not None and row[0] is not None:
            return 0
        await conn.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
                name, table
            )
        )
        moved = await conn.execute(
            sql.SQL(
                "WITH moved AS (DELETE FROM {} WHERE {} >= {} AND {} < {} RETURNING *)"
                " INSERT INTO {} SELECT * FROM moved"
            ).format(sql.Identifier(layout.default_partition), column, lower, column, upper, name)
        )
        await conn.execute(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                table, name, lower, upper
            )
        )
    metrics.PARTITIONS_CREATED.labels(layout.table).inc()
    if moved.rowcount:
        log.info("history: %s made, %d rows moved in from DEFAULT", partition.name, moved.rowcount)
    return max(moved.rowcount, 0)


@dataclass
class PartitionKeeper:
    """Knows which partitions exist and makes the missing ones the writer needs."""

    known: dict[str, set[Partition]]

    @classmethod
    async def load(cls, conn: Connection) -> PartitionKeeper:
        known = {}
        async with conn.transaction():
            for layout in TABLES:
                known[layout.table] = await existing_partitions(conn, layout)
        return cls(known)

    async def ensure(
        self, conn: Connection, layout: TableLayout, partitions: Iterable[Partition]
    ) -> int:
        """Make those of ``partitions`` not known to exist; return how many were missing."""
        have = self.known.setdefault(layout.table, set())
        missing = sorted(set(partitions) - have)
        for partition in missing:
            await create_partition(conn, layout, partition)
            have.add(partition)
        return len(missing)

    def forget(self) -> None:
        """After a failure (a transaction rolled back): ask the database again next time."""
        self.known.clear()


@dataclass(frozen=True)
class Expiry:
    """What one retention pass removed."""

    partitions: dict[str, list[str]]
    default_rows: dict[str, int]


async def apply_retention(conn: Connection, history: HistorySettings, now: datetime) -> Expiry:
    """Drop every partition past its table's retention and delete the DEFAULT partition's rows
    past it; make the partitions of the days ahead. Counted in the history metrics."""
    dropped: dict[str, list[str]] = {}
    deleted: dict[str, int] = {}
    for layout in TABLES:
        cutoff = retention_cutoff(now, retention_days(history, layout))
        async with conn.transaction():
            await _lock_table(conn, layout)
            gone = expired(await existing_partitions(conn, layout), cutoff)
            for partition in gone:
                await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(partition.name)))
            cursor = await conn.execute(
                sql.SQL("DELETE FROM {} WHERE {} < %s").format(
                    sql.Identifier(layout.default_partition), sql.Identifier(layout.column)
                ),
                [cutoff],
            )
        dropped[layout.table] = [p.name for p in gone]
        deleted[layout.table] = max(cursor.rowcount, 0)
        metrics.PARTITIONS_DROPPED.labels(layout.table).inc(len(gone))
        metrics.EXPIRED_DEFAULT_ROWS.labels(layout.table).inc(deleted[layout.table])
        if gone or deleted[layout.table]:
            log.info(
                "history: retention of %s (%d days): dropped %s, %d rows from DEFAULT",
                layout.table,
                retention_days(history, layout),
                ", ".join(p.name for p in gone) or "no partition",
                deleted[layout.table],
            )
    for layout in TABLES:
        for partition in sorted(partitions_ahead(layout, now, history.partitions_ahead_days)):
            await create_partition(conn, layout, partition)
    return Expiry(dropped, deleted)
