"""``/ngsi-ld/v1``: the NGSI-LD read API (ETSI GS CIM 009 V1.8) over the registry and the
history store.

Routes (all GET; every one but the context document asks for an API key, as ``/api/v1``):

- ``/ngsi-ld/v1/context.jsonld``: cityhub's ``@context`` document (no key: JSON-LD processors
  fetch it);
- ``/ngsi-ld/v1/entities``: query entities by ``type``, ``id``, ``idPattern``, ``attrs``, ``q``
  and the geo-query (``georel``, ``geometry``, ``coordinates``), paged by ``limit`` (default
  20, at most 1000) and ``offset``, ``count=true`` for the ``NGSILD-Results-Count`` header,
  ``options=keyValues`` for the simplified form;
- ``/ngsi-ld/v1/entities/{entityId}``: one entity, ``attrs`` and ``options`` as above;
- ``/ngsi-ld/v1/temporal/entities/{entityId}``: its history, ``timerel`` (``before``,
  ``after``, ``between``) with ``timeAt`` and ``endTimeAt``, ``attrs``, ``lastN``.

``NGSILD-Tenant`` narrows every answer to one tenant. An answer is ``application/ld+json``
with the ``@context`` in the body when the request accepts it, else ``application/json`` with
a ``Link`` header to the context document; an ``Accept`` that allows neither is a 406. Errors
are NGSI-LD ProblemDetails (``type`` ``https://uri.etsi.org/ngsi-ld/errors/<Name>``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import orjson
import psycopg
from aiohttp import web

from cityhub.connectors.ngsi_ld.context import (
    CONTEXT_PATH,
    JSON,
    LD_JSON,
    context_document,
    link_header,
)
from cityhub.connectors.ngsi_ld.entities import (
    DeviceFacts,
    Reading,
    entity,
    entity_id,
    entity_types,
    parse_entity_id,
    temporal_entity,
)
from cityhub.connectors.ngsi_ld.query import (
    BadQuery,
    Expr,
    GeoQuery,
    geo_matches,
    matches,
    parse_geo,
    parse_q,
)
from cityhub.schemas.errors import InvalidTimestamp
from cityhub.schemas.registry import Role
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.api.auth import authenticate
from cityhub.streams.history.reads import ReadRejected, Viewer
from cityhub.streams.ngsi_ld.devices import visible_device, visible_devices
from cityhub.streams.ngsi_ld.source import HistoryValues
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry

log = logging.getLogger("cityhub.ngsi_ld")

BASE: Final = "/ngsi-ld/v1"
ERRORS: Final = "https://uri.etsi.org/ngsi-ld/errors/"
DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 1000
MAX_VALUE_DEVICES: Final = 10_000
"""Most devices a query with ``q`` or ``attrs`` reads the values of (it filters on them)."""

NGSI_REGISTRY_KEY = web.AppKey("ngsi_ld_registry", Registry)
NGSI_VALUES_KEY = web.AppKey("ngsi_ld_values", HistoryValues)
"""The history reader; ``add_ngsi_ld_routes`` makes one from the settings unless a test put
its own here first."""


class NgsiError(Exception):
    """An answer as an NGSI-LD ProblemDetails."""

    def __init__(self, status: int, name: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.name = name
        self.detail = detail

    def response(self) -> web.Response:
        body = {
            "type": ERRORS + self.name if self.name else "about:blank",
            "title": _TITLES.get(self.name, "Error"),
            "status": self.status,
            "detail": self.detail,
        }
        return web.json_response(body, status=self.status, content_type=JSON)


_TITLES: Final = {
    "BadRequestData": "The request includes input data which does not meet the requirements",
    "InvalidRequest": "The request is not well formed",
    "ResourceNotFound": "The referred resource has not been found",
    "TooManyResults": "The query matches too many entities",
    "InternalError": "The history store cannot be read now",
    "": "Not Acceptable",
}


def _bad(parameter: str, detail: str) -> NgsiError:
    return NgsiError(400, "BadRequestData", f"{parameter}: {detail}")


# --- the answer's form ------------------------------------------------------------------------


def _wants_ld(request: web.Request) -> bool:
    """True for ``application/ld+json``, False for ``application/json``; 406 otherwise."""
    accept = request.headers.get("Accept", "")
    ranges = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    if not ranges or LD_JSON in ranges:
        return LD_JSON in ranges
    if any(r in (JSON, "*/*", "application/*") for r in ranges):
        return False
    raise NgsiError(406, "", "Accept application/ld+json or application/json.")


def context_url(request: web.Request) -> str:
    """The absolute URL of the context document on the host the request came to."""
    return f"{request.scheme}://{request.host}{CONTEXT_PATH}"


def _answer(
    request: web.Request,
    body: dict[str, Any] | list[dict[str, Any]],
    *,
    headers: dict[str, str] | None = None,
) -> web.Response:
    url = context_url(request)
    out_headers = dict(headers or {})
    if _wants_ld(request):
        if isinstance(body, list):
            body = [{**doc, "@context": url} for doc in body]
        else:
            body = {**body, "@context": url}
        content_type = LD_JSON
    else:
        out_headers["Link"] = link_header(url)
        content_type = JSON
    return web.Response(
        body=orjson.dumps(body), content_type=content_type, headers=out_headers, status=200
    )


# --- parameters -------------------------------------------------------------------------------


def _list(request: web.Request, name: str) -> list[str] | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise _bad(name, "must name at least one item")
    return items


def _int(request: web.Request, name: str, *, low: int, high: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else -1
    if value < low or (high is not None and value > high):
        most = "" if high is None else f" up to {high}"
        raise _bad(name, f"must be an integer from {low}{most}")
    return value


def _time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return parse_rfc3339(raw)
    except InvalidTimestamp:
        raise _bad(name, "must be an RFC 3339 date-time, e.g. 2026-12-03T10:00:00Z") from None


def _simplified(doc: dict[str, Any]) -> dict[str, Any]:
    """``options=keyValues``: each attribute by its value (a Relationship by its object)."""
    out: dict[str, Any] = {}
    for name, value in doc.items():
        if isinstance(value, dict) and value.get("type") == "Relationship":
            out[name] = value.get("object")
        elif isinstance(value, dict) and "value" in value:
            out[name] = value["value"]
        else:
            out[name] = value
    return out


def _key_values(request: web.Request) -> bool:
    options = set((request.query.get("options") or "").split(","))
    return "keyValues" in options or request.query.get("format") == "simplified"


def _viewer(who: Principal) -> Viewer:
    return Viewer.admin() if who.role is Role.ADMIN else Viewer.of_tenant(who.tenant)


def _tenant_header(request: web.Request) -> str | None:
    return request.headers.get("NGSILD-Tenant") or None


# --- handlers ---------------------------------------------------------------------------------


async def get_context(request: web.Request) -> web.Response:
    """cityhub's ``@context`` document."""
    return web.Response(body=orjson.dumps(context_document()), content_type=LD_JSON)


