"""The API's handlers: each turns one HTTP call into one registry call and its result into JSON.

A handler receives a ``Call`` (the request, the authenticated principal, the registry and the
body caps) and returns a response; it raises ``ApiProblem`` or the registry's errors, which the
app's middleware answers as problem documents. Authorisation is the registry's: no handler
decides who may do what.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from cityhub.connectors.sinks import subscription_models
from cityhub.schemas.registry import (
    DataSubjectLink,
    Device,
    DeviceSpec,
    DeviceType,
    DeviceTypeSpec,
    Tenant,
    TenantSpec,
)
from cityhub.schemas.subscription import ReplaySpec
from cityhub.streams.api.bodies import (
    JSON,
    query_bool,
    query_limit,
    query_text,
    read_capped,
    read_model,
    require_content_type,
)
from cityhub.streams.api.models import ApiKeySpec
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.quotas import QuotaExceeded
from cityhub.streams.registry.import_rows import TooManyRows
from cityhub.streams.registry.importer import CSV_CONTENT_TYPES, read_import
from cityhub.streams.registry.paging import DEFAULT_PAGE_SIZE, Page
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.subscriptions.service import Subscriptions

IMPORT_CONTENT_TYPES = frozenset({*CSV_CONTENT_TYPES, JSON})
PARSE_IN_THREAD_BYTES = 256 * 1024
"""Import bodies larger than this are parsed in a thread, so the event loop keeps serving."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Body caps, in bytes: JSON documents, and bulk imports; and the rows of an import."""

    max_body_bytes: int
    max_import_bytes: int
    max_import_rows: int


@dataclass(frozen=True, slots=True)
class Call:
    """One authenticated API call, as a handler sees it."""

    request: web.Request
    principal: Principal
    registry: Registry
    limits: Limits
    subscriptions_service: Subscriptions | None = field(default=None)

    @property
    def subscriptions(self) -> Subscriptions:
        """The subscriptions service; 503 where this instance runs without one."""
        if self.subscriptions_service is None:
            raise ApiProblem(503, "Subscriptions are not served by this instance of the API.")
        return self.subscriptions_service

    def path_param(self, name: str) -> str:
        return self.request.match_info[name]


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


