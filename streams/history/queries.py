"""The SQL of every read of the history store, built without a database: who may see which rows,
which rows a read asks for, in which order, how a page continues. ``reads.py`` runs them. The
reads of observations are here; those of aggregates are in ``aggregate_queries.py``, under the
visibility rule and the limits defined here.

Every statement is a fixed text with named placeholders (``%(name)s``, psycopg's) and a
parameter map: user input only ever travels as a parameter, never into the text. The text is
put together only from fragments written here (which filters are present, the sort direction).

The visibility rule, as in the subscriptions and the rest of the API (``Viewer``):

- a tenant's key sees its own tenant's rows, other tenants' ``public`` ones, and the rows its
  active agreements cover (``Viewer.grants``, ``grant_conditions.py``); rows without a tenant
  (unregistered devices) it does not see;
- an admin key sees every row;
- personal rows (classification ``personal``, or a ``data_subject``) are left out of every read
  here, for everyone: they are sealed at rest, and residents read their own through the privacy
  path (``cityhub.streams.privacy``). The one exception is ``aggregates(include_personal=True)``
  for the aggregates API, which then admits each personal window against a processing activity
  (``cityhub.streams.privacy.reads``) before it answers.

Pure: no database, no clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from cityhub.schemas import base64url
from cityhub.schemas.errors import CityhubError
from cityhub.schemas.sharing import ItemKind
from cityhub.streams.history.grant_conditions import grant_conditions
from cityhub.streams.sharing.grants import Grant, ItemFacts

PERSONAL = "personal"
PUBLIC = "public"

MAX_OBSERVATIONS = 10_000
"""The most observations one page holds (a larger ``limit`` is lowered to it; the page's
cursor continues)."""
MAX_DEVICES = 1_000
"""The most devices one read names."""
MAX_LATEST = 10_000
"""The most (device, quantity) pairs one read of the latest observations returns."""
MAX_AGGREGATES = 20_000
"""The most windows one read of aggregates may return (past it: ``ReadRejected``)."""


class ReadRejected(CityhubError):
    """A read that these functions will not run as asked (too many devices or windows, a cursor
    that is not one of ours, an empty range). ``field`` names what to change."""

    def __init__(self, detail: str, *, field: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who reads: the key of a tenant (``Viewer.of_tenant``) or an admin (``Viewer.admin()``)."""

    tenant: str | None
    """The tenant whose view this is; None only for an admin's view of all tenants."""
    grants: tuple[Grant, ...] = ()
    """The agreements ``tenant`` holds at the time of the read (``ReadAccess.active_for``):
    the rows they cover are visible too."""

    @classmethod
    def of_tenant(cls, tenant: str, grants: tuple[Grant, ...] = ()) -> Viewer:
        """Tenant ``tenant``'s own rows, other tenants' public ones and the rows ``grants``
        cover."""
        if not tenant:
            raise ValueError("a tenant viewer needs a tenant id")
        return cls(tenant, grants)

    @classmethod
    def admin(cls) -> Viewer:
        """Every tenant's rows (personal ones still left out)."""
        return cls(None)

    @property
    def is_admin(self) -> bool:
        return self.tenant is None


class Order(StrEnum):
    """The order of observations by time (ties broken by event id, the same way)."""

    ASC = "asc"
    DESC = "desc"


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL text and its parameters, ready for ``cursor.execute(text, params)``."""

    text: str
    params: Mapping[str, Any] = field(default_factory=dict)


# --- the visibility rule ----------------------------------------------------------------------


def visibility(
    viewer: Viewer,
    params: dict[str, Any],
    *,
    include_personal: bool = False,
    subject_column: bool = True,
) -> str:
    """The WHERE fragment of the visibility rule (module docstring) over the columns
    ``tenant``, ``classification`` and (``subject_column``: the observations table, which has
    it; else the aggregates table) ``data_subject``; adds its parameters to ``params``."""
    clauses = []
    if not viewer.is_admin:
        params["viewer_tenant"] = viewer.tenant
        params["public"] = PUBLIC
        kind = ItemKind.OBSERVATIONS if subject_column else ItemKind.AGGREGATES
        shared = "".join(
            f" OR {fragment}" for fragment in grant_conditions(viewer.grants, params, kind=kind)
        )
        clauses.append(
            "tenant IS NOT NULL AND (tenant = %(viewer_tenant)s OR classification = %(public)s"
            f"{shared})"
        )
    if not include_personal:
        params["personal"] = PERSONAL
        clauses.append("classification IS DISTINCT FROM %(personal)s")
        if subject_column:
            clauses.append("data_subject IS NULL")
    return " AND ".join(f"({c})" for c in clauses) or "TRUE"


# --- observations -----------------------------------------------------------------------------

OBSERVATION_COLUMNS = (
    "event_id::text AS event_text, observed_at, received_at, tenant, device_id, device_type, "
    "quantity, unit, value_number, value_text, value_boolean, area, "
    "ST_X(location) AS longitude, ST_Y(location) AS latitude, altitude, classification, "
    "doc -> 'tags' AS tags"
)
"""The columns of ``ObservationRow``, in its field order (``doc`` last when asked for). The
event id's text is named apart so that ``ORDER BY event_id`` sorts the uuid column."""


