"""The OpenAPI 3.1 document of the API, generated from the route table and the pydantic models.

Request bodies are documented in pydantic's validation mode and responses in its serialisation
mode, so the document says what the code accepts and returns. Every operation lists its problem
responses (``application/problem+json``); every operation needs a key but the document itself
and the register of processing activities' public reads.

The document follows the NL API Design Rules (``make lint`` runs their Spectral ruleset on it):
its one server is ``/api/v1`` (paths are relative to it), ``info.version`` is ``API_VERSION``,
every response declares the ``API-Version`` header, every operation may answer 400 (a query
parameter or a body that is not valid, each fault listed), and ``info.contact`` names who runs
the hub (``CITYHUB_HTTP__CONTACT__*``).

A route that answers conditional requests (``Route.cacheable``: the open data and its
catalogue) documents the ``If-None-Match`` request header, the ``ETag`` and ``Cache-Control``
of its answers and the 304 Not Modified; a body without a model is documented in each media
type it comes in (a daily file as CSV or Parquet, the catalogue as JSON-LD, Turtle or JSON).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from cityhub.schemas.registry import DeviceSpec
from cityhub.schemas.settings import ApiContactSettings
from cityhub.streams.api.models import Problem
from cityhub.streams.api.problems import PROBLEM_CONTENT_TYPE, problem_type
from cityhub.streams.api.route_model import API_VERSION, PREFIX, Route
from cityhub.streams.api.routes import ROUTES

REF_TEMPLATE = "#/components/schemas/{model}"
OPENAPI_PATH = PREFIX + "/openapi.json"
"""Where the document is served (no key; every origin may read it)."""
SERVER_URL = PREFIX
"""The document's one server, relative to where the document is served: paths follow it."""

_PROBLEM_DESCRIPTIONS = {
    400: "Invalid input: a query parameter that is unknown, repeated, missing or not valid, "
    "a body that is not JSON, or a field that does not validate; errors names each one.",
    401: "No API key, or an unknown or revoked one.",
    403: "The key's role may not do this.",
    404: "No such resource in the key's tenant (another tenant's resources are not found).",
    409: "Conflicts with what exists (a taken id or DevEUI, a type still in use), or the "
    "tenant is at a quota (type quota-exceeded: quota, limit and setting name it).",
    413: "The body is larger than the cap, or an import has more rows than its quota.",
    415: "The route does not take this content type.",
    429: "Too many requests from this key (or address, without a valid key), or too many live "
    "streams open: type quota-exceeded; try again after Retry-After seconds.",
    500: "A bug; the response's request_id is in the server's log.",
    503: "The registry's topic could not be written or read back in time; try again.",
}


def _models(routes: Iterable[Route]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Problem, "serialization")]
    for route in routes:
        body, response = route.body_model, route.response_model
        if body is not None:
            wanted.append((body, "validation"))
        if response is not None:
            wanted.append((response, "serialization"))
    return list(dict.fromkeys(wanted))


_VERSION_HEADER = {
    "API-Version": {
        "description": f"The API's full version (semantic versioning), {API_VERSION} here.",
        "schema": {"type": "string", "example": API_VERSION},
    }
}
"""Declared on every response: every response carries it (``cityhub.streams.api.adr``)."""


def _problem(status: int, refs: Mapping[tuple[Any, JsonSchemaMode], Any]) -> Any:
    response: dict[str, Any] = {
        "description": f"{_PROBLEM_DESCRIPTIONS.get(status, 'Error')} ({problem_type(status)})",
        "headers": dict(_VERSION_HEADER),
        "content": {PROBLEM_CONTENT_TYPE: {"schema": refs[(Problem, "serialization")]}},
    }
    if status == 401:
        response["headers"]["WWW-Authenticate"] = {
            "description": "Bearer: present an API key.",
            "schema": {"type": "string"},
        }
    elif status == 429:
        response["headers"]["Retry-After"] = {
            "description": "Whole seconds to wait before trying again (at least 1).",
            "schema": {"type": "integer", "minimum": 1},
        }
    return response


