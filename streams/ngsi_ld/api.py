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

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Final

import orjson
import psycopg
from aiohttp import web

from cityhub.connectors.ngsi_ld.context import (
    CONTEXT_PATH,
    LD_JSON,
    context_document,
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
    geo_matches,
    matches,
    parse_q,
)
from cityhub.schemas.errors import ConfigurationError
from cityhub.schemas.registry import Role
from cityhub.schemas.settings import Settings
from cityhub.streams.api.auth import authenticate
from cityhub.streams.history.reads import ReadRejected, Viewer
from cityhub.streams.ngsi_ld.devices import agreement_of, visible_device, visible_devices
from cityhub.streams.ngsi_ld.params import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    NgsiError,
    answer,
    bad,
    count_param,
    geo_query,
    id_pattern_param,
    int_param,
    key_values,
    names,
    simplified,
    time_range,
    wants_ld,
)
from cityhub.streams.ngsi_ld.source import HistoryValues
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.sharing.grants import Grant
from cityhub.streams.sharing.read_access import NO_SHARING, ReadAccess

log = logging.getLogger("cityhub.ngsi_ld")

BASE: Final = "/ngsi-ld/v1"
MAX_VALUE_DEVICES: Final = 10_000
QUERY_BUDGET_S: Final = 2.0
"""How long one query may filter entities (the patterns and ``q`` over every device visible to
the caller); then it is refused as ``TooComplexQuery``."""
YIELD_EVERY: Final = 256
"""Entities filtered between two turns of the event loop (and two checks of the budget), so
that a large query never holds the other requests of the process back."""


class _QueryBudget:
    """Gives the event loop a turn every ``YIELD_EVERY`` entities, and refuses the query once
    it filtered for ``QUERY_BUDGET_S``: its patterns match in linear time, but over 100 000
    devices a crafted pattern and crafted names could still cost seconds."""

    def __init__(self) -> None:
        self._deadline = time.monotonic() + QUERY_BUDGET_S
        self._count = 0

    async def spend(self) -> None:
        self._count += 1
        if self._count % YIELD_EVERY:
            return
        if time.monotonic() > self._deadline:
            raise NgsiError(
                403,
                "TooComplexQuery",
                f"the query took more than {QUERY_BUDGET_S:g} s to filter the entities; narrow "
                "it by type, id or georel, or simplify idPattern and q",
            )
        await asyncio.sleep(0)


"""Most devices a query with ``q`` or ``attrs`` reads the values of (it filters on them)."""

NGSI_REGISTRY_KEY = web.AppKey("ngsi_ld_registry", Registry)
NGSI_VALUES_KEY = web.AppKey("ngsi_ld_values", HistoryValues)
"""The history reader; ``add_ngsi_ld_routes`` makes one from the settings unless a test put
its own here first."""
NGSI_ACCESS_KEY = web.AppKey("ngsi_ld_access", ReadAccess)
"""The agreements the reads apply and count (``add_ngsi_ld_routes(access=)``)."""


def _grants(request: web.Request, who: Principal) -> tuple[Grant, ...]:
    if who.role is Role.ADMIN:
        return ()
    return request.app[NGSI_ACCESS_KEY].active_for(who.tenant)


def _viewer(who: Principal, grants: tuple[Grant, ...]) -> Viewer:
    return Viewer.admin() if who.role is Role.ADMIN else Viewer.of_tenant(who.tenant, grants)


def _count(
    request: web.Request, who: Principal, grants: tuple[Grant, ...], items: dict[str, int]
) -> None:
    """Count ``items`` (device id -> items returned of it) under the agreements that shared
    them."""
    if not grants:
        return
    view = request.app[NGSI_REGISTRY_KEY].view
    tally: dict[str, int] = {}
    for device_id, n in items.items():
        agreement = agreement_of(view, who, device_id, grants)
        if agreement is not None and n > 0:
            tally[agreement] = tally.get(agreement, 0) + n
    request.app[NGSI_ACCESS_KEY].count(tally)


def _devices_of(docs: Sequence[dict[str, Any]]) -> dict[str, int]:
    found: dict[str, int] = {}
    for doc in docs:
        ref = parse_entity_id(str(doc.get("id", "")))
        if ref is not None:
            found[ref.device_id] = found.get(ref.device_id, 0) + 1
    return found


def _tenant_header(request: web.Request) -> str | None:
    return request.headers.get("NGSILD-Tenant") or None


# --- handlers ---------------------------------------------------------------------------------


async def get_context(request: web.Request) -> web.Response:
    """cityhub's ``@context`` document."""
    return web.Response(body=orjson.dumps(context_document()), content_type=LD_JSON)


async def query_entities(request: web.Request) -> web.Response:
    """``GET /ngsi-ld/v1/entities`` (see the module docstring)."""
    registry = request.app[NGSI_REGISTRY_KEY]
    who = authenticate(registry, request.headers)
    try:
        wants_ld(request)
        types = names(request, "type", terms=True)
        ids = names(request, "id")
        id_pattern = id_pattern_param(request)
        attrs = names(request, "attrs", terms=True)
        q_text = request.query.get("q")
        q: Expr | None = None if q_text is None else parse_q(q_text)
        geo = geo_query(request)
        limit = int_param(request, "limit", low=0, high=MAX_LIMIT)
        limit = DEFAULT_LIMIT if limit is None else limit
        offset = int_param(request, "offset", low=0) or 0
        count = count_param(request)
        simple = key_values(request)
        if all(p is None for p in (types, ids, id_pattern, attrs, q, geo)):
            raise bad("type", "a query needs type, id, idPattern, attrs, q or georel")
        pairs: list[tuple[str, DeviceFacts, str]] = []
        view = registry.view
        grants = _grants(request, who)
        devices = visible_devices(view, who, only_tenant=_tenant_header(request), grants=grants)
        budget = _QueryBudget()
        for device in devices:
            await budget.spend()
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
        viewer = _viewer(who, grants)
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
                await budget.spend()
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
        return bad(exc.parameter, exc.detail).response()
    except NgsiError as exc:
        return exc.response()
    except _UNAVAILABLE as exc:
        return _unavailable(exc)
    returned = [d for d in docs if d is not None]
    _count(request, who, grants, _devices_of(returned))
    out = [simplified(d) if simple else d for d in returned]
    headers = {"NGSILD-Results-Count": str(total)} if count else None
    return answer(request, out, headers=headers)


