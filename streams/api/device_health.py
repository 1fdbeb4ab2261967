"""Device health's routes (docs/health.md):

* ``GET /api/v1/tenants/{tenant}/devices/{id}/health``: one device's health;
* ``GET /api/v1/tenants/{tenant}/device-health``: the tenant's devices' health, in id order,
  filtered by ``state`` (``ok``, ``silent``, ``never_seen``), ``type`` and ``area``, paged by
  ``limit`` and ``cursor`` (``Link: rel="next"``) as every listing.

Every role of the tenant reads them (and an admin); another tenant's key gets 404, as for the
device itself. The answers come from the API process's view of the device-health topic joined
with the registry (``cityhub.streams.health.queries``); a process that does not follow the topic
answers 503.
"""

from __future__ import annotations

from aiohttp import web

from cityhub.schemas.device_health import HealthState
from cityhub.streams.api.bodies import query_limit, query_text
from cityhub.streams.api.handlers import Call, json_response
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.api.route_model import ID_SCHEMA, TENANT_PARAM, Param, Route
from cityhub.streams.health.queries import DeviceHealthList, DeviceHealthOut, DeviceHealthQueries
from cityhub.streams.registry.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

DEVICE_HEALTH_KEY = web.AppKey("device_health", DeviceHealthQueries)

_READ = (403, 404, 503)


def queries(call: Call) -> DeviceHealthQueries:
    """The device-health queries of this API process; 503 where it does not follow the topic."""
    found = call.request.app.get(DEVICE_HEALTH_KEY)
    if found is None:
        raise ApiProblem(503, "Device health is not served by this instance of the API.")
    return found


async def get_device_health(call: Call) -> web.Response:
    answer = queries(call).get(call.principal, call.path_param("tenant"), call.path_param("id"))
    return json_response(answer.model_dump(mode="json"))


async def list_device_health(call: Call) -> web.Response:
    request = call.request
    state = query_text(request, "state")
    page = queries(call).page(
        call.principal,
        call.path_param("tenant"),
        state=None if state is None else HealthState(state),  # the route's enum checked it
        type_id=query_text(request, "type"),
        area=query_text(request, "area"),
        limit=query_limit(request, DEFAULT_PAGE_SIZE),
        cursor=query_text(request, "cursor"),
    )
    headers = {}
    if page.next_cursor is not None:
        url = request.rel_url.update_query(cursor=page.next_cursor)
        headers["Link"] = f'<{url}>; rel="next"'
    return json_response(
        {
            "items": [item.model_dump(mode="json") for item in page.items],
            "next_cursor": page.next_cursor,
        },
        headers=headers,
    )


DEVICE_HEALTH_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/tenants/{tenant}/devices/{id}/health",
        "getDeviceHealth",
        "A device's health: state, last seen, readings, quality, battery, signal, dead letters",
        "device-health",
        get_device_health,
        response=DeviceHealthOut,
        params=(TENANT_PARAM, Param("id", "path", ID_SCHEMA, "The device's id.", required=True)),
        problems=_READ,
    ),
    Route(
        "GET",
        "/tenants/{tenant}/device-health",
        "listDeviceHealth",
        "The health of a tenant's devices, filtered by state, type and area",
        "device-health",
        list_device_health,
        response=DeviceHealthList,
        params=(
            TENANT_PARAM,
            Param(
                "state",
                "query",
                {"type": "string", "enum": [s.value for s in HealthState]},
                "Only devices in this state now: ok, silent (not seen within grace times "
                "their expected interval), never_seen.",
            ),
            Param("type", "query", ID_SCHEMA, "Only devices of this type."),
            Param(
                "area",
                "query",
                {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,64}$"},
                "Only devices in this area.",
            ),
            Param(
                "limit",
                "query",
                {"type": "integer", "minimum": 1, "default": DEFAULT_PAGE_SIZE},
                f"Items per page; values above {MAX_PAGE_SIZE} are served as {MAX_PAGE_SIZE}.",
            ),
            Param(
                "cursor",
                "query",
                {"type": "string"},
                "The next_cursor of the previous page (also in its Link header).",
            ),
        ),
        problems=_READ,
        headers=("Link",),
    ),
)
