"""Fixtures shared by the integration tests.

``history_settings``: a PostgreSQL schema of the test module's own in the local stack's history
database, migrated to the newest version, dropped when the module's tests are done. Its
``Settings`` put that schema first on every connection's search path, so a module's rows are
never seen by another's.

``weather_hub``: a hub of its own with tenant ``city`` and its device type ``weather``.

``delete_topics_made_here`` (every session): each test makes its own topics under a random
prefix; the session deletes every topic it made when it ends. Left behind, they add up over
runs on one broker (a day of runs left 19 883 partition folders, past the 20 000 open files a
process may hold here, and Kafka stopped). Sessions that run at the same time on one broker (two
people, or several helpers, on one machine) cannot tell their topics apart, so a session that
ends while another is still running leaves its list for the last one to end, which deletes them
all (deleting them at once broke the other session's tests: "unknown API key" when its registry
topic went).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from psycopg import sql

from cityhub.schemas.registry import DeviceTypeSpec, TenantSpec
from cityhub.schemas.settings import HistorySettings, Settings
from cityhub.streams.history.connection import Connection, connect, read_password
from cityhub.streams.history.migrate import migrate
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry

from .hub import Hub, registry_of


async def _topics(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _delete_topics(settings: Settings, topics: set[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        names = sorted(topics)
        for start in range(0, len(names), 200):
            await admin.delete_topics(names[start : start + 200])
    finally:
        await admin.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sessions_dir(settings: Settings) -> Path:
    """Where the sessions on this stack note themselves: beside the stack's state dir."""
    folder = Path(settings.stack.state_dir).resolve().parent / "test-sessions"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _topics_to_delete(folder: Path, made: set[str]) -> set[str] | None:
    """``made`` and every list left by sessions that ended, if no other session still runs
    (their files are then removed); None while one does (``made`` is then left for it)."""
    others_running = any(
        _alive(int(f.stem.split("-")[1])) and int(f.stem.split("-")[1]) != os.getpid()
        for f in folder.glob("running-*")
    )
    if others_running:
        (folder / f"left-{os.getpid()}-{uuid.uuid4().hex[:6]}.json").write_text(
            json.dumps(sorted(made))
        )
        return None
    left = list(folder.glob("left-*.json"))
    everything = set(made)
    for f in left:
        everything.update(json.loads(f.read_text()))
        f.unlink()
    return everything


@pytest.fixture(scope="session", autouse=True)
def delete_topics_made_here() -> Iterator[None]:
    """Delete, when the session ends, every topic that was not there when it began (the
    broker's own ``__`` topics excepted), or leave the list to a session still running."""
    settings = Settings()
    before = asyncio.run(_topics(settings))
    folder = _sessions_dir(settings)
    running = folder / f"running-{os.getpid()}"
    running.touch()
    yield
    running.unlink(missing_ok=True)
    try:
        made = {t for t in asyncio.run(_topics(settings)) - before if not t.startswith("__")}
        doomed = _topics_to_delete(folder, made)
        if doomed:
            asyncio.run(asyncio.wait_for(_delete_topics(settings, doomed), timeout=120))
    except (KafkaError, OSError, TimeoutError) as e:  # tidying up only: the tests have run
        warnings.warn(f"could not delete the session's topics: {e!r}", stacklevel=1)


def settings_with_schema(schema: str, base: Settings | None = None) -> Settings:
    """``base`` (default: the environment's settings) with ``history.db_schema`` = ``schema``."""
    base = base or Settings()
    history = HistorySettings(**{**base.history.model_dump(), "db_schema": schema})
    return base.model_copy(update={"history": history})


def drop_schema(settings: Settings) -> None:
    """Drop the settings' history schema and everything in it (nothing if it is not there)."""
    history = settings.history
    with psycopg.connect(
        host=history.host,
        port=history.port,
        dbname=history.database,
        user=history.user,
        password=read_password(settings),
        autocommit=True,
    ) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(history.db_schema))
        )


async def _migrate(settings: Settings) -> None:
    async with await connect(settings, autocommit=True) as conn:
        await migrate(conn, settings.history.db_schema)


@pytest.fixture(scope="module")
def history_settings() -> Iterator[Settings]:
    """Settings whose history schema is this module's own, migrated; dropped afterwards."""
    settings = settings_with_schema(f"test_{uuid.uuid4().hex[:12]}")
    asyncio.run(_migrate(settings))
    try:
        yield settings
    finally:
        drop_schema(settings)


@pytest.fixture
async def history_conn(history_settings: Settings) -> AsyncIterator[Connection]:
    """An autocommit connection to the module's history schema."""
    async with await connect(history_settings, autocommit=True) as conn:
        yield conn


@pytest.fixture
async def weather_hub(tmp_path: Path) -> AsyncIterator[tuple[Hub, Registry]]:
    """A hub of its own and a registry on its topics, with tenant ``city`` and its public
    device type ``weather`` (Cayenne LPP payloads)."""
    hub = Hub(tmp_path)
    hub.start()
    try:
        async with registry_of(hub) as registry:
            admin = Principal.system()
            await registry.create_tenant(admin, TenantSpec(id="city", name="City"))
            spec = DeviceTypeSpec(
                id="weather", name="Weather", decoder="cayenne-lpp", classification="public"
            )
            await registry.create_type(admin, "city", spec)
            yield hub, registry
    finally:
        hub.stop()
