"""``GET /api/v1/tenants/{tenant}/aggregates``: a device's or an area's window aggregates over a
time range, read from the aggregates topic (``cityhub.streams.aggregation.query``) or, for any
range but a short recent one, from the history store when it is enabled
(``cityhub.streams.aggregation.reader.aggregate_source``); the answer's ``source`` says which.

Who sees what, the same rule as everywhere in the API and the subscriptions:
- a key reads in its own tenant only (an admin in any); another tenant is not found (404);
- ``area=`` is the path tenant's area (areas are per tenant), or ``areaTenant``'s when that
  names another tenant with an active agreement that shares its area aggregates (else 404);
- ``deviceId=`` is looked up in the registry: an unknown device is 404; another tenant's device
  is 404 too unless its device type is ``public`` (then its public windows show) or an active
  agreement of the path tenant covers it (``cityhub.streams.sharing.grants``);
- every window returned passes ``may_see(path tenant, its tenant, its classification)`` on its
  current revision (the path tenant's own windows, other tenants' when ``public``) or is
  covered by one of the path tenant's active agreements; each window read under an agreement
  is counted for it (``Channel.READ``);
- a window classified ``personal`` is returned only for the processing activity the request
  names (``processingActivity=<slug>``) when it admits it, and the read is logged
  (``cityhub.streams.privacy.reads``); another tenant's, under an agreement of a personal
  offer, when the provider's activity the offer names admits it (logged in the provider's
  processing log); the answer counts what it withheld.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from cityhub.schemas.aggregate import MAX_WINDOW_SECONDS
from cityhub.schemas.quantities import canonical_quantity
from cityhub.schemas.registry import Classification, Role
from cityhub.schemas.sharing import ItemKind
from cityhub.streams.aggregation.query import (
    AggregateQuery,
    AggregateSource,
    AggregatesUnavailable,
    QueryRejected,
    area_group,
    check_range,
    device_group,
    read_under,
    to_ms,
    visible_under,
)
from cityhub.streams.api.bodies import query_text, query_time
from cityhub.streams.api.handlers import Call, json_response
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.privacy.purpose import PERSONAL
from cityhub.streams.privacy.reads import PersonalReads, withheld_note
from cityhub.streams.service_errors import FieldError, NotFound
from cityhub.streams.sharing.grants import Grant
from cityhub.streams.sharing.read_access import (
    NO_SHARING,
    ReadAccess,
    covering_area,
    covering_device,
    device_item,
    registry_device_facts,
)

AGGREGATES_KEY = web.AppKey("aggregates", AggregateSource)
"""The app's aggregate reader (``build_api`` sets it)."""
PERSONAL_READS_KEY = web.AppKey("personal_reads", PersonalReads)
"""The purpose check and the log of personal aggregates (``build_api(personal_reads=)``);
without it personal aggregates are withheld."""
READ_ACCESS_KEY = web.AppKey("read_access", ReadAccess)
"""The agreements every read of the API applies (``build_api(read_access=)``); without it, none."""


class AggregateOut(BaseModel):
    """One window's aggregate, its current revision (see ``cityhub.schemas.aggregate``)."""

    model_config = ConfigDict(extra="forbid")

    aggregate_id: str
    grouping: Literal["device", "area"]
    key: str
    """The device id or the area, as ``grouping`` says."""
    tenant: str | None
    classification: str | None
    device_id: str | None
    area: str | None
    quantity: str
    unit: str | None
    window_size: int
    """Seconds."""
    window_start: str
    window_end: str
    count: int
    """The readings in min, max, sum and mean (without the flagged ones when the hub keeps them
    out: ``aggregation.exclude_flagged``)."""
    min: float | None
    max: float | None
    sum: float | None
    mean: float | None
    """min, max, sum and mean are null when count is 0 (every reading flagged and kept out)."""
    last: float
    last_observed_at: str
    last_event_id: str
    revision: int
    """The highest revision written so far; a later read may see a higher one within grace."""
    readings: int
    """Every reading of the window, flagged ones included."""
    flagged: int
    """The readings with at least one quality flag."""
    expected: float | None
    """The readings the devices' expected reporting intervals promised; null: none expected
    (or a window written before coverage)."""
    coverage: float | None
    """``readings / expected``, at most 1; null when ``expected`` is null."""
    version: int


class AggregateList(BaseModel):
    """The windows that overlap ``[from, to)``, by window start, then size, quantity and unit."""

    model_config = ConfigDict(extra="forbid")

    items: list[AggregateOut]
    source: Literal["kafka", "history"]
    """Where they were read: ``kafka`` (the aggregates topic; short recent ranges) or
    ``history`` (the history store; every other range when it is enabled)."""


_FIELDS = tuple(AggregateOut.model_fields)


def _time_param(call: Call, name: str) -> int:
    moment = query_time(call.request, name)
    if moment is None:
        raise ApiProblem(
            400,
            f"The query parameter {name} is required (RFC 3339, e.g. 2026-11-29T10:00:00Z).",
            errors=[FieldError(name, "required; an RFC 3339 time with a UTC offset")],
        )
    return to_ms(moment)


