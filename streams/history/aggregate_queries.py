"""The SQL of the history store's reads of aggregates, built without a database: which windows of
which group a read asks for, in the Kafka reader's order. ``reads.py`` runs them.

Every statement is a fixed text with named placeholders and a parameter map, under the
visibility rule of ``queries.py`` (``visibility``, ``Viewer``), which also holds the limits of
every read (``MAX_AGGREGATES``).

Pure: no database, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cityhub.schemas.aggregate import MAX_WINDOW_SECONDS
from cityhub.streams.history.queries import (
    MAX_AGGREGATES,
    ReadRejected,
    Statement,
    Viewer,
    visibility,
)


@dataclass(frozen=True, slots=True)
class Group:
    """A group of aggregates: one device (of any tenant), or one area of one tenant."""

    kind: str
    """``device`` or ``area`` (the aggregate's ``grouping``)."""
    key: str
    """The device id or the area."""
    tenant: str | None = None
    """For an area: its tenant (areas are per tenant). None for a device."""

    @classmethod
    def device(cls, device_id: str) -> Group:
        return cls("device", device_id)

    @classmethod
    def area(cls, tenant: str, area: str) -> Group:
        return cls("area", area, tenant)

    @classmethod
    def of_record_key(cls, key: str) -> Group:
        """The group of an aggregates record key (``device/<id>``, ``area/<tenant>/<area>``,
        as ``cityhub.streams.aggregation.query`` builds them)."""
        kind, _, rest = key.partition("/")
        if kind == "device" and rest:
            return cls.device(rest)
        if kind == "area":
            tenant, sep, area = rest.partition("/")
            if sep and area:
                return cls.area(tenant, area)
        raise ValueError(f"not a group key: {key!r}")


@dataclass(frozen=True, slots=True)
class AggregateFilter:
    """The windows of ``group`` that overlap ``[start, end)`` (``window_end > start`` and
    ``window_start < end``), of one quantity and one window size (seconds) when given."""

    group: Group
    start: datetime
    end: datetime
    quantity: str | None = None
    window_size: int | None = None


def aggregates_statement(
    viewer: Viewer,
    filt: AggregateFilter,
    *,
    include_personal: bool = False,
    limit: int = MAX_AGGREGATES,
) -> Statement:
    """The current revision (the only one the table keeps) of every window ``filt`` selects
    that ``viewer`` may see, as the aggregate documents, ordered as the Kafka reader orders
    them (start, size, quantity, unit, id); at most ``limit`` rows plus one, which tells the
    caller there were more."""
    if filt.start.tzinfo is None or filt.end.tzinfo is None:
        raise ReadRejected("start and end need a UTC offset.", field="start")
    if filt.start >= filt.end:
        raise ReadRejected("from must be before to.", field="to")
    params: dict[str, Any] = {
        "kind": filt.group.kind,
        "key": filt.group.key,
        "start": filt.start,
        "end": filt.end,
        # window_end > start means window_start > start - size: bounds window_start from below
        # too, so that only the partitions that can hold a match are read.
        "earliest": filt.start - timedelta(seconds=filt.window_size or MAX_WINDOW_SECONDS),
        "limit": max(1, min(limit, MAX_AGGREGATES)) + 1,
    }
    clauses = [
        "group_kind = %(kind)s",
        "group_key = %(key)s",
        "window_start < %(end)s",
        "window_start > %(earliest)s",
        "window_end > %(start)s",
        visibility(viewer, params, include_personal=include_personal, subject_column=False),
    ]
    if filt.group.tenant is not None:
        params["group_tenant"] = filt.group.tenant
        clauses.append("tenant = %(group_tenant)s")
    if filt.quantity is not None:
        params["quantity"] = filt.quantity
        clauses.append("quantity = %(quantity)s")
    if filt.window_size is not None:
        params["window_size"] = filt.window_size
        clauses.append("window_size = %(window_size)s")
    return Statement(
        "SELECT doc FROM aggregates WHERE "  # noqa: S608 - fixed fragments; input is in params
        + " AND ".join(clauses)
        + ' ORDER BY window_start, window_size, quantity COLLATE "C", '
        "coalesce(unit, '') COLLATE \"C\", aggregate_id LIMIT %(limit)s",
        params,
    )


def as_utc(ms: int) -> datetime:
    """An aware UTC datetime of milliseconds since the epoch."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