def _device_ids(pairs: Sequence[tuple[str, DeviceFacts, str]]) -> list[str]:
    return list(dict.fromkeys(device.device_id for _, device, _ in pairs))


_UNAVAILABLE = (ReadRejected, psycopg.Error, ConfigurationError)
"""A read refused, a database that failed, or no password file for it."""


def _unavailable(exc: Exception) -> web.Response:
    log.warning("NGSI-LD read failed: %s", type(exc).__name__)
    if isinstance(exc, ReadRejected):
        return bad(exc.field, exc.detail).response()
    return NgsiError(
        503, "InternalError", "The history store cannot be read now; try again."
    ).response(headers={"Retry-After": "5"})


def _entity_of(
    request: web.Request, who: Principal, grants: tuple[Grant, ...]
) -> tuple[DeviceFacts, str]:
    """The device and entity type of the path's entity id; ResourceNotFound otherwise."""
    raw = request.match_info["entityId"]
    if ":" not in raw:
        raise bad("entityId", "must be a URI, e.g. urn:ngsi-ld:Device:<tenant>:<device id>")
    ref = parse_entity_id(raw)
    registry = request.app[NGSI_REGISTRY_KEY]
    device = None
    if ref is not None:
        tenant = _tenant_header(request)
        if tenant is None or tenant == ref.tenant:
            device = visible_device(registry.view, who, ref.tenant, ref.device_id, grants)
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
        wants_ld(request)
        grants = _grants(request, who)
        device, model = _entity_of(request, who, grants)
        attrs = names(request, "attrs", terms=True)
        simple = key_values(request)
        values = request.app[NGSI_VALUES_KEY]
        readings = await values.latest(_viewer(who, grants), [device.device_id])
        doc = entity(device, model, readings.get(device.device_id, []), attrs=attrs)
    except NgsiError as exc:
        return exc.response()
    except _UNAVAILABLE as exc:
        return _unavailable(exc)
    if doc is None:  # none of attrs: the entity without attributes
        doc = {"id": entity_id(model, device.tenant, device.device_id), "type": model}
    _count(request, who, grants, {device.device_id: 1})
    return answer(request, simplified(doc) if simple else doc)


async def retrieve_temporal(request: web.Request) -> web.Response:
    """``GET /ngsi-ld/v1/temporal/entities/{entityId}``."""
    registry = request.app[NGSI_REGISTRY_KEY]
    who = authenticate(registry, request.headers)
    try:
        wants_ld(request)
        grants = _grants(request, who)
        device, model = _entity_of(request, who, grants)
        attrs = names(request, "attrs", terms=True)
        last_n = int_param(request, "lastN", low=1, high=MAX_LIMIT)
        start, end = time_range(request)
        quantities = None
        if attrs is not None:
            quantities = sorted(set().union(*(device.mapping.quantities_of(a) for a in attrs)))
        values = request.app[NGSI_VALUES_KEY]
        readings: list[Reading] = []
        if quantities != []:
            readings, _more = await values.series(
                _viewer(who, grants),
                device.device_id,
                quantities=quantities,
                start=start,
                end=end,
                last_n=last_n,
            )
        doc = temporal_entity(device, model, readings, attrs=attrs)
    except NgsiError as exc:
        return exc.response()
    except _UNAVAILABLE as exc:
        return _unavailable(exc)
    _count(request, who, grants, {device.device_id: len(readings)})
    return answer(request, doc)


# --- mounting ---------------------------------------------------------------------------------


async def _close_values(app: web.Application) -> None:
    await app[NGSI_VALUES_KEY].close()


def add_ngsi_ld_routes(
    app: web.Application,
    registry: Registry,
    *,
    settings: Settings | None = None,
    access: ReadAccess = NO_SHARING,
) -> None:
    """Serve ``/ngsi-ld/v1`` on ``app`` over ``registry`` and the history store of
    ``settings`` (default: the environment's), unless ``app[NGSI_VALUES_KEY]`` holds a reader
    already; the app closes the reader when it is cleaned up. ``access``: the agreements the
    reads apply (another tenant's devices they share are entities too) and count."""
    app[NGSI_REGISTRY_KEY] = registry
    app[NGSI_ACCESS_KEY] = access
    if NGSI_VALUES_KEY not in app:
        app[NGSI_VALUES_KEY] = HistoryValues(settings or Settings())
    app.on_cleanup.append(_close_values)
    app.router.add_get(CONTEXT_PATH, get_context, name="ngsiLdContext")
    app.router.add_get(f"{BASE}/entities", query_entities, name="ngsiLdQueryEntities")
    app.router.add_get(f"{BASE}/entities/{{entityId}}", retrieve_entity, name="ngsiLdEntity")
    app.router.add_get(
        f"{BASE}/temporal/entities/{{entityId}}", retrieve_temporal, name="ngsiLdTemporalEntity"
    )