def _window_size(call: Call) -> int | None:
    raw = call.request.query.get("windowSize")
    if raw is None or raw == "":
        return None
    # ASCII digits only: int() also reads '١٢' and ' 6_0 '.
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else 0
    if not 1 <= value <= MAX_WINDOW_SECONDS:
        raise ApiProblem(
            400,
            "The query parameter windowSize must be a window size in seconds (e.g. 60).",
            errors=[
                FieldError("windowSize", f"expected an integer from 1 to {MAX_WINDOW_SECONDS}")
            ],
        )
    return value


def _scope(call: Call, tenant: str) -> None:
    who = call.principal
    if (who.role is not Role.ADMIN and who.tenant != tenant) or call.registry.view.tenant(
        tenant
    ) is None:
        raise NotFound(f"tenant {tenant!r} not found")


def _group(
    call: Call,
    tenant: str,
    device_id: str | None,
    area: str | None,
    grants: tuple[Grant, ...],
) -> str:
    if (device_id is None) == (area is None):
        raise ApiProblem(
            400,
            "Give exactly one of the query parameters deviceId and area.",
            errors=[FieldError("deviceId", "exactly one of deviceId and area")],
        )
    if area is not None:
        owner = query_text(call.request, "areaTenant") or tenant
        if owner != tenant and covering_area(grants, owner, area) is None:
            raise NotFound(f"area {area!r} of tenant {owner!r} not found")
        return area_group(owner, area)
    assert device_id is not None
    view = call.registry.view
    entry = view.device_by_id(device_id)
    if entry is not None and entry.tenant != tenant:
        device_type = view.device_type(entry.tenant, entry.type)
        public = device_type is not None and device_type.classification is Classification.PUBLIC
        facts = device_item(view, entry, ItemKind.AGGREGATES, personal=True)
        if not public and (facts is None or covering_device(grants, facts) is None):
            entry = None
    if entry is None:
        raise NotFound(f"device {device_id!r} not found in tenant {tenant!r}")
    return device_group(device_id)


async def list_aggregates(call: Call) -> web.Response:
    """The windows of one device or area of the path tenant that overlap ``[from, to)``."""
    tenant = call.path_param("tenant")
    _scope(call, tenant)
    source = call.request.app[AGGREGATES_KEY]
    device_id = query_text(call.request, "deviceId")
    area = query_text(call.request, "area")
    quantity = query_text(call.request, "quantity")
    quantity = canonical_quantity(quantity) if quantity is not None else None  # pm25: pm2_5
    window_size = _window_size(call)
    from_ms, to_ms_ = _time_param(call, "from"), _time_param(call, "to")
    try:
        check_range(from_ms, to_ms_, source.limits)
    except QueryRejected as exc:
        raise ApiProblem(400, exc.detail, errors=[FieldError(exc.field, exc.detail)]) from None
    access = call.request.app.get(READ_ACCESS_KEY, NO_SHARING)
    grants = access.active_for(tenant)
    query = AggregateQuery(
        group=_group(call, tenant, device_id, area, grants),
        from_ms=from_ms,
        to_ms=to_ms_,
        quantity=quantity,
        window_size=window_size,
    )
    try:
        result = await source.read(query)
    except QueryRejected as exc:
        raise ApiProblem(400, exc.detail, errors=[FieldError(exc.field, exc.detail)]) from None
    except AggregatesUnavailable as exc:
        raise ApiProblem(
            503, f"Aggregates cannot be read now: {exc}. Try again.", headers={"Retry-After": "5"}
        ) from None
    reads = call.request.app.get(PERSONAL_READS_KEY)
    visible, under = visible_under(
        tenant,
        result.items,
        grants,
        registry_device_facts(call.registry.view),
        personal=reads is not None,
    )
    if reads is not None:
        # The reader's own tenant, not the path's: another tenant's admin key reads no
        # personal window of this one (nor one shared with this one).
        visible, withheld = await reads.admitted(
            call.principal.tenant,
            query_text(call.request, "processingActivity"),
            visible,
            reader=f"api-key:{call.principal.key_id}",
            grant_of=lambda item: under.get(str(item.get("aggregate_id"))),
        )
    else:  # nothing to check a purpose against: no personal item goes out
        kept = [item for item in visible if item.get("classification") != PERSONAL]
        visible, withheld = kept, len(visible) - len(kept)
    access.count(read_under(visible, under))
    return json_response(
        {
            "items": [_out(item) for item in visible],
            "source": result.source,
            **withheld_note(withheld),
        }
    )


def _out(item: Any) -> dict[str, Any]:
    # Only the documented fields: a newer aggregate version's extra fields stay out.
    out = {name: item.get(name) for name in _FIELDS}
    if out["readings"] is None:  # version 2, written before coverage: every reading counted
        out["readings"], out["flagged"] = out["count"], 0
    return out
