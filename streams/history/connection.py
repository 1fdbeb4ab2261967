"""Connections to the history store (PostgreSQL), as ``Settings.history`` describes it.

Every connection puts ``history.db_schema`` first on its ``search_path`` (then ``public``,
where PostGIS lives), so the same SQL reads and writes a test's own schema or the real one.
The password is read from a file, never from the environment or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import pq
from psycopg.rows import TupleRow

from cityhub.schemas.errors import ConfigurationError
from cityhub.schemas.settings import HistorySettings, Settings
from cityhub.streams.devtools.stack.layout import StackLayout

log = logging.getLogger("cityhub.history")

Connection = psycopg.AsyncConnection[TupleRow]
"""An open connection to the history store (rows as tuples)."""


def password_path(settings: Settings) -> Path:
    """The file holding the history user's password: ``history.password_file``, else the one
    ``cityhub stack up`` wrote in the stack's state."""
    configured = settings.history.password_file
    if configured is not None:
        return Path(configured).expanduser()
    return StackLayout.under(settings.stack.state_dir).postgres_password


def read_password(settings: Settings) -> str:
    """The history user's password; ``ConfigurationError`` saying what to do when the file is
    missing or empty."""
    path = password_path(settings)
    try:
        password = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigurationError(
            f"no password file for the history store at {path}: run `cityhub stack up` (it "
            "starts PostgreSQL and writes it) or set CITYHUB_HISTORY__PASSWORD_FILE"
        ) from None
    if not password:
        raise ConfigurationError(f"the history store's password file {path} is empty")
    return password


def search_path_option(history: HistorySettings) -> str:
    """The libpq ``options`` that make ``db_schema`` (then ``public``) the search path."""
    # db_schema is validated as a plain lower-case identifier: nothing here needs quoting.
    return f"-c search_path={history.db_schema},public"


async def connect(
    settings: Settings, *, application_name: str = "cityhub", autocommit: bool = False
) -> Connection:
    """Open a connection to the history store with the search path set.

    It never prepares statements: psycopg prepares a statement run five times, and PostgreSQL
    then plans it once for every parameter; the latest values of one device took 200 ms with
    the plan made for a thousand devices, 0.6 ms with its own plan.

    Raises ``ConfigurationError`` without a password file, ``psycopg.OperationalError`` when the
    server cannot be reached or refuses the login.
    """
    history = settings.history
    return await psycopg.AsyncConnection.connect(
        host=history.host,
        port=history.port,
        dbname=history.database,
        user=history.user,
        password=read_password(settings),
        connect_timeout=max(1, round(history.connect_timeout_seconds)),
        application_name=application_name,
        options=search_path_option(history),
        autocommit=autocommit,
        prepare_threshold=None,
    )


CHECK_TIMEOUT_S = 2.0
"""How long an idle connection's check may take before the store is counted as not answering."""
DOWN_FOR_S = 5.0
"""How long loans are refused at once after the store did not answer in time."""


class ConnectionPool:
    """A few autocommit connections to the history store, opened on demand and reused.

    ``connection()`` lends one for the length of an ``async with``; at most ``size`` are lent at
    once (the others wait). A connection that broke, or that is handed back inside a
    transaction, is rolled back or closed instead of being lent again, so one failed query
    never poisons the next borrower. An idle connection is checked with an empty statement (one
    round trip, as psycopg_pool's ``check_connection`` does) before it is lent: one the server
    ended while it sat in the pool (a restarted PostgreSQL, ``pg_terminate_backend``: psycopg
    only finds out on its next use) is closed and the next idle one, else a new one, is lent,
    so the first request after a restart does not fail. A server that is down still fails the
    loan at once: a dead connection's check fails without waiting, and the one new connection
    raises ``psycopg.OperationalError``. ``close()`` closes the idle ones and refuses new loans.

    A server that takes connections but does not answer (SIGSTOP, a hung host) costs one loan
    at most ``CHECK_TIMEOUT_S`` (an idle connection's check) or the connect timeout; then the
    pool counts the store as down for ``DOWN_FOR_S`` and refuses loans at once with
    ``psycopg.OperationalError`` (a 503 for the reader), instead of having every request wait
    its turn behind the others' timeouts (a review saw 30 to 50 s per read).
    """

    def __init__(
        self, settings: Settings, *, size: int = 4, application_name: str = "cityhub"
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one connection")
        self._settings = settings
        self._application_name = application_name
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Connection] = []
        self._closed = False
        self._down_until = 0.0
        self._closing: set[asyncio.Future[None]] = set()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """Lend a connection (autocommit; use ``conn.transaction()`` for several statements)."""
        if self._closed:
            raise RuntimeError("the history connection pool is closed")
        async with self._slots:
            conn = await self._take()
            try:
                yield conn
            finally:
                await self._give_back(conn)

    async def _take(self) -> Connection:
        self._refuse_while_down()
        while self._idle:
            conn = self._idle.pop()
            if await self._usable(conn):
                return conn
            self._refuse_while_down()  # a check that timed out: the others would time out too
        try:
            return await connect(
                self._settings, application_name=self._application_name, autocommit=True
            )
        except psycopg.OperationalError:
            self._mark_down()
            raise

    def _refuse_while_down(self) -> None:
        if time.monotonic() < self._down_until:
            raise psycopg.OperationalError(
                "the history store did not answer in time just now; it is asked again shortly"
            )

    def _mark_down(self) -> None:
        self._down_until = time.monotonic() + DOWN_FOR_S

    async def _usable(self, conn: Connection) -> bool:
        """Whether an idle connection still answers; one that does not is closed."""
        if conn.closed or conn.broken:
            return False
        # Bounded: a connection to a host gone silent (no reset) would otherwise wait as long as
        # TCP does. A server that answers at all answers this in milliseconds. The check runs as
        # a task of its own and is left behind when it takes too long: psycopg's own clean-up
        # of a cancelled statement (a cancel request to the same silent server) would hold the
        # loan for the connect timeout again.
        check = asyncio.ensure_future(conn.execute(""))
        done, _ = await asyncio.wait(
            {check}, timeout=min(CHECK_TIMEOUT_S, self._settings.history.connect_timeout_seconds)
        )
        if not done:
            self._mark_down()
            log.info("history pool: an idle connection did not answer its check in time")
            self._abandon(check, conn)
            return False
        exc = check.exception()
        if exc is not None:
            log.info(
                "history pool: dropping an idle connection that no longer answers (%s: %s)",
                type(exc).__name__,
                exc,
            )
            with contextlib.suppress(psycopg.Error):
                await conn.close()
            return False
        return True

    def _abandon(self, check: asyncio.Future[Any], conn: Connection) -> None:
        """Close a connection whose check hangs, in the background (kept referenced)."""

        async def close() -> None:
            check.cancel()
            with contextlib.suppress(BaseException):
                await check
            with contextlib.suppress(psycopg.Error):
                await conn.close()

        task = asyncio.ensure_future(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _give_back(self, conn: Connection) -> None:
        if conn.closed or conn.broken:
            return
        if self._closed:
            await conn.close()
            return
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            try:
                await conn.rollback()
            except psycopg.Error:
                log.info("history pool: dropping a connection that could not roll back")
                await conn.close()
                return
        self._idle.append(conn)

    async def close(self) -> None:
        """Close the idle connections; lent ones are closed as they come back."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
        for task in list(self._closing):  # connections abandoned to a silent server
            task.cancel()
        await asyncio.gather(*self._closing, return_exceptions=True)
