"""The processing log's route for a tenant's privacy officer:
``GET /api/v1/tenants/{tenant}/processing-log``.

An ``operator`` or ``admin`` key of the tenant reads the tenant's records (Logboek
Dataverwerkingen shape, ``schemas/processing_log.py``), newest first, filtered by ``activity``
(a slug of the tenant's register, or the activity's URI), ``dataSubject``, ``from``/``to``
(RFC 3339, on the records' start time), paged by ``limit`` and ``cursor`` (``Link:
rel="next"``). Another tenant's key gets 404, a subscriber key 403. The answer says whether it
is ``complete``: the API process's index holds a bounded number of records, and a query that
reaches back past what it dropped may miss the oldest (``held_from``).

``/api/v1/me/processing-log`` (a resident's own records) belongs to the residents' routes; it
calls ``ProcessingLogQueries.for_resident`` and may render its page with ``page_document``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from cityhub.schemas.registry import DATA_SUBJECT_RULE, validate_data_subject
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.api.bodies import query_limit, query_text, query_time
from cityhub.streams.api.handlers import Call, json_response
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.api.route_model import TENANT_PARAM, Param, Route
from cityhub.streams.privacy.log_index import LogPage
from cityhub.streams.privacy.log_service import LogQuery, ProcessingLogQueries
from cityhub.streams.registry.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from cityhub.streams.service_errors import FieldError

PROCESSING_LOG_KEY = web.AppKey("processing_log", ProcessingLogQueries)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LogRecordOut(BaseModel):
    """Documentation only: one processing-log record (Logboek Dataverwerkingen)."""

    model_config = {"extra": "allow"}
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_time: int
    end_time: int
    status_code: str
    attributes: dict[str, str | int]


class LogPageOut(BaseModel):
    """Documentation only: a page of processing-log records, newest first."""

    items: list[LogRecordOut]
    next_cursor: str | None
    complete: bool
    held_from: str | None


def queries(call: Call) -> ProcessingLogQueries:
    """The log's queries of this API process; 503 where it is not served."""
    found = call.request.app.get(PROCESSING_LOG_KEY)
    if found is None:
        raise ApiProblem(503, "The processing log is not served by this instance of the API.")
    return found


def _time(call: Call, name: str) -> int | None:
    moment = query_time(call.request, name)
    return None if moment is None else (moment - _EPOCH) // timedelta(milliseconds=1)


def log_query(call: Call) -> LogQuery:
    """``from``, ``to``, ``limit`` and ``cursor`` of a log request (400 on a bad one)."""
    return LogQuery(
        since=_time(call, "from"),
        until=_time(call, "to"),
        limit=query_limit(call.request, DEFAULT_PAGE_SIZE),
        cursor=query_text(call.request, "cursor", max_length=80),
    )


def page_document(call: Call, page: LogPage) -> web.Response:
    """A page as the API answers it, with ``Link: rel="next"`` when there is more."""
    headers = None
    if page.next_cursor is not None:
        next_url = call.request.rel_url.update_query(cursor=page.next_cursor)
        headers = {"Link": f'<{next_url}>; rel="next"'}
    doc: dict[str, Any] = {
        "items": [record.model_dump(mode="json") for record in page.records],
        "next_cursor": page.next_cursor,
        "complete": page.complete,
        "held_from": None if page.held_from is None else rfc3339(page.held_from / 1000),
    }
    return json_response(doc, headers=headers)


async def tenant_processing_log(call: Call) -> web.Response:
    page = queries(call).for_officer(
        call.principal,
        call.path_param("tenant"),
        log_query(call),
        activity=query_text(call.request, "activity", max_length=1000),
        subject=_data_subject(call),
    )
    return page_document(call, page)


def _data_subject(call: Call) -> str | None:
    """``dataSubject``, checked here so that the fault names the query parameter (the service
    names its own field); never repeated in the answer."""
    subject = query_text(call.request, "dataSubject", max_length=64)
    if subject is None:
        return None
    try:
        return validate_data_subject(subject)
    except ValueError:
        raise ApiProblem(
            400,
            "The query parameter dataSubject is not a data subject id.",
            errors=[FieldError("dataSubject", f"must be {DATA_SUBJECT_RULE}")],
        ) from None


LOG_PARAMS = (
    Param(
        "from",
        "query",
        {"type": "string", "format": "date-time"},
        "Only records of actions that started at or after this RFC 3339 time.",
    ),
    Param(
        "to",
        "query",
        {"type": "string", "format": "date-time"},
        "Only records of actions that started before this RFC 3339 time.",
    ),
    Param(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "default": DEFAULT_PAGE_SIZE},
        f"Records per page; values above {MAX_PAGE_SIZE} are served as {MAX_PAGE_SIZE}.",
    ),
    Param("cursor", "query", {"type": "string"}, "The next_cursor of the previous page."),
)

PROCESSING_LOG_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/tenants/{tenant}/processing-log",
        "getTenantProcessingLog",
        "The tenant's processing log (Logboek Dataverwerkingen records), newest first, by "
        "activity and/or data subject (operator or admin key of the tenant)",
        "processing-log",
        tenant_processing_log,
        response=LogPageOut,
        params=(
            TENANT_PARAM,
            Param(
                "activity",
                "query",
                {"type": "string"},
                "Only records of this processing activity: its slug in the tenant's register, "
                "or its URI.",
            ),
            Param(
                "dataSubject",
                "query",
                {"type": "string"},
                "Only records of this data subject (the tenant's pseudonym).",
            ),
            *LOG_PARAMS,
        ),
        problems=(403, 404, 503),
        headers=("Link",),
    ),
)
