"""The history store's connection pool on the real PostgreSQL: a connection the server ended
while it sat idle in the pool (a restart, or ``pg_terminate_backend``: psycopg's
``AdminShutdown``) never reaches a read, through the pool itself, SensorThings' reads and
NGSI-LD's; a server that cannot be reached still fails the loan at once, without a retry loop.

The stack's PostgreSQL is not restarted: a second connection ends the pooled connection's
backend, which is what a restart does to it."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from cityhub.schemas.history_settings import HistorySettings
from cityhub.schemas.settings import Settings
from cityhub.streams.history.connection import Connection, ConnectionPool, connect
from cityhub.streams.history.queries import Viewer
from cityhub.streams.ngsi_ld.source import HistoryValues
from cityhub.streams.sensorthings.observations import HistoryReads, ObservationQuery

from .hub import free_port

pytestmark = pytest.mark.integration


async def backend_pid(conn: Connection) -> int:
    cursor = await conn.execute("SELECT pg_backend_pid()")
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


def on_port(settings: Settings, port: int) -> Settings:
    """``settings`` with the history store on another loopback port."""
    history = HistorySettings(**{**settings.history.model_dump(), "port": port})
    return settings.model_copy(update={"history": history})


async def terminate(settings: Settings, *pids: int) -> None:
    """End the backends ``pids`` from another connection and wait until they are gone."""
    async with await connect(settings, autocommit=True) as admin:
        for pid in pids:
            await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        for _ in range(200):
            cursor = await admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),)
            )
            row = await cursor.fetchone()
            if row == (0,):
                return
            await asyncio.sleep(0.02)
    raise AssertionError(f"backends {pids} did not end")


async def test_connections_the_server_ended_while_idle_are_replaced(
    history_settings: Settings,
) -> None:
    pool = ConnectionPool(history_settings, size=2)
    try:
        async with pool.connection() as first, pool.connection() as second:
            pids = {await backend_pid(first), await backend_pid(second)}
        await terminate(history_settings, *pids)  # both idle connections are now dead
        async with pool.connection() as conn:
            fresh = await backend_pid(conn)
        assert fresh not in pids
        async with pool.connection() as conn:
            assert await backend_pid(conn) == fresh  # a live idle connection is lent again
    finally:
        await pool.close()


async def test_sensorthings_and_ngsi_reads_after_their_connection_was_ended(
    history_settings: Settings,
) -> None:
    reads = HistoryReads(ConnectionPool(history_settings, size=1), refresh_seconds=0.0)
    values = HistoryValues(history_settings, pool_size=1)
    viewer = Viewer.of_tenant("acme")
    query = ObservationQuery(where=(), params={}, order="observed_at DESC", limit=10, offset=0)
    try:
        assert await reads.count(viewer, ["aq-1"], query) == 0
        assert await values.latest(viewer, ["aq-1"]) == {"aq-1": []}
        pids = []
        for pool in (reads._pool, values._pool):
            async with pool.connection() as conn:
                pids.append(await backend_pid(conn))
        await terminate(history_settings, *pids)
        assert await reads.count(viewer, ["aq-1"], query) == 0
        assert await reads.page(viewer, ["aq-1"], query) == []
        assert await values.latest(viewer, ["aq-1"]) == {"aq-1": []}
    finally:
        await reads.close()
        await values.close()


async def test_a_server_that_cannot_be_reached_fails_the_loan_at_once(
    history_settings: Settings,
) -> None:
    unreachable = on_port(history_settings, free_port())
    pool = ConnectionPool(unreachable, size=1)
    # A connection made while the server was up, ended since, as the pool would hold it.
    dead = await connect(history_settings, autocommit=True)
    await terminate(history_settings, await backend_pid(dead))
    pool._idle.append(dead)
    try:
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            async with pool.connection():
                pass
        assert time.monotonic() - started < 3
        assert dead.closed
        assert pool._idle == []
    finally:
        await pool.close()
        await dead.close()


class FreezingRelay:
    """A TCP relay to PostgreSQL that can stop passing bytes on, both ways: a server that takes
    connections and no longer answers (SIGSTOP, a hung host), without stopping the shared one."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.thawed = asyncio.Event()
        self.thawed.set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.thawed.wait()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    def close(self) -> None:
        assert self.server is not None
        self.server.close()


async def test_a_server_that_stops_answering_fails_loans_at_once_after_the_first(
    history_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review froze PostgreSQL: reads queued behind each other's 10 s timeouts (30 to 50 s
    each). Now the first loan gives up after the idle check's 2 s, the next fail at once, and
    once the server answers again (and the pause is over) loans work."""
    monkeypatch.setattr("cityhub.streams.history.connection.DOWN_FOR_S", 1.5)
    relay = FreezingRelay(history_settings.history.port)
    pool = ConnectionPool(on_port(history_settings, await relay.start()), size=4)
    try:
        async with pool.connection() as conn:
            await backend_pid(conn)  # one idle connection, through the relay
        relay.thawed.clear()
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            async with pool.connection():
                pass
        assert time.monotonic() - started < 3.5

        async def loan() -> float:
            began = time.monotonic()
            with pytest.raises(psycopg.OperationalError, match="did not answer in time"):
                async with pool.connection():
                    pass
            return time.monotonic() - began

        assert max(await asyncio.gather(*(loan() for _ in range(6)))) < 0.5
        relay.thawed.set()
        await asyncio.sleep(1.6)
        async with pool.connection() as conn:
            assert await backend_pid(conn) > 0
    finally:
        relay.thawed.set()
        await pool.close()
        relay.close()