def _operation(
    route: Route,
    refs: Mapping[tuple[Any, JsonSchemaMode], Any],
    *,
    max_body_bytes: int,
    max_import_bytes: int,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
    }
    if route.public:
        operation["security"] = []  # no key; rate-limited per client address
    elif route.resident:
        operation["security"] = [{"resident": []}]  # a resident's token, never an API key
    parameters = [
        {
            "name": p.name,
            "in": p.location,
            "required": p.required or p.location == "path",
            "description": p.description,
            "schema": p.schema,
        }
        for p in route.params
    ]
    if route.cacheable:
        parameters.append(_IF_NONE_MATCH)
    if parameters:
        operation["parameters"] = parameters
    body = route.body_model
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "description": f"JSON, at most {max_body_bytes} bytes.",
            "content": {"application/json": {"schema": refs[(body, "validation")]}},
        }
    elif route.body_types:
        content: dict[str, Any] = {}
        for media_type in route.body_types:
            if media_type == "application/json":
                # Rows are validated one by one; each should be a device spec.
                item = refs.get((DeviceSpec, "validation"), {"type": "object"})
                content[media_type] = {"schema": {"type": "array", "items": item}}
            else:
                content[media_type] = {"schema": {"type": "string"}}
        operation["requestBody"] = {
            "required": True,
            "description": f"At most {max_import_bytes} bytes.",
            "content": content,
        }
    success: dict[str, Any] = {"description": "Done.", "headers": dict(_VERSION_HEADER)}
    response = route.response_model
    media_types = (route.media_type, *route.other_media_types)
    if response is not None:
        model = {"schema": refs[(response, "serialization")]}
        success["content"] = {
            m: model if m == route.media_type else _untyped_content(m) for m in media_types
        }
    elif route.media_type != "application/json" or route.other_media_types:
        success["content"] = {m: _untyped_content(m) for m in media_types}
    cache_headers = ("ETag", "Cache-Control") if route.cacheable else ()
    for name in (*route.headers, *cache_headers):
        success["headers"][name] = _header(name)
    responses: dict[str, Any] = {str(route.status): success}
    if route.cacheable:
        # Conditional requests (RFC 9110 13.1.2): the answers say the ETag and how long it
        # may be cached again; a 304 has no body (cityhub.streams.api.open_data_answers and
        # .catalogue).
        headers = dict(_VERSION_HEADER)
        for name in (*cache_headers, *(h for h in route.headers if h == "Link")):
            headers[name] = _header(name)
        responses["304"] = {
            "description": "Not Modified: If-None-Match names the current ETag; no body.",
            "headers": headers,
        }
    # 400: every route checks its query (an unknown parameter too), cityhub.streams.api.adr.
    # 429: every route is rate-limited, per key or per client address without one
    # (cityhub.streams.api.throttle).
    statuses = {400, 429, 500, 503, *route.problems} | (set() if route.public else {401})
    for status in sorted(statuses):
        responses[str(status)] = _problem(status, refs)
    operation["responses"] = responses
    return operation


_HEADER_DESCRIPTIONS = {
    "Location": "The created resource's path.",
    "Link": 'The next page, as <url>; rel="next", when there is one; an open-data answer\'s '
    'licence, as <uri>; rel="license".',
    "ETag": "A strong entity tag of this representation: send it back in If-None-Match to "
    "get 304 while it is unchanged.",
    "Cache-Control": "public, max-age=<seconds>: anyone may cache the answer that long "
    "(open data: open_data.cache_seconds; a complete day's file: a day).",
    "Content-Disposition": 'attachment; filename="<dataset>-<YYYY-MM-DD>.<csv|parquet>"',
}

_IF_NONE_MATCH: dict[str, Any] = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "ETags of representations the client holds (comma-separated); when one "
    "is the current one, the answer is 304 Not Modified without a body.",
    "schema": {"type": "string"},
}
"""The request header of a conditional GET (``Route.cacheable``)."""


def _header(name: str) -> dict[str, Any]:
    return {"schema": {"type": "string"}, "description": _HEADER_DESCRIPTIONS[name]}


def _untyped_content(media_type: str) -> dict[str, Any]:
    """The content of a success body without a model, by its media type: a JSON document
    (``application/json``, ``...+json``), text, or bytes (OpenAPI 3.1: raw bytes have no
    schema)."""
    essence = media_type.split(";", 1)[0].strip()
    if essence == "application/json" or essence.endswith("+json"):
        return {"schema": {"type": "object"}}
    if essence.startswith("text/"):
        return {"schema": {"type": "string"}}
    return {}


def build_openapi(
    *,
    max_body_bytes: int,
    max_import_bytes: int,
    routes: Iterable[Route] = ROUTES,
    contact: ApiContactSettings | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (all of the API's by default), as a dict;
    ``contact`` (default: the settings' defaults) is its ``info.contact``."""
    contact = contact or ApiContactSettings()
    routes = tuple(routes)
    keys = _models(routes)
    if (DeviceSpec, "validation") not in keys:
        keys.append((DeviceSpec, "validation"))
    refs, definitions = models_json_schema(keys, ref_template=REF_TEMPLATE)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(
            route, refs, max_body_bytes=max_body_bytes, max_import_bytes=max_import_bytes
        )
    paths[OPENAPI_PATH.removeprefix(SERVER_URL)] = {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document (no key; every origin may read it)",
            "tags": ["meta"],
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI document.",
                    "headers": dict(_VERSION_HEADER),
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    security: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cityhub operator API",
            "version": API_VERSION,
            "contact": contact.model_dump(),
            "description": (
                "Register, import and manage a city's sensors: tenants, device types, devices "
                "and API keys. Errors are RFC 9457 problem documents. Present a key as "
                "'Authorization: Bearer <secret>' or 'X-API-Key: <secret>'."
            ),
        },
        "servers": [{"url": SERVER_URL, "description": "This hub's API, version 1."}],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key's secret.",
                },
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "resident": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A resident's token (chr_...) that their tenant issued, or "
                    "an OpenID Connect token of the municipality's identity provider where one "
                    "is configured; only the /me routes take it, and they take no API key.",
                },
            },
        },
        "security": security,
    }