def _id_pattern(request: web.Request) -> re.Pattern[str] | None:
    raw = request.query.get("idPattern")
    if raw is None:
        return None
    if len(raw) > 256:
        raise _bad("idPattern", "is at most 256 characters")
    try:
        return re.compile(raw)
    except re.error as exc:
        raise _bad("idPattern", f"is not a regular expression: {exc}") from None


def _geo(request: web.Request) -> GeoQuery | None:
    georel = request.query.get("georel")
    if georel is None:
        return None
    geoproperty = request.query.get("geoproperty", "location")
    if geoproperty != "location":
        raise _bad("geoproperty", "cityhub's entities have one GeoProperty: location")
    return parse_geo(georel, request.query.get("geometry"), request.query.get("coordinates"))


async def query_entities(request: web.Request) -> web.Response:
    """``GET /ngsi-ld/v1/entities`` (see the module docstring)."""
    registry = request.app[NGSI_REGISTRY_KEY]
    who = authenticate(registry, request.headers)
    try:
        _wants_ld(request)
        types = _list(request, "type")
        ids = _list(request, "id")
        id_pattern = _id_pattern(request)
        attrs = _list(request, "attrs")
        q_text = request.query.get("q")
        q: Expr | None = None if q_text is None else parse_q(q_text)
        geo = _geo(request)
        limit = _int(request, "limit", low=0, high=MAX_LIMIT)
        limit = DEFAULT_LIMIT if limit is None else limit
        offset = _int(request, "offset", low=0) or 0
        count = request.query.get("count") == "true"
        if all(p is None for p in (types, ids, id_pattern, attrs, q, geo)):
            raise _bad("type", "a query needs type, id, idPattern, attrs, q or georel")
        pairs: list[tuple[str, DeviceFacts, str]] = []
        view = registry.view
        for device in visible_devices(view, who, only_tenant=_tenant_header(request)):
            point = (
                None
                if device.location is None
                else (device.location.longitude, device.location.latitude)
            )
            if geo is not None and not geo_matches(geo, point):
                continue
            for model in entity_types(device.mapping):
                urn = entity_id(model.value, device.tenant, device.device_id)
                if types is not None and model.value not in types:
                    continue
                if ids is not None and urn not in ids:
                    continue
                if id_pattern is not None and id_pattern.fullmatch(urn) is None:
                    continue
                pairs.append((urn, device, model.value))
        pairs.sort(key=lambda pair: pair[0])
        values = request.app[NGSI_VALUES_KEY]
        viewer = _viewer(who)
        if q is None and attrs is None:
            total = len(pairs)
            page = pairs[offset : offset + limit]
            readings = await values.latest(viewer, _device_ids(page))
            docs: list[dict[str, Any] | None] = [
                entity(d, t, readings.get(d.device_id, [])) for _, d, t in page
            ]
        else:
            if len({d.device_id for _, d, _ in pairs}) > MAX_VALUE_DEVICES:
                raise NgsiError(
                    403,
                    "TooManyResults",
                    f"q and attrs filter at most {MAX_VALUE_DEVICES} devices' values; narrow "
                    "the query by type, id, idPattern or georel",
                )
            readings = await values.latest(viewer, _device_ids(pairs))
            matched: list[dict[str, Any] | None] = []
            for _, device, entity_type in pairs:
                found = readings.get(device.device_id, [])
                whole = entity(device, entity_type, found)
                if whole is None or (q is not None and not matches(q, whole)):
                    continue
                doc = whole if attrs is None else entity(device, entity_type, found, attrs=attrs)
                if doc is not None:
                    matched.append(doc)
            total = len(matched)
            docs = matched[offset : offset + limit]
    except BadQuery as exc:
        return _bad(exc.parameter, exc.detail).response()
    except NgsiError as exc:
        return exc.response()
    except (ReadRejected, psycopg.Error) as exc:
        return _unavailable(exc)
    out = [_simplified(d) if _key_values(request) else d for d in docs if d is not None]
    headers = {"NGSILD-Results-Count": str(total)} if count else None
    return _answer(request, out, headers=headers)


