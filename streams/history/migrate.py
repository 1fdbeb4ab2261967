"""Creating and upgrading the history store's tables: the numbered SQL files of ``migrations/``.

``0001_observations_and_aggregates.sql`` is version 1, and so on. Each file not yet recorded in
``schema_version`` runs in a transaction of its own and is recorded in the same transaction, so a
failed file leaves nothing half-applied. Every transaction first takes an advisory lock on the
schema's name: two processes migrating at once (two writers starting, a writer and
``cityhub history migrate``) run one after the other, and the second finds nothing left to do.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib.resources import files

import psycopg
from psycopg import sql

from cityhub.schemas.errors import ConfigurationError
from cityhub.streams.history.connection import Connection

log = logging.getLogger("cityhub.history")

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_NAMESPACE = "cityhub.history.migrate:"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


def parse_file_name(name: str) -> tuple[int, str] | None:
    """``0003_add_index.sql`` -> ``(3, "add index")``; None for a name that is not a migration."""
    match = _FILE_NAME.match(name)
    if match is None:
        return None
    return int(match.group(1)), match.group(2).replace("_", " ")


def ordered(migrations: list[Migration]) -> list[Migration]:
    """The migrations by version; ``ValueError`` unless they are exactly 1, 2, ... n."""
    result = sorted(migrations, key=lambda m: m.version)
    versions = [m.version for m in result]
    if versions != list(range(1, len(result) + 1)):
        raise ValueError(f"migration versions must be 1..n without gaps or repeats: {versions}")
    return result


def load_migrations() -> list[Migration]:
    """The packaged migrations, in order (installed as package data with cityhub)."""
    folder = files("cityhub.streams.history").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        parsed = parse_file_name(entry.name)
        if parsed is not None:
            found.append(Migration(parsed[0], parsed[1], entry.read_text(encoding="utf-8")))
    return ordered(found)


def pending(migrations: list[Migration], applied: set[int]) -> list[Migration]:
    """What is left to apply; ``ConfigurationError`` when the database has a version this
    cityhub does not know (it was migrated by a newer one: running would mis-read it)."""
    known = {m.version for m in migrations}
    unknown = sorted(applied - known)
    if unknown:
        raise ConfigurationError(
            f"the history store has schema versions {unknown} that this cityhub does not know "
            f"(it knows 1..{max(known, default=0)}): it was migrated by a newer cityhub"
        )
    return [m for m in migrations if m.version not in applied]


async def _lock(conn: Connection, schema: str) -> None:
    # hashtext gives a stable 32-bit key per schema: tests migrating schemas of their own do not
    # wait for each other.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [_LOCK_NAMESPACE + schema])


async def _applied(conn: Connection) -> set[int]:
    cursor = await conn.execute("SELECT version FROM schema_version")
    return {row[0] for row in await cursor.fetchall()}


async def migrate(conn: Connection, schema: str) -> list[int]:
    """Bring ``schema`` up to the newest version; return the versions applied now (empty: it was
    already current). ``conn`` must have ``schema`` first on its search path (``connect`` does
    that) and must not be inside a transaction. Raises ``ConfigurationError`` when PostGIS is
    missing or the database is newer than this cityhub."""
    migrations = load_migrations()
    async with conn.transaction():
        await _lock(conn, schema)
        cursor = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'")
        if await cursor.fetchone() is None:
            raise ConfigurationError(
                "the history database has no PostGIS extension: `cityhub stack up` makes it in "
                "the local stack; elsewhere a superuser runs CREATE EXTENSION postgis"
            )
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY,"
            " description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
    done: list[int] = []
    for migration in pending(migrations, await _applied_outside(conn)):
        async with conn.transaction():
            await _lock(conn, schema)
            if migration.version in await _applied(conn):
                continue  # another process applied it while this one waited for the lock
            try:
                await conn.execute(migration.sql.encode())
            except psycopg.Error as exc:
                raise ConfigurationError(
                    f"history migration {migration.version} ({migration.description}) failed: {exc}"
                ) from exc
            await conn.execute(
                "INSERT INTO schema_version (version, description) VALUES (%s, %s)",
                [migration.version, migration.description],
            )
        log.info("history: schema %s migrated to version %d", schema, migration.version)
        done.append(migration.version)
    return done


async def _applied_outside(conn: Connection) -> set[int]:
    async with conn.transaction():
        return await _applied(conn)


async def current_version(conn: Connection) -> int:
    """The newest version applied (0 for a schema never migrated)."""
    try:
        async with conn.transaction():
            cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
            row = await cursor.fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    return int(row[0]) if row is not None else 0