def json_response(
    doc: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response serialised with orjson."""
    return web.Response(body=orjson.dumps(doc), status=status, headers=headers, content_type=JSON)


def _tenant_doc(tenant: Tenant) -> dict[str, Any]:
    return tenant.model_dump(mode="json", exclude={"kind"})


def _type_doc(device_type: DeviceType) -> dict[str, Any]:
    return device_type.model_dump(mode="json", exclude={"kind"})


def _device_doc(call: Call, device: Device) -> dict[str, Any]:
    """The device as this caller may see it: its data subject only for the device's own
    tenant's keys (an admin key of another tenant manages the device but never sees whom it
    measures)."""
    return device.public(with_subject=call.principal.tenant == device.tenant)


def _page_response(
    call: Call, page: Page[Any], render: Callable[[Any], dict[str, Any]]
) -> web.Response:
    """``{"items", "next_cursor"}``, and a ``Link: <...>; rel="next"`` header when there is a
    next page (the same query with the new cursor)."""
    headers = {}
    if page.next_cursor is not None:
        url = call.request.rel_url.update_query(cursor=page.next_cursor)
        headers["Link"] = f'<{url}>; rel="next"'
    return json_response(
        {"items": [render(item) for item in page.items], "next_cursor": page.next_cursor},
        headers=headers,
    )


def _created(doc: dict[str, Any], location: str) -> web.Response:
    return json_response(doc, status=201, headers={"Location": location})


# --- tenants -----------------------------------------------------------------------------------


async def list_tenants(call: Call) -> web.Response:
    tenants = call.registry.list_tenants(call.principal)
    return json_response({"items": [_tenant_doc(t) for t in tenants], "next_cursor": None})


async def create_tenant(call: Call) -> web.Response:
    spec = await read_model(call.request, TenantSpec, call.limits.max_body_bytes)
    tenant = await call.registry.create_tenant(call.principal, spec)
    return _created(_tenant_doc(tenant), f"{call.request.path}/{tenant.id}")


# --- device types ------------------------------------------------------------------------------


async def list_types(call: Call) -> web.Response:
    page = call.registry.list_types(
        call.principal,
        call.path_param("tenant"),
        limit=query_limit(call.request, DEFAULT_PAGE_SIZE),
        cursor=query_text(call.request, "cursor"),
    )
    return _page_response(call, page, _type_doc)


async def create_type(call: Call) -> web.Response:
    spec = await read_model(call.request, DeviceTypeSpec, call.limits.max_body_bytes)
    created = await call.registry.create_type(call.principal, call.path_param("tenant"), spec)
    return _created(_type_doc(created), f"{call.request.path}/{created.id}")


async def get_type(call: Call) -> web.Response:
    found = call.registry.get_type(call.principal, call.path_param("tenant"), call.path_param("id"))
    return json_response(_type_doc(found))


async def replace_type(call: Call) -> web.Response:
    spec = await read_model(call.request, DeviceTypeSpec, call.limits.max_body_bytes)
    replaced = await call.registry.replace_type(
        call.principal, call.path_param("tenant"), call.path_param("id"), spec
    )
    return json_response(_type_doc(replaced))


async def delete_type(call: Call) -> web.Response:
    await call.registry.delete_type(
        call.principal, call.path_param("tenant"), call.path_param("id")
    )
    return web.Response(status=204)


# --- devices -----------------------------------------------------------------------------------


async def list_devices(call: Call) -> web.Response:
    request = call.request
    page = call.registry.list_devices(
        call.principal,
        call.path_param("tenant"),
        type_id=query_text(request, "type"),
        area=query_text(request, "area"),
        tag=query_text(request, "tag"),
        active=query_bool(request, "active"),
        limit=query_limit(request, DEFAULT_PAGE_SIZE),
        cursor=query_text(request, "cursor"),
    )
    return _page_response(call, page, lambda device: _device_doc(call, device))


async def create_device(call: Call) -> web.Response:
    spec = await read_model(call.request, DeviceSpec, call.limits.max_body_bytes)
    device = await call.registry.create_device(call.principal, call.path_param("tenant"), spec)
    return _created(_device_doc(call, device), f"{call.request.path}/{device.id}")


async def get_device(call: Call) -> web.Response:
    device = call.registry.get_device(
        call.principal, call.path_param("tenant"), call.path_param("id")
    )
    return json_response(_device_doc(call, device))


async def replace_device(call: Call) -> web.Response:
    spec = await read_model(call.request, DeviceSpec, call.limits.max_body_bytes)
    device = await call.registry.replace_device(
        call.principal, call.path_param("tenant"), call.path_param("id"), spec
    )
    return json_response(_device_doc(call, device))


async def link_subject(call: Call) -> web.Response:
    link = await read_model(call.request, DataSubjectLink, call.limits.max_body_bytes)
    device = await call.registry.set_device_subject(
        call.principal, call.path_param("tenant"), call.path_param("id"), link.data_subject
    )
    return json_response(_device_doc(call, device))


async def unlink_subject(call: Call) -> web.Response:
    await call.registry.set_device_subject(
        call.principal, call.path_param("tenant"), call.path_param("id"), None
    )
    return web.Response(status=204)


async def delete_device(call: Call) -> web.Response:
    await call.registry.delete_device(
        call.principal, call.path_param("tenant"), call.path_param("id")
    )
    return web.Response(status=204)


async def import_devices(call: Call) -> web.Response:
    """Parse a CSV (The Things Stack's columns and cityhub's) or a JSON array, create or update
    each valid row, and report every row: its source line, id, status and errors. The Things
    Stack's JSON end devices are bound to their application and the ``ttsTenant`` given."""
    request = call.request
    require_content_type(request, IMPORT_CONTENT_TYPES)
    default_type = query_text(request, "type")
    tts_tenant = query_text(request, "ttsTenant", max_length=36)
    # The caller's own tenant labels a refusal's metric: the path's is not checked yet.
    tenant = call.principal.tenant

    def too_large(cap: int) -> QuotaExceeded:
        return QuotaExceeded(
            f"The import body is larger than {cap} bytes; split it into smaller imports.",
            quota="import_max_bytes",
            limit=cap,
            status=413,
            tenant=tenant,
        )

    body = await read_capped(request, call.limits.max_import_bytes, too_large=too_large)
    content_type = request.headers.get("Content-Type", request.content_type)
    max_rows = call.limits.max_import_rows
    parse = functools.partial(
        read_import, default_type=default_type, max_rows=max_rows, tts_tenant=tts_tenant
    )
    try:
        if len(body) > PARSE_IN_THREAD_BYTES:
            parsed = await asyncio.to_thread(parse, body, content_type)
        else:
            parsed = parse(body, content_type)
    except TooManyRows:
        raise QuotaExceeded(
            f"The import has more than {max_rows} rows; split it into smaller imports.",
            quota="import_max_rows",
            limit=max_rows,
            status=413,
            tenant=tenant,
        ) from None
    report = await call.registry.import_devices(
        call.principal, call.path_param("tenant"), parsed.rows
    )
    rows = []
    for result in report.rows:
        index = result.row - 1
        known = 0 <= index < len(parsed.lines)
        rows.append(
            {
                "row": result.row,
                "line": parsed.lines[index] if known else None,
                # A row that did not parse still names its id when it had one.
                "id": result.id or (parsed.ids[index] if known else None),
                "status": result.status,
                "errors": [{"field": e.field, "message": e.message} for e in result.errors],
            }
        )
    return json_response(
        {
            "created": report.created,
            "updated": report.updated,
            "failed": report.failed,
            "ignored_columns": list(parsed.ignored_columns),
            "rows": rows,
        }
    )


