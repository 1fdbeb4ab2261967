"""SensorThings' reads of the history store: the Datastreams seen (device x quantity pairs,
reused for ``sensorthings.datastreams_refresh_seconds``) and pages of Observations.

Every statement carries the history store's visibility rule (``history.queries.visibility``:
no personal rows for anyone, a tenant's rows and other tenants' public ones) and is limited to
the devices the viewer may see in the registry now, so that an Observation is never shown
whose Thing is not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cityhub.streams.history.connection import ConnectionPool
from cityhub.streams.history.queries import Viewer as HistoryViewer
from cityhub.streams.history.queries import visibility
from cityhub.streams.sensorthings.ids import observation_id
from cityhub.streams.sensorthings.model import Entity, StreamFacts

_STREAMS = """
SELECT device_id, quantity, min(unit), min(observed_at), max(observed_at),
       bool_and(value_number IS NOT NULL)
FROM observations
WHERE {visible} {since}
GROUP BY device_id, quantity
"""

FULL_READ_SECONDS = 3600.0
"""How often the Datastreams are read from the whole table; in between, only the rows observed
since the last read (less ``LATE_SECONDS``) are grouped, which touches the newest partitions
only. A reading that arrives later than that with an old time, or a stream whose rows were all
erased or expired, shows (or goes) at the next whole read."""
LATE_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class ObservationQuery:
    """One read of Observations: the SQL conditions (``where``, with ``params``), the sort,
    and the window of rows."""

    where: Sequence[str]
    params: dict[str, Any]
    order: str
    limit: int
    offset: int


def observation_entity(row: Sequence[Any]) -> Entity:
    """The Observation entity of a row ``(event_id, observed_at, received_at, device_id,
    quantity, result, quality)``; its key is ``(device_id, quantity)``. ``resultQuality`` is
    the observation's quality flags (docs/quality.md), present only when it has any."""
    event, observed_at, received_at, device_id, quantity, result, quality = row
    props = {"phenomenonTime": observed_at, "resultTime": received_at, "result": result}
    flags = quality_flags(quality)
    if flags:
        props["resultQuality"] = flags
    return Entity("Observation", observation_id(event), props, (device_id, quantity))


def quality_flags(stored: object) -> list[str]:
    """The flags of a stored document's ``quality`` (absent in rows from before the flags;
    anything but a list of names counts as none)."""
    if not isinstance(stored, list):
        return []
    return [flag for flag in stored if isinstance(flag, str)][:8]


class HistoryReads:
    """The history store as SensorThings reads it, over a small connection pool."""

    def __init__(self, pool: ConnectionPool, *, refresh_seconds: float) -> None:
        self._pool = pool
        self._refresh = refresh_seconds
        self._streams: list[StreamFacts] = []
        self._streams_read = -1.0
        self._full_read = -1.0
        self._since: datetime | None = None
        self._lock = asyncio.Lock()
        self.version = 0
        """Counts the times the Datastreams were read (a cache of entities keys on it)."""

    async def streams(self) -> list[StreamFacts]:
        """Every device x quantity pair in history with its unit and time span (non-personal
        rows of every tenant: the graph applies the viewer's rule), at most
        ``refresh_seconds`` old."""
        async with self._lock:
            if self._streams_read >= 0 and time.monotonic() - self._streams_read < self._refresh:
                return self._streams
            now = time.monotonic()
            whole = self._full_read < 0 or now - self._full_read >= FULL_READ_SECONDS
            params: dict[str, Any] = {}
            since = ""
            if not whole and self._since is not None:
                params["sta_since"] = self._since
                since = "AND observed_at >= %(sta_since)s"
            text = _STREAMS.format(visible=visibility(HistoryViewer.admin(), params), since=since)
            started = datetime.now(UTC)
            async with self._pool.connection() as conn:
                cursor = await conn.execute(text, params)
                rows = await cursor.fetchall()
            fresh = [StreamFacts(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]
            self._streams = fresh if whole else merge_streams(self._streams, fresh)
            self._since = started - timedelta(seconds=LATE_SECONDS)
            self._streams_read = now
            if whole:
                self._full_read = now
            self.version += 1
            return self._streams

    @staticmethod
    def _where(
        viewer: HistoryViewer, devices: Sequence[str], query: ObservationQuery
    ) -> tuple[str, dict[str, Any]]:
        params = dict(query.params)
        clauses = [visibility(viewer, params), "device_id = ANY(%(visible_devices)s)"]
        params["visible_devices"] = list(devices)
        clauses.extend(query.where)
        return " AND ".join(clauses), params

    async def page(
        self, viewer: HistoryViewer, devices: Sequence[str], query: ObservationQuery
    ) -> list[Entity]:
        """The Observations of one page, in the query's order."""
        if not devices:
            return []
        where, params = self._where(viewer, devices, query)
        params["sta_limit"] = query.limit
        params["sta_offset"] = query.offset
        # The text is made of this package's fragments only; every value is a parameter.
        columns = (
            "event_id, observed_at, received_at, device_id, quantity, doc->'value', doc->'quality'"
        )
        window = "LIMIT %(sta_limit)s OFFSET %(sta_offset)s"
        text = f"SELECT {columns} FROM observations WHERE {where} ORDER BY {query.order} {window}"  # noqa: S608
        async with self._pool.connection() as conn:
            cursor = await conn.execute(text, params)
            rows = await cursor.fetchall()
        return [observation_entity(row) for row in rows]

    async def count(
        self, viewer: HistoryViewer, devices: Sequence[str], query: ObservationQuery
    ) -> int:
        """How many Observations the query's conditions accept (``$count``)."""
        if not devices:
            return 0
        where, params = self._where(viewer, devices, query)
        async with self._pool.connection() as conn:
            statement = f"SELECT count(*) FROM observations WHERE {where}"  # noqa: S608 (ours)
            cursor = await conn.execute(statement, params)
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        """Close the pool's connections."""
        await self._pool.close()


def merge_streams(known: Sequence[StreamFacts], fresh: Sequence[StreamFacts]) -> list[StreamFacts]:
    """``known`` updated with the facts of a read of recent rows: new pairs added, the time
    span of known ones widened."""
    merged = {(s.device_id, s.quantity): s for s in known}
    for new in fresh:
        old = merged.get((new.device_id, new.quantity))
        if old is None:
            merged[(new.device_id, new.quantity)] = new
            continue
        merged[(new.device_id, new.quantity)] = StreamFacts(
            new.device_id,
            new.quantity,
            old.unit or new.unit,
            min(old.first, new.first),
            max(old.last, new.last),
            old.numeric and new.numeric,
        )
    return list(merged.values())
