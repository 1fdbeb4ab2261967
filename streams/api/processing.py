"""The register of processing activities' routes: public reads (JSON and a resident's HTML
page, no key) and writes with a tenant's operator or admin key.

Public reads are rate-limited per client address like every keyless call
(``cityhub.streams.api.throttle``). Listings page as the registry's do (``limit``, ``cursor``,
``Link: rel="next"``) and leave the earlier versions out; one activity comes with them.
"""

from __future__ import annotations

import re
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel

from cityhub.schemas.errors import InvalidTimestamp
from cityhub.schemas.processing import (
    ActivityEnd,
    ActivitySpec,
    ActivityUpdate,
    LegalBasis,
    ProcessingActivity,
    parse_legal_basis,
)
from cityhub.schemas.registry import ID_PATTERN
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.api.bodies import query_limit, query_text, read_model
from cityhub.streams.api.handlers import Call, json_response
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.api.route_model import ID_SCHEMA, TENANT_PARAM, Param, Route
from cityhub.streams.privacy.html import JSON_PATH, PAGE_PATH, activity_page, register_page
from cityhub.streams.privacy.service import ProcessingRegister
from cityhub.streams.registry.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from cityhub.streams.service_errors import FieldError

PROCESSING_KEY = web.AppKey("processing", ProcessingRegister)
_ID = re.compile(ID_PATTERN)


class ActivityOut(BaseModel):
    """Documentation only: an activity as the API answers (the current version's fields, its
    ``legal_basis_iri``, and with one activity its ``earlier_versions``)."""

    model_config = {"extra": "allow"}
    id: str
    tenant: str
    slug: str
    version: int


class ActivityList(BaseModel):
    """Documentation only: a page of activities."""

    items: list[ActivityOut]
    next_cursor: str | None


def _register(call: Call) -> ProcessingRegister:
    register = call.request.app.get(PROCESSING_KEY)
    if register is None:
        raise ApiProblem(503, "The register of processing activities is not served here.")
    return register


def _id_param(call: Call, name: str, value: str | None) -> str | None:
    if value is not None and not _ID.match(value):
        raise ApiProblem(
            400,
            f"The parameter {name} is not a valid id.",
            errors=[FieldError(name, "lower-case letters, digits, '.', '_', '-'; 1 to 63")],
        )
    return value


def _legal_basis(call: Call) -> LegalBasis | None:
    raw = query_text(call.request, "legalBasis")
    if raw is None:
        return None
    try:
        return parse_legal_basis(raw)
    except ValueError as exc:
        raise ApiProblem(
            400,
            "The query parameter legalBasis is not a legal basis.",
            errors=[FieldError("legalBasis", str(exc))],
        ) from None


def _valid_at(call: Call) -> datetime | None:
    raw = query_text(call.request, "validAt", max_length=64)
    if raw is None:
        return None
    # An unencoded '+' of an offset arrives as a space: past the date and time it can only be one.
    text = raw[:19] + raw[19:].replace(" ", "+")
    try:
        return parse_rfc3339(text)
    except InvalidTimestamp as exc:
        raise ApiProblem(
            400,
            f"The query parameter validAt is not a time this API takes: {exc.why}.",
            errors=[FieldError("validAt", exc.why)],
        ) from None


def _page(call: Call) -> tuple[Page[ProcessingActivity], str | None]:
    """The page a list call asks for, and the URL of the next one."""
    request = call.request
    page = _register(call).list(
        tenant=_id_param(call, "tenant", query_text(request, "tenant")),
        legal_basis=_legal_basis(call),
        valid_at=_valid_at(call),
        limit=query_limit(request, DEFAULT_PAGE_SIZE),
        cursor=query_text(request, "cursor", max_length=200),
    )
    next_url = None
    if page.next_cursor is not None:
        next_url = str(request.rel_url.update_query(cursor=page.next_cursor))
    return page, next_url