# --- keys --------------------------------------------------------------------------------------


async def list_keys(call: Call) -> web.Response:
    keys = call.registry.list_keys(call.principal, query_text(call.request, "tenant"))
    return json_response({"items": [key.public() for key in keys], "next_cursor": None})


async def create_key(call: Call) -> web.Response:
    spec = await read_model(call.request, ApiKeySpec, call.limits.max_body_bytes)
    key, secret = await call.registry.create_key(call.principal, spec.tenant, spec.role, spec.name)
    doc = {**key.public(), "secret": secret}
    response = _created(doc, f"{call.request.path}/{key.id}")
    # The only response that carries a secret: no cache may keep it.
    response.headers["Cache-Control"] = "no-store"
    return response


async def revoke_key(call: Call) -> web.Response:
    key = await call.registry.revoke_key(call.principal, call.path_param("id"))
    return json_response(key.public())


# --- subscriptions -----------------------------------------------------------------------------


async def list_subscriptions(call: Call) -> web.Response:
    items = call.subscriptions.list(call.principal, call.path_param("tenant"))
    public = call.subscriptions.public
    return json_response({"items": [public(s) for s in items], "next_cursor": None})


async def create_subscription(call: Call) -> web.Response:
    # The registered delivery kinds' model: every kind's options are read, a plugin's too.
    spec = await read_model(call.request, subscription_models().spec, call.limits.max_body_bytes)
    record, secret = await call.subscriptions.create(
        call.principal, call.path_param("tenant"), spec
    )
    doc = call.subscriptions.public(record)
    if secret is not None:
        doc["secret"] = secret
    response = _created(doc, f"{call.request.path}/{record.id}")
    if secret is not None:
        # The only response that carries the signing secret: no cache may keep it.
        response.headers["Cache-Control"] = "no-store"
    return response


async def get_subscription(call: Call) -> web.Response:
    record = call.subscriptions.get(
        call.principal, call.path_param("tenant"), call.path_param("id")
    )
    return json_response(call.subscriptions.public(record))


async def pause_subscription(call: Call) -> web.Response:
    record = await call.subscriptions.pause(
        call.principal, call.path_param("tenant"), call.path_param("id")
    )
    return json_response(call.subscriptions.public(record))


async def resume_subscription(call: Call) -> web.Response:
    record = await call.subscriptions.resume(
        call.principal, call.path_param("tenant"), call.path_param("id")
    )
    return json_response(call.subscriptions.public(record))


async def replay_subscription(call: Call) -> web.Response:
    spec = await read_model(call.request, ReplaySpec, call.limits.max_body_bytes)
    record = await call.subscriptions.replay(
        call.principal, call.path_param("tenant"), call.path_param("id"), spec
    )
    return json_response(call.subscriptions.public(record), status=202)


async def delete_subscription(call: Call) -> web.Response:
    await call.subscriptions.delete(
        call.principal, call.path_param("tenant"), call.path_param("id")
    )
    return web.Response(status=204)