@dataclass(frozen=True, slots=True)
class ObservationCursor:
    """Where a page of observations ended: the last row's time and event id, and the order."""

    observed_at: datetime
    event_id: str
    order: Order

    def token(self) -> str:
        """An opaque, URL-safe string for a ``next`` link (``parse_cursor`` reads it)."""
        raw = orjson.dumps([self.observed_at.isoformat(), self.event_id, self.order.value])
        return base64url.encode(raw)


def parse_cursor(token: str) -> ObservationCursor:
    """The cursor ``ObservationCursor.token`` made; ReadRejected for anything else."""
    try:
        raw = base64url.decode(token)
        at, event_id, order = orjson.loads(raw)
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None or type(event_id) is not str:
            raise ValueError("not a cursor")
        return ObservationCursor(moment, str(uuid.UUID(event_id)), Order(order))
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise ReadRejected(
            "The cursor is not one this API gave out; start again without it.", field="cursor"
        ) from exc


@dataclass(frozen=True, slots=True)
class ObservationFilter:
    """Which observations: of these devices and quantities (None: any), observed in
    ``[start, end)`` (None: open)."""

    device_ids: Sequence[str] | None = None
    quantities: Sequence[str] | None = None
    start: datetime | None = None
    end: datetime | None = None
    tenant: str | None = None
    """Only this owner's rows (within what the viewer sees)."""
    area: str | None = None

    def check(self) -> None:
        """ReadRejected for an empty range, naive times or too many devices."""
        for name, moment in (("start", self.start), ("end", self.end)):
            if moment is not None and moment.tzinfo is None:
                raise ReadRejected(f"{name} needs a UTC offset.", field=name)
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ReadRejected("start must be before end.", field="end")
        if self.device_ids is not None and len(self.device_ids) > MAX_DEVICES:
            raise ReadRejected(
                f"One read names at most {MAX_DEVICES} devices; split it.", field="device_ids"
            )


def _observation_where(filt: ObservationFilter, viewer: Viewer, params: dict[str, Any]) -> str:
    clauses = [visibility(viewer, params)]
    if filt.device_ids is not None:
        clauses.append(_one_of("device_id", "device_ids", filt.device_ids, params))
    if filt.quantities is not None:
        clauses.append(_one_of("quantity", "quantities", filt.quantities, params))
    if filt.start is not None:
        params["start"] = filt.start
        clauses.append("observed_at >= %(start)s")
    if filt.end is not None:
        params["end"] = filt.end
        clauses.append("observed_at < %(end)s")
    if filt.tenant is not None:
        params["owner"] = filt.tenant
        clauses.append("tenant = %(owner)s")
    if filt.area is not None:
        params["area"] = filt.area
        clauses.append("area = %(area)s")
    return " AND ".join(clauses)


def _one_of(column: str, name: str, values: Sequence[str], params: dict[str, Any]) -> str:
    # One value as an equality: the planner then reads the index in time order and stops at
    # the page's end, where ``= ANY(array)`` makes it fetch and sort every matching row.
    if len(values) == 1:
        params[name] = values[0]
        return f"{column} = %({name})s"
    params[name] = list(values)
    return f"{column} = ANY(%({name})s::text[])"


def observations_statement(
    viewer: Viewer,
    filt: ObservationFilter,
    *,
    order: Order = Order.ASC,
    limit: int = 1000,
    after: ObservationCursor | None = None,
    with_doc: bool = False,
) -> Statement:
    """One page of observations in time order (then event id), at most ``min(limit,
    MAX_OBSERVATIONS)`` rows plus one more, which only tells the caller that a next page exists
    (keyset paging: the next page starts after ``after``, which must be of the same order)."""
    filt.check()
    if limit < 1:
        raise ReadRejected("limit must be at least 1.", field="limit")
    if after is not None and after.order is not order:
        raise ReadRejected("The cursor belongs to a read in the other order.", field="cursor")
    params: dict[str, Any] = {}
    where = _observation_where(filt, viewer, params)
    if after is not None:
        params["after_at"] = after.observed_at
        params["after_id"] = after.event_id
        compare = ">" if order is Order.ASC else "<"
        where += f" AND (observed_at, event_id) {compare} (%(after_at)s, %(after_id)s::uuid)"
    params["limit"] = page_size(limit) + 1
    direction = "ASC" if order is Order.ASC else "DESC"
    columns = OBSERVATION_COLUMNS + (", doc" if with_doc else "")
    return Statement(
        f"SELECT {columns} FROM observations WHERE {where} "  # noqa: S608 - fixed fragments; input is in params
        f"ORDER BY observed_at {direction}, event_id {direction} LIMIT %(limit)s",
        params,
    )


def page_size(limit: int) -> int:
    """The rows a page holds for a requested ``limit``."""
    return max(1, min(limit, MAX_OBSERVATIONS))


