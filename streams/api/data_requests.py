"""The data requests' routes (``docs/data-requests.md``): anyone files and reads
requests without a key; a tenant's operator or admin key answers one; an admin key declines one
and reads its contact.

The keyless routes have the limits of everything anonymous: a body of at most
``MAX_REQUEST_BYTES`` (413), the API's request rate per client address (429,
``cityhub.streams.api.throttle``), and for filing also ``open_data.max_requests_per_address`` per
hour and a cap on open requests (``cityhub.streams.opendata.requests``). No public answer ever
carries a contact: only ``/data-requests`` (admin) does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from cityhub.schemas.data_request import (
    MAX_REQUEST_BYTES,
    AnswerSpec,
    DataRequest,
    DataRequestSpec,
    DataRequestStatus,
    DeclineSpec,
)
from cityhub.schemas.registry import ID_PATTERN
from cityhub.streams.api.bodies import query_limit, query_text, read_model
from cityhub.streams.api.handlers import Call, json_response
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.api.route_model import PREFIX, TENANT_PARAM, Param, Route
from cityhub.streams.opendata.requests import DataRequests
from cityhub.streams.registry.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from cityhub.streams.service_errors import FieldError

DATA_REQUESTS_KEY = web.AppKey("data_requests", DataRequests)
PUBLIC_PATH = "/open/data-requests"
ADMIN_PATH = "/data-requests"


class AnswerOut(BaseModel):
    """Documentation only: one answer and where it points."""

    kind: str
    ref: str
    tenant: str
    note: str | None
    at: str
    url: str


class DataRequestOut(BaseModel):
    """Documentation only: a request as anyone sees it (never its contact; of a declined
    request only its status, dates and reason)."""

    model_config = {"extra": "allow"}
    id: str
    status: str
    created_at: str
    updated_at: str
    answers: list[AnswerOut]


class DataRequestList(BaseModel):
    """Documentation only: a page of requests, newest first."""

    items: list[DataRequestOut]
    next_cursor: str | None


def _service(call: Call) -> DataRequests:
    service = call.request.app.get(DATA_REQUESTS_KEY)
    if service is None:
        raise ApiProblem(503, "Data requests are not served by this instance of the API.")
    return service


def _status(call: Call) -> DataRequestStatus | None:
    raw = query_text(call.request, "status", max_length=16)
    if raw is None:
        return None
    try:
        return DataRequestStatus(raw)
    except ValueError:
        names = ", ".join(s.value for s in DataRequestStatus)
        raise ApiProblem(
            400,
            "The query parameter status is not a data request's status.",
            errors=[FieldError("status", f"one of {names}")],
        ) from None


def _paged(
    call: Call, page: Page[DataRequest], render: Callable[[DataRequest], Any]
) -> web.Response:
    headers = None
    if page.next_cursor is not None:
        url = call.request.rel_url.update_query(cursor=page.next_cursor)
        headers = {"Link": f'<{url}>; rel="next"'}
    items = [render(r) for r in page.items]
    return json_response({"items": items, "next_cursor": page.next_cursor}, headers=headers)


def _listing(call: Call) -> tuple[DataRequestStatus | None, int, str | None]:
    request = call.request
    return (
        _status(call),
        query_limit(request, DEFAULT_PAGE_SIZE),
        query_text(request, "cursor", max_length=64),
    )


async def file_request(call: Call) -> web.Response:
    cap = min(MAX_REQUEST_BYTES, call.limits.max_body_bytes)
    spec = await read_model(call.request, DataRequestSpec, cap)
    # Imported here: the throttle imports the route table, which imports this module.
    from cityhub.streams.api.throttle import client_network

    record = await _service(call).file(spec, client_network(call.request.remote))
    location = f"{PREFIX}{PUBLIC_PATH}/{record.id}"
    return json_response(record.public(), status=201, headers={"Location": location})


async def list_requests(call: Call) -> web.Response:
    status, limit, cursor = _listing(call)
    page = _service(call).list(status=status, limit=limit, cursor=cursor)
    return _paged(call, page, DataRequest.public)


async def get_request(call: Call) -> web.Response:
    return json_response(_service(call).get(call.path_param("id")).public())


async def answer_request(call: Call) -> web.Response:
    spec = await read_model(call.request, AnswerSpec, call.limits.max_body_bytes)
    record = await _service(call).answer(
        call.principal, call.path_param("tenant"), call.path_param("id"), spec
    )
    return json_response(record.public())


async def admin_list_requests(call: Call) -> web.Response:
    status, limit, cursor = _listing(call)
    page = _service(call).list_as_admin(call.principal, status=status, limit=limit, cursor=cursor)
    return _paged(call, page, DataRequest.admin)


async def admin_get_request(call: Call) -> web.Response:
    record = _service(call).get_as_admin(call.principal, call.path_param("id"))
    response = json_response(record.admin())
    response.headers["Cache-Control"] = "no-store"  # it holds personal data
    return response


async def decline_request(call: Call) -> web.Response:
    spec = await read_model(call.request, DeclineSpec, call.limits.max_body_bytes)
    record = await _service(call).decline(call.principal, call.path_param("id"), spec)
    return json_response(record.admin())


async def erase_contact(call: Call) -> web.Response:
    await _service(call).erase_contact(call.principal, call.path_param("id"))
    return web.Response(status=204)


REQUEST_ID = Param(
    "id", "path", {"type": "string", "pattern": ID_PATTERN}, "The data request's id.", required=True
)
_FILTERS = (
    Param(
        "status",
        "query",
        {"type": "string", "enum": [s.value for s in DataRequestStatus]},
        "Only requests with this status.",
    ),
    Param(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "default": DEFAULT_PAGE_SIZE},
        f"Items per page; values above {MAX_PAGE_SIZE} are served as {MAX_PAGE_SIZE}.",
    ),
    Param("cursor", "query", {"type": "string"}, "The next_cursor of the previous page."),
)
_TAG = "data-requests"

DATA_REQUEST_ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        PUBLIC_PATH,
        "fileDataRequest",
        f"Ask for data that is not published (no key; at most {MAX_REQUEST_BYTES} bytes, a few "
        "per client address and hour; the contact is optional and never shown publicly)",
        _TAG,
        file_request,
        status=201,
        response=DataRequestOut,
        body=DataRequestSpec,
        problems=(413, 415, 429, 503),
        headers=("Location",),
        public=True,
    ),
    Route(
        "GET",
        PUBLIC_PATH,
        "listDataRequests",
        "The public's data requests with their status and answers, newest first (no key)",
        _TAG,
        list_requests,
        response=DataRequestList,
        params=_FILTERS,
        problems=(429, 503),
        headers=("Link",),
        public=True,
    ),
    Route(
        "GET",
        PUBLIC_PATH + "/{id}",
        "getDataRequest",
        "One data request with its status and the answers it links to (no key)",
        _TAG,
        get_request,
        response=DataRequestOut,
        params=(REQUEST_ID,),
        problems=(404, 429, 503),
        public=True,
    ),
    Route(
        "POST",
        "/tenants/{tenant}/data-requests/{id}/answers",
        "answerDataRequest",
        "Answer a data request with one of the tenant's offers or a published open dataset "
        "(operator or admin key of the tenant)",
        _TAG,
        answer_request,
        response=DataRequestOut,
        body=AnswerSpec,
        params=(TENANT_PARAM, REQUEST_ID),
        problems=(403, 404, 409, 413, 415, 503),
    ),
    Route(
        "GET",
        ADMIN_PATH,
        "listDataRequestsAsAdmin",
        "The data requests with their contacts, newest first (admin)",
        _TAG,
        admin_list_requests,
        response=DataRequestList,
        params=_FILTERS,
        problems=(403, 503),
        headers=("Link",),
    ),
    Route(
        "GET",
        ADMIN_PATH + "/{id}",
        "getDataRequestAsAdmin",
        "One data request with its contact, to tell the requester about answers (admin)",
        _TAG,
        admin_get_request,
        response=DataRequestOut,
        params=(REQUEST_ID,),
        problems=(403, 404, 503),
    ),
    Route(
        "POST",
        ADMIN_PATH + "/{id}/decline",
        "declineDataRequest",
        "Decline a data request with a public reason; its text leaves the public view and its "
        "contact is erased (admin)",
        _TAG,
        decline_request,
        response=DataRequestOut,
        body=DeclineSpec,
        params=(REQUEST_ID,),
        problems=(403, 404, 409, 413, 415, 503),
    ),
    Route(
        "DELETE",
        ADMIN_PATH + "/{id}/contact",
        "eraseDataRequestContact",
        "Erase a data request's contact now, as its requester may ask (admin)",
        _TAG,
        erase_contact,
        status=204,
        params=(REQUEST_ID,),
        problems=(403, 404, 503),
    ),
)
