"""The history store's migrations on the real PostgreSQL of the local stack."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from cityhub.schemas.settings import Settings
from cityhub.streams.history.connection import connect
from cityhub.streams.history.migrate import current_version, load_migrations, migrate

from .conftest import drop_schema, settings_with_schema

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def fresh_schema() -> Iterator[Settings]:
    """Settings naming a schema that does not exist yet (dropped afterwards)."""
    settings = settings_with_schema(f"test_{uuid.uuid4().hex[:12]}")
    try:
        yield settings
    finally:
        drop_schema(settings)


async def test_two_processes_migrating_at_once_apply_each_version_once(
    fresh_schema: Settings,
) -> None:
    schema = fresh_schema.history.db_schema
    newest = len(load_migrations())
    a = await connect(fresh_schema, autocommit=True)
    b = await connect(fresh_schema, autocommit=True)
    try:
        assert await current_version(a) == 0
        applied = await asyncio.gather(migrate(a, schema), migrate(b, schema))
        # Each version once, by one process or the other: which depends on who gets the lock
        # first for each (under load the two took turns: [1] and [2]).
        assert sorted(applied[0] + applied[1]) == list(range(1, newest + 1))
        cursor = await a.execute("SELECT version FROM schema_version ORDER BY version")
        assert [row[0] for row in await cursor.fetchall()] == list(range(1, newest + 1))
        assert await migrate(a, schema) == []  # current: nothing to do
        assert await current_version(b) == newest
    finally:
        await a.close()
        await b.close()


async def test_the_tables_are_partitioned_with_a_default_partition(
    fresh_schema: Settings,
) -> None:
    schema = fresh_schema.history.db_schema
    async with await connect(fresh_schema, autocommit=True) as conn:
        await migrate(conn, schema)
        cursor = await conn.execute(
            "SELECT c.relname, pg_get_partkeydef(c.oid) FROM pg_partitioned_table p"
            " JOIN pg_class c ON c.oid = p.partrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
            [schema],
        )
        assert dict(await cursor.fetchall()) == {
            "observations": "RANGE (observed_at)",
            "aggregates": "RANGE (window_start)",
        }
        cursor = await conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'",
            [schema],
        )
        assert {row[0] for row in await cursor.fetchall()} == {
            "observations_default",
            "aggregates_default",
        }


def test_the_module_fixture_gives_a_migrated_schema_of_its_own(
    history_settings: Settings,
) -> None:
    async def version() -> int:
        async with await connect(history_settings) as conn:
            cursor = await conn.execute("SHOW search_path")
            row = await cursor.fetchone()
            assert row is not None
            assert row[0] == f"{history_settings.history.db_schema},public"
            return await current_version(conn)

    assert history_settings.history.db_schema != Settings().history.db_schema
    assert asyncio.run(version()) == len(load_migrations())