def count_observations_statement(viewer: Viewer, filt: ObservationFilter) -> Statement:
    """How many observations ``filt`` selects (for ``$count``-like totals; costs a scan of the
    matching rows, so callers bound the range)."""
    filt.check()
    params: dict[str, Any] = {}
    where = _observation_where(filt, viewer, params)
    return Statement(f"SELECT count(*) FROM observations WHERE {where}", params)  # noqa: S608 - fixed fragments; input is in params


def latest_statement(
    viewer: Viewer,
    device_ids: Sequence[str],
    quantities: Sequence[str] | None = None,
    *,
    since: datetime | None = None,
) -> Statement:
    """The latest visible observation of each (device, quantity) of ``device_ids`` (and of
    ``quantities`` when given), observed at or after ``since`` when given.

    Without ``quantities`` the quantities each device has are found by a skip scan of the
    (device_id, quantity, observed_at) index (one probe per quantity, not a scan of the
    device's rows); then each pair's latest row is one index probe."""
    if not device_ids:
        raise ReadRejected("Name at least one device.", field="device_ids")
    if len(device_ids) > MAX_DEVICES:
        raise ReadRejected(
            f"One read names at most {MAX_DEVICES} devices; split it.", field="device_ids"
        )
    if since is not None and since.tzinfo is None:
        raise ReadRejected("since needs a UTC offset.", field="since")
    params: dict[str, Any] = {"device_ids": list(dict.fromkeys(device_ids))}
    where = visibility(viewer, params)
    if since is not None:
        params["since"] = since
        where += " AND observed_at >= %(since)s"
    if quantities is not None:
        params["quantities"] = list(dict.fromkeys(quantities))
        pairs = (
            "SELECT d AS device_id, q AS quantity FROM unnest(%(device_ids)s::text[]) AS d "
            "CROSS JOIN unnest(%(quantities)s::text[]) AS q"
        )
    else:
        pairs = (
            "WITH RECURSIVE skip(device_id, quantity) AS ("
            "SELECT d, (SELECT min(quantity) FROM observations WHERE device_id = d) "
            "FROM unnest(%(device_ids)s::text[]) AS d "
            "UNION ALL "
            "SELECT s.device_id, (SELECT min(quantity) FROM observations "
            "WHERE device_id = s.device_id AND quantity > s.quantity) "
            "FROM skip AS s WHERE s.quantity IS NOT NULL) "
            "SELECT device_id, quantity FROM skip WHERE quantity IS NOT NULL"
        )
    params["most"] = MAX_LATEST
    return Statement(
        f"SELECT o.* FROM ({pairs}) AS p CROSS JOIN LATERAL ("  # noqa: S608 - fixed fragments; input is in params
        f"SELECT {OBSERVATION_COLUMNS} FROM observations "
        f"WHERE device_id = p.device_id AND quantity = p.quantity AND {where} "
        "ORDER BY observed_at DESC, event_id DESC LIMIT 1) AS o "
        "ORDER BY o.device_id, o.quantity LIMIT %(most)s",
        params,
    )


@dataclass(frozen=True, slots=True)
class ObservationRow:
    """One observation as the history store keeps it (never a personal one: see the module)."""

    event_id: str
    observed_at: datetime
    received_at: datetime
    tenant: str | None
    device_id: str
    device_type: str | None
    quantity: str
    unit: str | None
    value: float | str | bool | None
    """The number, text or boolean observed (whichever column holds it)."""
    area: str | None
    longitude: float | None
    latitude: float | None
    altitude: float | None
    classification: str | None
    tags: tuple[str, ...] = ()
    """The observation's tags (what an agreement may select by)."""
    doc: dict[str, Any] | None = None
    """The canonical observation as on Kafka, when the read asked for it (``with_doc``)."""

    @classmethod
    def from_record(cls, record: Sequence[Any]) -> ObservationRow:
        """A row of ``OBSERVATION_COLUMNS`` (and ``doc``) as the driver returns it."""
        number, text, boolean = record[8], record[9], record[10]
        value: float | str | bool | None = (
            number if number is not None else text if text is not None else boolean
        )
        return cls(
            event_id=record[0],
            observed_at=record[1],
            received_at=record[2],
            tenant=record[3],
            device_id=record[4],
            device_type=record[5],
            quantity=record[6],
            unit=record[7],
            value=value,
            area=record[11],
            longitude=record[12],
            latitude=record[13],
            altitude=record[14],
            classification=record[15],
            tags=_tags(record[16]) if len(record) > 16 else (),
            doc=record[17] if len(record) > 17 else None,
        )

    def facts(self) -> ItemFacts:
        """What the agreements' rule needs of the row (``ReadAccess``, usage counts)."""
        return ItemFacts(
            tenant=self.tenant,
            kind=ItemKind.OBSERVATIONS,
            quantity=self.quantity,
            classification=self.classification,
            device_id=self.device_id,
            device_type=self.device_type,
            area=self.area,
            tags=self.tags,
        )

    def cursor(self, order: Order) -> ObservationCursor:
        """The cursor of a page that ends with this row."""
        return ObservationCursor(self.observed_at, self.event_id, order)


def _tags(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(tag for tag in value if isinstance(tag, str))
