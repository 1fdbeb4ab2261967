"""Reading the history store: the functions every read interface uses (the aggregates API,
SensorThings, NGSI-LD). Each takes an open connection (``connection.connect`` or a
``ConnectionPool`` loan) and a ``Viewer``, runs one statement of ``queries.py`` and returns
typed rows.

What they promise (the rule itself is in ``queries.py``):

- a ``Viewer.of_tenant(t, grants)`` gets ``t``'s rows, other tenants' ``public`` rows and the
  rows the active agreements ``grants`` cover, an ``Viewer.admin()`` every tenant's
  (``read_under`` then says how many rows each agreement let through, for the usage counts);
  personal rows (classification ``personal`` or a data subject) are never returned, except
  ``aggregates(include_personal=True)``, whose caller must admit each personal window against
  a processing activity before it shows it (``cityhub.streams.privacy.reads.PersonalReads``);
- results are bounded: a page of observations holds at most ``queries.MAX_OBSERVATIONS`` rows
  and says whether more follow, a read of aggregates raises ``ReadRejected`` past
  ``queries.MAX_AGGREGATES`` windows, a read of the latest observations names at most
  ``queries.MAX_DEVICES`` devices;
- ``ReadRejected`` for a read that cannot be run as asked (its ``field`` says what to change);
  ``psycopg.Error`` when the database fails.

Example::

    async with pool.connection() as conn:
        page = await observations(
            conn, Viewer.of_tenant("utrecht"),
            ObservationFilter(device_ids=["aq-1"], start=t0, end=t1),
            limit=100,
        )
        more = await observations(conn, viewer, filt, limit=100, after=page.next)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cityhub.streams.history.aggregate_queries import (
    AggregateFilter,
    Group,
    aggregates_statement,
)
from cityhub.streams.history.connection import Connection
from cityhub.streams.history.grant_conditions import read_under as _read_under
from cityhub.streams.history.queries import (
    MAX_AGGREGATES,
    ObservationCursor,
    ObservationFilter,
    ObservationRow,
    Order,
    ReadRejected,
    Statement,
    Viewer,
    count_observations_statement,
    latest_statement,
    observations_statement,
    page_size,
    parse_cursor,
)


@dataclass(frozen=True, slots=True)
class ObservationPage:
    """One page of observations and where the next one starts (None: this was the last)."""

    items: list[ObservationRow]
    next: ObservationCursor | None


async def _fetch(conn: Connection, statement: Statement) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cur:
        await cur.execute(statement.text, statement.params)
        return await cur.fetchall()


async def observations(
    conn: Connection,
    viewer: Viewer,
    filt: ObservationFilter,
    *,
    order: Order = Order.ASC,
    limit: int = 1000,
    after: ObservationCursor | None = None,
    with_doc: bool = False,
) -> ObservationPage:
    """The observations ``filt`` selects that ``viewer`` may see, by time then event id in
    ``order``: at most ``min(limit, MAX_OBSERVATIONS)``, after the cursor ``after`` (the
    previous page's ``next``, same order). ``with_doc``: each row carries its canonical
    observation document too."""
    statement = observations_statement(
        viewer, filt, order=order, limit=limit, after=after, with_doc=with_doc
    )
    rows = [ObservationRow.from_record(r) for r in await _fetch(conn, statement)]
    size = page_size(limit)
    if len(rows) > size:
        rows = rows[:size]
        return ObservationPage(rows, rows[-1].cursor(order))
    return ObservationPage(rows, None)


async def count_observations(conn: Connection, viewer: Viewer, filt: ObservationFilter) -> int:
    """How many observations ``filt`` selects that ``viewer`` may see."""
    rows = await _fetch(conn, count_observations_statement(viewer, filt))
    return int(rows[0][0])


async def latest_observations(
    conn: Connection,
    viewer: Viewer,
    device_ids: Sequence[str],
    quantities: Sequence[str] | None = None,
    *,
    since: datetime | None = None,
) -> list[ObservationRow]:
    """The latest observation ``viewer`` may see of each (device, quantity) of ``device_ids``
    (of ``quantities`` only, when given; observed at or after ``since``, when given), ordered
    by device then quantity. A pair with no visible observation is absent."""
    statement = latest_statement(viewer, device_ids, quantities, since=since)
    return [ObservationRow.from_record(r) for r in await _fetch(conn, statement)]


async def aggregates(
    conn: Connection,
    viewer: Viewer,
    filt: AggregateFilter,
    *,
    include_personal: bool = False,
    limit: int = MAX_AGGREGATES,
) -> list[dict[str, Any]]:
    """The aggregate documents (exactly as on Kafka, current revision) of the windows ``filt``
    selects that ``viewer`` may see, by window start, size, quantity, unit and id.
    ``ReadRejected`` when more than ``limit`` (at most ``MAX_AGGREGATES``) windows match.
    ``include_personal``: personal windows too, for a caller that admits them itself."""
    statement = aggregates_statement(viewer, filt, include_personal=include_personal, limit=limit)
    docs = [row[0] for row in await _fetch(conn, statement)]
    most = min(limit, MAX_AGGREGATES)
    if len(docs) > most:
        raise ReadRejected(
            f"More than {most} windows match; ask for one quantity, one windowSize or a "
            "shorter range.",
            field="windowSize",  # the API's query parameter to change
        )
    return docs


def read_under(viewer: Viewer, rows: Sequence[ObservationRow]) -> dict[str, int]:
    """How many of ``rows`` (a read's answer to ``viewer``) each agreement let through, by
    agreement id (``ReadAccess.count`` counts them)."""
    return _read_under(viewer.tenant, viewer.grants, (row.facts() for row in rows))


__all__ = [
    "AggregateFilter",
    "Group",
    "ObservationCursor",
    "ObservationFilter",
    "ObservationPage",
    "ObservationRow",
    "Order",
    "ReadRejected",
    "Viewer",
    "aggregates",
    "count_observations",
    "latest_observations",
    "observations",
    "parse_cursor",
    "read_under",
]