PAGE_HEADERS = {
    # The pages need nothing but themselves: no script, style, frame, form or foreign resource
    # may run in them even if a value slipped past the escaping.
    "Content-Security-Policy": (
        "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)


async def list_activities(call: Call) -> web.Response:
    page, next_url = _page(call)
    headers = {"Link": f'<{next_url}>; rel="next"'} if next_url else None
    items = [a.public(history=False) for a in page.items]
    return json_response({"items": items, "next_cursor": page.next_cursor}, headers=headers)


async def get_activity(call: Call) -> web.Response:
    found = _register(call).get(call.path_param("tenant"), call.path_param("slug"))
    return json_response(found.public())


async def register_html(call: Call) -> web.Response:
    page, next_url = _page(call)
    return _html(register_page(page.items, next_url))


async def activity_html(call: Call) -> web.Response:
    found = _register(call).get(call.path_param("tenant"), call.path_param("slug"))
    return _html(activity_page(found))


async def create_activity(call: Call) -> web.Response:
    spec = await read_model(call.request, ActivitySpec, call.limits.max_body_bytes)
    record = await _register(call).create(call.principal, call.path_param("tenant"), spec)
    location = f"{JSON_PATH}/{record.tenant}/{record.slug}"
    return json_response(record.public(), status=201, headers={"Location": location})


async def update_activity(call: Call) -> web.Response:
    spec = await read_model(call.request, ActivityUpdate, call.limits.max_body_bytes)
    record = await _register(call).update(
        call.principal, call.path_param("tenant"), call.path_param("slug"), spec
    )
    return json_response(record.public())


async def end_activity(call: Call) -> web.Response:
    spec = ActivityEnd()
    if call.request.can_read_body:
        spec = await read_model(call.request, ActivityEnd, call.limits.max_body_bytes)
    record = await _register(call).end(
        call.principal, call.path_param("tenant"), call.path_param("slug"), spec
    )
    return json_response(record.public())


_SLUG = Param("slug", "path", ID_SCHEMA, "The activity's slug (unique in its tenant).")
_FILTERS = (
    Param("tenant", "query", ID_SCHEMA, "Only this tenant's activities."),
    Param(
        "legalBasis",
        "query",
        {"type": "string", "enum": [b.value for b in LegalBasis] + [b.iri for b in LegalBasis]},
        "Only activities on this legal basis (the short name or its DPV IRI).",
    ),
    Param(
        "validAt",
        "query",
        {"type": "string", "format": "date-time"},
        "Only activities valid at this RFC 3339 time.",
    ),
    Param(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "default": DEFAULT_PAGE_SIZE},
        f"Items per page; values above {MAX_PAGE_SIZE} are served as {MAX_PAGE_SIZE}.",
    ),
    Param("cursor", "query", {"type": "string"}, "The next_cursor of the previous page."),
)
_TAG = "processing-activities"
_PAGE_PREFIX = PAGE_PATH.removeprefix("/api/v1")
_JSON_PREFIX = JSON_PATH.removeprefix("/api/v1")
_WRITE = (403, 404, 409, 413, 415, 503)

PROCESSING_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        _JSON_PREFIX,
        "listProcessingActivities",
        "The public register of processing activities of every tenant (no key)",
        _TAG,
        list_activities,
        response=ActivityList,
        params=_FILTERS,
        problems=(429, 503),
        headers=("Link",),
        public=True,
    ),
    Route(
        "GET",
        _JSON_PREFIX + "/{tenant}/{slug}",
        "getProcessingActivity",
        "One processing activity with its earlier versions (no key)",
        _TAG,
        get_activity,
        response=ActivityOut,
        params=(TENANT_PARAM, _SLUG),
        problems=(404, 429, 503),
        public=True,
    ),
    Route(
        "GET",
        _PAGE_PREFIX,
        "processingRegisterPage",
        "The register as an HTML page a resident can read (no key; same filters)",
        _TAG,
        register_html,
        params=_FILTERS,
        problems=(429, 503),
        media_type="text/html",
        public=True,
    ),
    Route(
        "GET",
        _PAGE_PREFIX + "/{tenant}/{slug}",
        "processingActivityPage",
        "One processing activity as an HTML page (no key)",
        _TAG,
        activity_html,
        params=(TENANT_PARAM, _SLUG),
        problems=(404, 429, 503),
        media_type="text/html",
        public=True,
    ),
    Route(
        "POST",
        "/tenants/{tenant}/processing-activities",
        "createProcessingActivity",
        "Record a processing activity (operator or admin key of the tenant)",
        _TAG,
        create_activity,
        status=201,
        response=ActivityOut,
        body=ActivitySpec,
        params=(TENANT_PARAM,),
        problems=_WRITE,
        headers=("Location",),
    ),
    Route(
        "PUT",
        "/tenants/{tenant}/processing-activities/{slug}",
        "updateProcessingActivity",
        "Record a new version of an activity (the whole statement; base_version guards "
        "against a concurrent change)",
        _TAG,
        update_activity,
        response=ActivityOut,
        body=ActivityUpdate,
        params=(TENANT_PARAM, _SLUG),
        problems=_WRITE,
    ),
    Route(
        "POST",
        "/tenants/{tenant}/processing-activities/{slug}/end",
        "endProcessingActivity",
        "End an activity: a new version with valid_to (default now); nothing is deleted",
        _TAG,
        end_activity,
        response=ActivityOut,
        body=ActivityEnd,
        params=(TENANT_PARAM, _SLUG),
        problems=_WRITE,
    ),
)