def _device_ids(pairs: Sequence[tuple[str, DeviceFacts, str]]) -> list[str]:
    return list(dict.fromkeys(device.device_id for _, device, _ in pairs))


def _unavailable(exc: Exception) -> web.Response:
    log.warning("NGSI-LD read failed: %s", type(exc).__name__)
    if isinstance(exc, ReadRejected):
        return _bad(exc.field, exc.detail).response()
    return NgsiError(
        503, "InternalError", "The history store cannot be read now; try again."
    ).response()


def _entity_of(request: web.Request, who: Principal) -> tuple[DeviceFacts, str]:
    """The device and entity type of the path's entity id; ResourceNotFound otherwise."""
    raw = request.match_info["entityId"]
    if ":" not in raw:
        raise _bad("entityId", "must be a URI, e.g. urn:ngsi-ld:Device:<tenant>:<device id>")
    ref = parse_entity_id(raw)
    registry = request.app[NGSI_REGISTRY_KEY]
    device = None
    if ref is not None:
        tenant = _tenant_header(request)
        if tenant is None or tenant == ref.tenant:
            device = visible_device(registry.view, who, ref.tenant, ref.device_id)
    if (
        device is None
        or ref is None
        or ref.type not in {m.value for m in entity_types(device.mapping)}
    ):
        raise NgsiError(404, "ResourceNotFound", f"no entity {raw[:200]!r} is visible to this key")
    return device, ref.type


