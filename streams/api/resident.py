"""The residents' own routes, ``/api/v1/me/...``: a resident sees and acts on their own data
subject only (``streams/api/resident_tokens.py`` authenticates them; an API key is a 401 here).

- ``GET /me``: who they are to cityhub (tenant, pseudonym, how they signed in, their devices);
- ``GET /me/devices``: their linked devices;
- ``GET /me/observations``: what their devices collected (``since``, default a day ago, at most
  ``MAX_SINCE_DAYS``; ``limit``; ``deviceId``), sealed values opened; the read is logged;
- ``GET /me/aggregates``: windows of their devices (``from``, ``to``; see
  ``subject_access.py`` for which windows are theirs);
- ``GET /me/processing-log``: who received what of theirs, when and why;
- ``GET /me/consents``, ``POST /me/consents/{activity}/give|withdraw``: their consents;
- ``GET /me/export``: everything above as one JSON document (the export is logged);
- ``POST /me/erasure``: erase them (``{"confirm": true}``), and their tokens with them.

Nothing here takes a tenant or a subject from the request: both come from the token, so there
is no parameter through which another subject could be named.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from cityhub.schemas.consent_change import ConsentGiveSpec, ConsentWithdrawSpec
from cityhub.schemas.registry import ID_PATTERN
from cityhub.schemas.timefmt import rfc3339
from cityhub.schemas.trace_context import TRACEPARENT, TraceContext, parse_traceparent
from cityhub.streams.aggregation.query import QueryRejected
from cityhub.streams.api.aggregates import AGGREGATES_KEY
from cityhub.streams.api.bodies import query_limit, query_text, query_time, read_model
from cityhub.streams.api.consents import (
    CONSENTS_KEY,
    ConsentList,
    ConsentRecordOut,
    consent_doc,
    give_as,
    withdraw_as,
)
from cityhub.streams.api.erasure import ErasureOut, erasure_service
from cityhub.streams.api.handlers import Call, json_response
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.api.processing_log import log_query, queries
from cityhub.streams.api.resident_tokens import ResidentServices, as_resident
from cityhub.streams.api.route_model import Param, Route
from cityhub.streams.privacy.consent_service import Consents
from cityhub.streams.privacy.log_service import LogQuery
from cityhub.streams.privacy.resident import Resident
from cityhub.streams.privacy.subject_access import AGGREGATES_NOTE, device_doc
from cityhub.streams.registry.paging import MAX_PAGE_SIZE
from cityhub.streams.service_errors import FieldError

MAX_SINCE_DAYS = 31
DEFAULT_OBSERVATIONS = 100
MAX_OBSERVATIONS = 1000
EXPORT_DAYS = 31
EXPORT_OBSERVATIONS = 10_000
EXPORT_LOG_RECORDS = 10_000


class MeOut(BaseModel):
    """Who the resident is to cityhub."""

    model_config = ConfigDict(extra="forbid")
    tenant: str
    subject: str
    signed_in_with: str
    """``token`` (a resident token the tenant issued) or ``oidc`` (the identity provider)."""
    devices: list[str]


class ItemsOut(BaseModel):
    """Documentation only: ``items`` and what the route says about them."""

    model_config = ConfigDict(extra="allow")
    items: list[dict[str, Any]]


class ErasureRequest(BaseModel):
    """An erasure must be meant: ``{"confirm": true}``."""

    model_config = ConfigDict(extra="forbid")
    confirm: bool


def _trace(call: Call) -> TraceContext | None:
    return parse_traceparent(call.request.headers.get(TRACEPARENT))


def _time(call: Call, name: str, default: float) -> float:
    moment = query_time(call.request, name)
    return default if moment is None else moment.timestamp()


def _since_ms(call: Call, days: int = MAX_SINCE_DAYS) -> int:
    now = time.time()
    since = _time(call, "since", now - 86400)
    if since < now - days * 86400:
        raise ApiProblem(
            400,
            f"since may be at most {days} days ago.",
            errors=[FieldError("since", f"at most {days} days ago")],
        )
    return int(since * 1000)


async def me(call: Call, services: ResidentServices, resident: Resident) -> web.Response:
    devices = services.access.devices(resident)
    return json_response(
        {
            "tenant": resident.tenant,
            "subject": resident.subject,
            "signed_in_with": resident.credential.partition(":")[0],
            "devices": [d.id for d in devices],
        }
    )


async def my_devices(call: Call, services: ResidentServices, resident: Resident) -> web.Response:
    return json_response({"items": [device_doc(d) for d in services.access.devices(resident)]})


async def my_observations(
    call: Call, services: ResidentServices, resident: Resident
) -> web.Response:
    limit = min(query_limit(call.request, DEFAULT_OBSERVATIONS), MAX_OBSERVATIONS)
    opened = await services.access.observations(
        resident,
        since_ms=_since_ms(call),
        limit=limit,
        device_id=query_text(call.request, "deviceId", max_length=64),
        trace=_trace(call),
    )
    return json_response(opened.public())


async def my_aggregates(call: Call, services: ResidentServices, resident: Resident) -> web.Response:
    now = time.time()
    from_s, to_s = _time(call, "from", now - 86400), _time(call, "to", now)
    try:
        windows = await services.access.aggregates(
            resident,
            call.request.app[AGGREGATES_KEY],
            from_ms=int(from_s * 1000),
            to_ms=int(to_s * 1000),
            device_id=query_text(call.request, "deviceId", max_length=64),
            trace=_trace(call),
        )
    except QueryRejected as exc:
        raise ApiProblem(400, exc.detail, errors=[FieldError(exc.field, exc.detail)]) from None
    return json_response({"items": windows, "note": AGGREGATES_NOTE})


def log_entry(record: Any) -> dict[str, Any]:
    """One processing-log record as the resident reads it: what was done, under which
    activity, for whom, when and to how many items."""
    return {
        "action": record.action,
        "activity_id": record.activity_id,
        "recipient": record.recipient,
        "items": record.items,
        "started_at": rfc3339(record.start_time / 1000),
        "ended_at": rfc3339(record.end_time / 1000),
        "status": str(record.status_code),
        "trace_id": record.trace_id,
    }


async def my_processing_log(
    call: Call, services: ResidentServices, resident: Resident
) -> web.Response:
    page = queries(call).for_resident(
        resident,
        log_query(call),
        activity=query_text(call.request, "activity", max_length=1000),
    )
    headers = None
    if page.next_cursor is not None:
        url = call.request.rel_url.update_query(cursor=page.next_cursor)
        headers = {"Link": f'<{url}>; rel="next"'}
    return json_response(
        {
            "items": [log_entry(r) for r in page.records],
            "next_cursor": page.next_cursor,
            "complete": page.complete,
        },
        headers=headers,
    )


def _every_log_entry(call: Call, resident: Resident) -> tuple[list[Any], bool]:
    log = queries(call)
    entries: list[Any] = []
    cursor, complete = None, True
    while len(entries) < EXPORT_LOG_RECORDS:
        page = log.for_resident(resident, LogQuery(limit=MAX_PAGE_SIZE, cursor=cursor))
        entries.extend(log_entry(r) for r in page.records)
        complete &= page.complete
        cursor = page.next_cursor
        if cursor is None:
            return entries, complete
    return entries[:EXPORT_LOG_RECORDS], False


async def my_export(call: Call, services: ResidentServices, resident: Resident) -> web.Response:
    started = time.time()
    trace = _trace(call)
    access = services.access
    devices = access.devices(resident)
    observations = await access.observations(
        resident,
        since_ms=int((started - EXPORT_DAYS * 86400) * 1000),
        limit=EXPORT_OBSERVATIONS,
        trace=trace,
        action="export",
    )
    source = call.request.app[AGGREGATES_KEY]
    span = min(EXPORT_DAYS * 86400, source.limits.max_range_seconds)
    windows = await access.aggregates(
        resident,
        source,
        from_ms=int((started - span) * 1000),
        to_ms=int(started * 1000),
        trace=trace,
        action="export",
    )
    log_entries, log_complete = _every_log_entry(call, resident)
    doc = {
        "exported_at": rfc3339(started),
        "controller_tenant": resident.tenant,
        "data_subject": resident.subject,
        "devices": [device_doc(d) for d in devices],
        "observations": {"since_days": EXPORT_DAYS, **observations.public()},
        "aggregates": {"since_seconds": span, "items": windows, "note": AGGREGATES_NOTE},
        "consents": _consent_docs(call, resident),
        "processing_log": {"items": log_entries, "complete": log_complete},
        "tokens": [
            t.public() for t in services.tokens.view.of_subject(resident.tenant, resident.subject)
        ],
    }
    await access.log_export(resident, len(observations.items) + len(windows), started, trace)
    return json_response(
        doc, headers={"Content-Disposition": 'attachment; filename="my-cityhub-data.json"'}
    )


def _consents(call: Call) -> Consents:
    service = call.request.app.get(CONSENTS_KEY)
    if service is None:
        raise ApiProblem(503, "Consent records are not served by this instance of the API.")
    return service


def _consent_docs(call: Call, resident: Resident) -> list[dict[str, Any]]:
    records = _consents(call).of_subject(resident, resident.tenant, resident.subject)
    return [consent_doc(r) for r in records]


async def my_consents(call: Call, services: ResidentServices, resident: Resident) -> web.Response:
    return json_response({"items": _consent_docs(call, resident)})


async def give_my_consent(
    call: Call, services: ResidentServices, resident: Resident
) -> web.Response:
    return await give_as(call, resident, resident.tenant, resident.subject)


async def withdraw_my_consent(
    call: Call, services: ResidentServices, resident: Resident
) -> web.Response:
    return await withdraw_as(call, resident, resident.tenant, resident.subject)


async def my_erasure(call: Call, services: ResidentServices, resident: Resident) -> web.Response:
    body = await read_model(call.request, ErasureRequest, call.limits.max_body_bytes)
    if not body.confirm:
        raise ApiProblem(
            400,
            'An erasure cannot be undone: send {"confirm": true} to mean it.',
            errors=[FieldError("confirm", "must be true")],
        )
    # The erasure removes their tokens too: this request was the last they open.
    report = await erasure_service(call).erase(
        resident, resident.tenant, resident.subject, trace=_trace(call)
    )
    return json_response(report.public())


_SINCE = Param(
    "since",
    "query",
    {"type": "string", "format": "date-time"},
    f"From this RFC 3339 time (default a day ago; at most {MAX_SINCE_DAYS} days ago).",
)
_LIMIT = Param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "default": DEFAULT_OBSERVATIONS},
    f"At most this many, newest first (at most {MAX_OBSERVATIONS}).",
)
_DEVICE = Param("deviceId", "query", {"type": "string"}, "Only this device of yours.")
_FROM = Param("from", "query", {"type": "string", "format": "date-time"}, "RFC 3339.")
_TO = Param("to", "query", {"type": "string", "format": "date-time"}, "RFC 3339.")
_LOG_LIMIT = Param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "default": 100},
    f"Records per page, newest first (at most {MAX_PAGE_SIZE}).",
)
_ACTIVITY_FILTER = Param(
    "activity", "query", {"type": "string"}, "Only this activity (its slug or its URI)."
)
_CURSOR = Param("cursor", "query", {"type": "string"}, "The next_cursor of the previous page.")
_ACTIVITY = Param(
    "activity",
    "path",
    {"type": "string", "pattern": ID_PATTERN},
    "The processing activity's slug in your tenant's register.",
    required=True,
)
_TAG = "me"
_R = (503,)


def _me(method: str, path: str, op: str, summary: str, handler: Any, **kw: Any) -> Route:
    return Route(method, "/me" + path, op, summary, _TAG, as_resident(handler), resident=True, **kw)


ME_ROUTES: tuple[Route, ...] = (
    _me(
        "GET", "", "getMe", "Who you are to cityhub: tenant, pseudonym, devices", me, response=MeOut
    ),
    _me(
        "GET",
        "/devices",
        "listMyDevices",
        "The devices linked to you",
        my_devices,
        response=ItemsOut,
    ),
    _me(
        "GET",
        "/observations",
        "listMyObservations",
        "What your devices collected, newest first (the read is logged)",
        my_observations,
        response=ItemsOut,
        params=(_SINCE, _LIMIT, _DEVICE),
        problems=(404, *_R),
    ),
    _me(
        "GET",
        "/aggregates",
        "listMyAggregates",
        "Window aggregates of your devices",
        my_aggregates,
        response=ItemsOut,
        params=(_FROM, _TO, _DEVICE),
        problems=(404, *_R),
    ),
    _me(
        "GET",
        "/processing-log",
        "listMyProcessingLog",
        "Who received what of yours, when and why (the processing log)",
        my_processing_log,
        response=ItemsOut,
        params=(_FROM, _TO, _CURSOR),
        problems=_R,
        headers=("Link",),
    ),
    _me(
        "GET",
        "/consents",
        "listMyConsents",
        "Your consents, with their hash chains",
        my_consents,
        response=ConsentList,
        problems=_R,
    ),
    _me(
        "POST",
        "/consents/{activity}/give",
        "giveMyConsent",
        "Give your consent to a processing activity of your tenant (legal basis Consent)",
        give_my_consent,
        response=ConsentRecordOut,
        body=ConsentGiveSpec,
        params=(_ACTIVITY,),
        problems=(400, 404, 409, 413, 415, *_R),
    ),
    _me(
        "POST",
        "/consents/{activity}/withdraw",
        "withdrawMyConsent",
        "Withdraw your consent: no delivery under that activity takes your data from now on",
        withdraw_my_consent,
        response=ConsentRecordOut,
        body=ConsentWithdrawSpec,
        params=(_ACTIVITY,),
        problems=(400, 404, 409, 413, 415, *_R),
    ),
    _me(
        "GET",
        "/export",
        "exportMyData",
        "Everything about you as one JSON document (the export is logged)",
        my_export,
        problems=_R,
    ),
    _me(
        "POST",
        "/erasure",
        "eraseMe",
        'Erase yourself: {"confirm": true}; your keys, consents, links and tokens',
        my_erasure,
        response=ErasureOut,
        body=ErasureRequest,
        problems=(400, 413, 415, *_R),
    ),
)

__all__ = ["ME_ROUTES"]
