"""The public DCAT-AP-NL catalogue's route: ``GET /api/v1/open/catalog``, without a key.

JSON-LD by default (``application/ld+json``; ``application/json`` gets the same document),
Turtle for ``Accept: text/turtle``, 406 for anything else. The document is built per request
from the open-data settings, the tenants' listed offers and their names
(``cityhub.streams.opendata.catalogue``); the Turtle rendering, the costly part (about 2 s
for 1000 offers), runs in a thread, once per document, a few at a time, and is kept for the
last few documents. Answers carry ``Cache-Control: public, max-age=<cache_seconds>``, an
``ETag`` of the body (``If-None-Match`` gives 304) and ``Vary: Accept``. Like every keyless
call it is rate-limited per client address (``cityhub.streams.api.throttle``); it reads no body.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from cityhub.schemas.open_data import OpenDataSettings
from cityhub.streams.api.handlers import Call
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.api.route_model import Route
from cityhub.streams.opendata.catalogue import (
    ListedOffers,
    TenantName,
    build_catalogue,
    catalogue_turtle,
)

JSON_LD = "application/ld+json"
TURTLE = "text/turtle"
SERVED = (JSON_LD, TURTLE, "application/json")
"""What the route can answer, in the order it prefers when a client likes several as much."""
MAX_ACCEPT_RANGES = 32
_TURTLE_CACHE_SIZE = 8
MAX_RENDERINGS = 2
"""Turtle renderings of distinct documents at a time (a varying Host header makes documents
differ: set ``open_data.base_url`` in production)."""
_HOST = re.compile(
    r"^(?:[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$"
)


@dataclass
class CatalogueSource:
    """What the catalogue is built from: the open-data settings and where the listed offers
    come from (None: this API serves no sharing view, so no offer is listed); and the Turtle
    renderings of the last few documents."""

    settings: OpenDataSettings
    listed_offers: ListedOffers | None = None
    _turtle: OrderedDict[str, bytes] = field(default_factory=OrderedDict)
    _rendering: dict[str, asyncio.Future[bytes]] = field(default_factory=dict)

    async def turtle(self, digest: str, render: bytes) -> bytes:
        """The Turtle of the JSON-LD document ``render`` (whose hash is ``digest``). rdflib
        takes about 2 s for a catalogue of 1000 offers, so it renders in a thread, once per
        document however many ask at the same time, at most ``MAX_RENDERINGS`` documents at
        a time (503 past that), and keeps the last few."""
        cached = self._turtle.get(digest)
        if cached is not None:
            self._turtle.move_to_end(digest)
            return cached
        pending = self._rendering.get(digest)
        if pending is None:
            if len(self._rendering) >= MAX_RENDERINGS:
                raise ApiProblem(
                    503,
                    "The catalogue is busy rendering Turtle; try again.",
                    headers={"Retry-After": "2"},
                )
            pending = asyncio.ensure_future(asyncio.to_thread(_render_turtle, render))
            self._rendering[digest] = pending
            pending.add_done_callback(lambda _: self._rendering.pop(digest, None))
        body = await asyncio.shield(pending)
        self._turtle[digest] = body
        while len(self._turtle) > _TURTLE_CACHE_SIZE:
            self._turtle.popitem(last=False)
        return body


def _render_turtle(render: bytes) -> bytes:
    return catalogue_turtle(orjson.loads(render)).encode()


CATALOGUE_KEY = web.AppKey("catalogue", CatalogueSource)


def negotiate(accept: str | None) -> str | None:
    """The media type of ``SERVED`` that an ``Accept`` header likes best (RFC 9110 12.5.1:
    the most specific range that matches a type gives its weight; q=0 refuses it), or None
    when it likes none. No header, or an empty one: JSON-LD."""
    if accept is None or not accept.strip():
        return JSON_LD
    ranges: list[tuple[str, float]] = []
    for part in accept.split(",")[:MAX_ACCEPT_RANGES]:
        pieces = [p.strip() for p in part.split(";")]
        media_range = pieces[0].lower()
        if "/" not in media_range:
            continue
        q = 1.0
        for param in pieces[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        ranges.append((media_range, q))
    best: tuple[float, str] | None = None
    for served in SERVED:
        weight = _weight(served, ranges)
        if weight > 0 and (best is None or weight > best[0]):
            best = (weight, served)
    return best[1] if best else None


def _weight(media_type: str, ranges: list[tuple[str, float]]) -> float:
    kind = media_type.split("/")[0]
    found: tuple[int, float] | None = None
    for media_range, q in ranges:
        if media_range == media_type:
            specificity = 2
        elif media_range == f"{kind}/*":
            specificity = 1
        elif media_range == "*/*":
            specificity = 0
        else:
            continue
        if found is None or specificity > found[0]:
            found = (specificity, q)
    return found[1] if found else 0.0


def base_url(request: web.Request, settings: OpenDataSettings) -> str:
    """The public root the catalogue's IRIs start with: the setting, or the request's scheme
    and Host header (which must be a plain host name or address and port: it ends up in IRIs)."""
    if settings.base_url is not None:
        return settings.base_url.rstrip("/")
    host = request.host
    if not _HOST.match(host):
        raise ApiProblem(
            400, "The Host header is not a host name (and port) the catalogue can use."
        )
    return f"{request.scheme}://{host}"


def _tenant_name(call: Call) -> TenantName:
    view = call.registry.view

    def name(tenant_id: str) -> str | None:
        tenant = view.tenant(tenant_id)
        return tenant.name if tenant is not None else None

    return name


async def get_catalogue(call: Call) -> web.Response:
    request = call.request
    media_type = negotiate(request.headers.get("Accept"))
    if media_type is None:
        raise ApiProblem(
            406, f"The catalogue is served as {', '.join(SERVED)}; ask for one of them."
        )
    source = request.app.get(CATALOGUE_KEY)
    if source is None:
        raise ApiProblem(503, "The catalogue is not served by this instance of the API.")
    offers = source.listed_offers() if source.listed_offers is not None else ()
    document = build_catalogue(
        source.settings, base_url(request, source.settings), offers, _tenant_name(call)
    )
    render = orjson.dumps(document)
    digest = hashlib.sha256(render).hexdigest()[:32]
    body = await source.turtle(digest, render) if media_type == TURTLE else render
    # One ETag per representation: the Turtle of a document is another body than its JSON-LD.
    tagged = f'"{media_type.split("/")[1]}-{digest}"'
    headers = {
        "Cache-Control": f"public, max-age={source.settings.cache_seconds}",
        "ETag": tagged,
        # Without a base URL the IRIs follow the Host header: a shared cache must key on it.
        "Vary": "Accept" if source.settings.base_url is not None else "Accept, Host",
    }
    if tagged in _etags(request.headers.get("If-None-Match")):
        return web.Response(status=304, headers=headers)
    content_type = f"{media_type}; charset=utf-8" if media_type == TURTLE else media_type
    headers["Content-Type"] = content_type
    return web.Response(body=body, headers=headers)


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")[:MAX_ACCEPT_RANGES]}


CATALOGUE_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/open/catalog",
        "getOpenDataCatalog",
        "The DCAT-AP-NL 3.0 catalogue of the open datasets, the offers tenants list and the "
        "data services, as JSON-LD (default) or Turtle (Accept: text/turtle); no key",
        "open-data",
        get_catalogue,
        problems=(406, 429, 503),
        media_type=JSON_LD,
        other_media_types=(TURTLE, "application/json"),
        public=True,
        cacheable=True,
    ),
)