async def retrieve_entity(request: web.Request) -> web.Response:
    """``GET /ngsi-ld/v1/entities/{entityId}``."""
    registry = request.app[NGSI_REGISTRY_KEY]
    who = authenticate(registry, request.headers)
    try:
        _wants_ld(request)
        device, model = _entity_of(request, who)
        attrs = _list(request, "attrs")
        values = request.app[NGSI_VALUES_KEY]
        readings = await values.latest(_viewer(who), [device.device_id])
        doc = entity(device, model, readings.get(device.device_id, []), attrs=attrs)
    except NgsiError as exc:
        return exc.response()
    except (ReadRejected, psycopg.Error) as exc:
        return _unavailable(exc)
    if doc is None:  # none of attrs: the entity without attributes
        doc = {"id": entity_id(model, device.tenant, device.device_id), "type": model}
    return _answer(request, _simplified(doc) if _key_values(request) else doc)


TIMERELS: Final = ("before", "after", "between")


async def retrieve_temporal(request: web.Request) -> web.Response:
    """``GET /ngsi-ld/v1/temporal/entities/{entityId}``."""
    registry = request.app[NGSI_REGISTRY_KEY]
    who = authenticate(registry, request.headers)
    try:
        _wants_ld(request)
        device, model = _entity_of(request, who)
        attrs = _list(request, "attrs")
        last_n = _int(request, "lastN", low=1, high=MAX_LIMIT)
        start, end = _time_range(request)
        quantities = None
        if attrs is not None:
            quantities = sorted(set().union(*(device.mapping.quantities_of(a) for a in attrs)))
        values = request.app[NGSI_VALUES_KEY]
        readings: list[Reading] = []
        if quantities != []:
            readings, _more = await values.series(
                _viewer(who),
                device.device_id,
                quantities=quantities,
                start=start,
                end=end,
                last_n=last_n,
            )
        doc = temporal_entity(device, model, readings, attrs=attrs)
    except NgsiError as exc:
        return exc.response()
    except (ReadRejected, psycopg.Error) as exc:
        return _unavailable(exc)
    return _answer(request, doc)


def _time_range(request: web.Request) -> tuple[datetime | None, datetime | None]:
    timerel = request.query.get("timerel")
    time_at = _time(request, "timeAt")
    end_time_at = _time(request, "endTimeAt")
    if timerel is None:
        if time_at is not None or end_time_at is not None:
            raise _bad("timerel", "is required with timeAt")
        return None, None
    if timerel not in TIMERELS:
        raise _bad("timerel", "must be before, after or between")
    if time_at is None:
        raise _bad("timeAt", f"is required with timerel={timerel}")
    if timerel == "before":
        return None, time_at
    if timerel == "after":
        return time_at, None
    if end_time_at is None:
        raise _bad("endTimeAt", "is required with timerel=between")
    if end_time_at <= time_at:
        raise _bad("endTimeAt", "must be after timeAt")
    return time_at, end_time_at


# --- mounting ---------------------------------------------------------------------------------


async def _close_values(app: web.Application) -> None:
    await app[NGSI_VALUES_KEY].close()


def add_ngsi_ld_routes(
    app: web.Application, registry: Registry, *, settings: Settings | None = None
) -> None:
    """Serve ``/ngsi-ld/v1`` on ``app`` over ``registry`` and the history store of
    ``settings`` (default: the environment's), unless ``app[NGSI_VALUES_KEY]`` holds a reader
    already; the app closes the reader when it is cleaned up."""
    app[NGSI_REGISTRY_KEY] = registry
    if NGSI_VALUES_KEY not in app:
        app[NGSI_VALUES_KEY] = HistoryValues(settings or Settings())
    app.on_cleanup.append(_close_values)
    app.router.add_get(CONTEXT_PATH, get_context, name="ngsiLdContext")
    app.router.add_get(f"{BASE}/entities", query_entities, name="ngsiLdQueryEntities")
    app.router.add_get(f"{BASE}/entities/{{entityId}}", retrieve_entity, name="ngsiLdEntity")
    app.router.add_get(
        f"{BASE}/temporal/entities/{{entityId}}", retrieve_temporal, name="ngsiLdTemporalEntity"
    )
