"""The operator API's aiohttp application: ``build_api(registry)``.

Promises, for every request under it:
- an authenticated route runs only with a valid key (else 401 with ``WWW-Authenticate: Bearer``);
- every error is an RFC 9457 problem document, including unknown routes (404) and wrong
  methods (405); an unexpected exception is a 500 that carries a request id and no internals,
  and is logged with that id (never with a header or a body, which may hold a secret);
- every response carries ``X-Request-Id``, and ``API-Version`` and the security headers of the
  NL API Design Rules (``cityhub.streams.api.adr``, which also answers a trailing slash with 404
  and CORS preflights after the allow-list ``CITYHUB_HTTP__CORS_ALLOWED_ORIGINS``);
- a query that does not fit its route's documented parameters is a 400 naming every fault;
- API requests are counted by route template, method and status, and timed.

Only ``/api/v1`` is served here: ``/metrics`` and ``/healthz`` are on the management port
(``cityhub.streams.http``), which asks for no key; on the API's port they are unknown routes
(404 problems).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from cityhub.connectors.ngsi_ld.context import CONTEXT_PATH as NGSI_LD_CONTEXT_PATH
from cityhub.schemas.settings import HttpSettings, QuotaSettings, Settings
from cityhub.streams.aggregation.reader import aggregate_source
from cityhub.streams.api import adr
from cityhub.streams.api.adr_headers import CorsPolicy
from cityhub.streams.api.aggregates import AGGREGATES_KEY, PERSONAL_READS_KEY, READ_ACCESS_KEY
from cityhub.streams.api.auth import authenticate
from cityhub.streams.api.catalogue import CATALOGUE_KEY, CatalogueSource
from cityhub.streams.api.consents import CONSENTS_KEY
from cityhub.streams.api.data_requests import DATA_REQUESTS_KEY
from cityhub.streams.api.erasure import ERASURE_KEY
from cityhub.streams.api.handlers import Call, Limits, json_response
from cityhub.streams.api.live import LIVE_KEY
from cityhub.streams.api.metrics import API_LATENCY, API_REQUESTS, UNMATCHED_ROUTE
from cityhub.streams.api.open_data import OPEN_DATA_CORS_PATHS
from cityhub.streams.api.open_data_answers import OPEN_DATA_KEY
from cityhub.streams.api.openapi import OPENAPI_PATH, build_openapi
from cityhub.streams.api.problems import problem_from_exception, problem_response, shown_path
from cityhub.streams.api.processing import PROCESSING_KEY
from cityhub.streams.api.processing_log import PROCESSING_LOG_KEY
from cityhub.streams.api.rate_limit import RateLimiter
from cityhub.streams.api.resident_tokens import RESIDENTS_KEY, ResidentServices
from cityhub.streams.api.route_model import ANONYMOUS, API_VERSION
from cityhub.streams.api.routes import PREFIX, ROUTES, Route
from cityhub.streams.api.sharing import SHARING_KEY
from cityhub.streams.api.throttle import quota_middleware
from cityhub.streams.delivery.sse import LiveStreams
from cityhub.streams.ngsi_ld.api import add_ngsi_ld_routes
from cityhub.streams.opendata.catalogue import ListedOffers
from cityhub.streams.opendata.distributions import OpenDataDistributions
from cityhub.streams.opendata.requests import DataRequests
from cityhub.streams.privacy.consent_service import Consents
from cityhub.streams.privacy.erasure import Erasure
from cityhub.streams.privacy.log_service import ProcessingLogQueries
from cityhub.streams.privacy.reads import PersonalReads
from cityhub.streams.privacy.service import ProcessingRegister
from cityhub.streams.registry.service import Registry
from cityhub.streams.sensorthings.routes import SensorThings
from cityhub.streams.sensorthings.routes import mount as mount_sensorthings
from cityhub.streams.sharing.read_access import NO_SHARING, ReadAccess
from cityhub.streams.sharing.service import Sharing
from cityhub.streams.subscriptions.service import Subscriptions

log = logging.getLogger("cityhub.api")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024

REGISTRY_KEY = web.AppKey("registry", Registry)
SUBSCRIPTIONS_KEY = web.AppKey("subscriptions", Subscriptions)
LIMITS_KEY = web.AppKey("limits", Limits)
OPENAPI_KEY = web.AppKey("openapi", dict[str, Any])

RequestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_MAX_INSTANCE = 256


def _request_id(request: web.Request) -> str:
    offered = request.headers.get("X-Request-Id", "")
    return offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex


def _route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


@web.middleware
async def problems_and_metrics(request: web.Request, handler: RequestHandler) -> web.StreamResponse:
    """Answer every error as a problem document, tag the response with a request id, and count
    and time API requests."""
    request_id = _request_id(request)
    started = time.perf_counter()
    instance = _instance(request)
    try:
        response = await handler(request)
    except asyncio.CancelledError:
        raise
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = problem_from_exception(exc, instance) or _internal(request, request_id, exc)
    except Exception as exc:
        response = problem_from_exception(exc, instance) or _internal(request, request_id, exc)
    response.headers["X-Request-Id"] = request_id
    if request.path.startswith(PREFIX + "/") or request.path == PREFIX:
        route = _route_template(request)
        API_REQUESTS.labels(route, request.method, str(response.status)).inc()
        API_LATENCY.labels(route, request.method).observe(time.perf_counter() - started)
    return response


def _internal(request: web.Request, request_id: str, exc: BaseException) -> web.Response:
    # The route template, not the path or the headers: neither may reach the log with a secret.
    log.error(
        "request %s: %s %s failed",
        request_id,
        request.method,
        _route_template(request),
        exc_info=exc,
    )
    return problem_response(
        500,
        "The server failed to handle this request. It has been logged; quote the request id "
        "to whoever runs this hub.",
        _instance(request),
        extra={"request_id": request_id},
    )


def _instance(request: web.Request) -> str:
    """A problem's ``instance``: the request's path as an answer may show it (``shown_path``)."""
    return shown_path(request.path)[:_MAX_INSTANCE]


def _endpoint(route: Route) -> RequestHandler:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        registry = request.app[REGISTRY_KEY]
        # A public route (the register of processing activities) looks at no key at all; a
        # resident's route takes a resident's token instead, which its handler checks.
        keyless = route.public or route.resident
        principal = ANONYMOUS if keyless else authenticate(registry, request.headers)
        # Every fault of the query in one 400, once the caller is known (NL API Design Rules).
        adr.check_query(route.params, request)
        call = Call(
            request,
            principal,
            registry,
            request.app[LIMITS_KEY],
            request.app.get(SUBSCRIPTIONS_KEY),
        )
        return await route.handler(call)

    endpoint.__name__ = route.operation_id
    endpoint.__doc__ = route.summary
    return endpoint


async def _openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI_KEY])


async def _to_console(request: web.Request) -> web.Response:
    return web.Response(status=308, headers={"Location": "/console/"})


async def _close_aggregates(app: web.Application) -> None:
    await app[AGGREGATES_KEY].close()


def build_api(
    registry: Registry,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_import_bytes: int | None = None,
    subscriptions: Subscriptions | None = None,
    live: LiveStreams | None = None,
    quotas: QuotaSettings | None = None,
    processing: ProcessingRegister | None = None,
    processing_log: ProcessingLogQueries | None = None,
    erasure: Erasure | None = None,
    consents: Consents | None = None,
    residents: ResidentServices | None = None,
    personal_reads: PersonalReads | None = None,
    read_access: ReadAccess | None = None,
    http: HttpSettings | None = None,
    listed_offers: ListedOffers | None = None,
    data_requests: DataRequests | None = None,
    sharing: Sharing | None = None,
    open_data: OpenDataDistributions | None = None,
    console: web.Application | None = None,
) -> web.Application:
    """The API over ``registry`` at ``/api/v1``, JSON bodies capped at ``max_body_bytes`` and
    imports at ``max_import_bytes`` (413 past either; None: ``quotas.import_max_bytes``).
    ``quotas`` (default: ``QuotaSettings()``) also sets each API key's request rate (429
    past it, ``cityhub.streams.api.throttle``) and the rows of an import. Without
    ``subscriptions`` the subscription routes answer 503 (they are still documented), and
    without ``live`` the live stream route does, and without ``processing`` the register of
    processing activities' routes do, and without ``processing_log`` the processing log's
    route does, and without ``consents`` the consent routes do, and
    without ``residents`` the residents' tokens and their ``/me`` routes do; without
    ``personal_reads`` the aggregates route withholds personal aggregates.
    ``/metrics`` and ``/healthz`` are not served here but on the management port
    (``cityhub.streams.http``). The aggregates route reads Kafka (and the history store, when
    enabled) with a source made from the environment's settings, which connects at its first
    query; put another source at ``app[AGGREGATES_KEY]`` before the app starts (tests do).
    The app closes the source it holds when it is cleaned up. ``http`` (default: the
    environment's) gives the CORS allow-list and the OpenAPI document's contact. Without
    ``data_requests`` the data requests' routes answer 503, and without ``sharing`` the
    offers' and agreements' routes do. ``console`` (``cityhub.streams.console.app``) is
    mounted at ``/console/`` (None: no console)."""
    quotas = quotas or QuotaSettings()
    http = http or Settings().http
    if max_import_bytes is None:
        max_import_bytes = quotas.import_max_bytes
    if max_body_bytes < 1 or max_import_bytes < 1:
        raise ValueError("body caps must be positive")
    limiter = RateLimiter(quotas.api_requests_per_second, quotas.api_burst)
    app = web.Application(client_max_size=max(max_body_bytes, max_import_bytes))
    # The NL API Design Rules' headers on every response, and their trailing-slash rule and
    # CORS preflights before keys and rate limits (cityhub.streams.api.adr).
    # Every origin may read the OpenAPI document (/core/publish-openapi) and the NGSI-LD
    # @context, which JSON-LD processors in any page dereference; both need no key. So may
    # the open datasets and their stream (read only, no key, the same for everyone); not the
    # data requests, which anyone may file: a page must not file them from its visitors.
    cors = CorsPolicy.of(
        http.cors_allowed_origins,
        open_paths=(OPENAPI_PATH, NGSI_LD_CONTEXT_PATH, *OPEN_DATA_CORS_PATHS),
    )
    design_rules = adr.install(app, api_version=API_VERSION, cors=cors)
    app.middlewares.extend(
        [problems_and_metrics, design_rules, quota_middleware(registry, limiter)]
    )
    app[REGISTRY_KEY] = registry
    if subscriptions is not None:
        app[SUBSCRIPTIONS_KEY] = subscriptions
    if live is not None:
        app[LIVE_KEY] = live
    if processing is not None:
        app[PROCESSING_KEY] = processing
    if processing_log is not None:
        app[PROCESSING_LOG_KEY] = processing_log
    if erasure is not None:
        app[ERASURE_KEY] = erasure
    if consents is not None:
        app[CONSENTS_KEY] = consents
    if residents is not None:
        app[RESIDENTS_KEY] = residents
    if personal_reads is not None:
        app[PERSONAL_READS_KEY] = personal_reads
    # The agreements the reads (aggregates, SensorThings, NGSI-LD) apply and count; None: none.
    read_access = read_access or NO_SHARING
    app[READ_ACCESS_KEY] = read_access
    if data_requests is not None:
        app[DATA_REQUESTS_KEY] = data_requests
    if sharing is not None:
        app[SHARING_KEY] = sharing
    if open_data is not None:  # None: the open-data routes answer 404 (none published)
        app[OPEN_DATA_KEY] = open_data
    # The public catalogue lists the offers of listed_offers (None: no offer, open data only).
    app[CATALOGUE_KEY] = CatalogueSource(Settings().open_data, listed_offers)
    app[AGGREGATES_KEY] = aggregate_source(Settings())
    app.on_cleanup.append(_close_aggregates)
    app[LIMITS_KEY] = Limits(
        max_body_bytes=max_body_bytes,
        max_import_bytes=max_import_bytes,
        max_import_rows=quotas.import_max_rows,
    )
    app[OPENAPI_KEY] = build_openapi(
        max_body_bytes=max_body_bytes, max_import_bytes=max_import_bytes, contact=http.contact
    )
    for route in ROUTES:
        handler = _endpoint(route)
        app.router.add_route(route.method, route.full_path, handler, name=route.operation_id)
        if route.cacheable:  # the open data: link checkers and harvesters ask with HEAD first
            app.router.add_route("HEAD", route.full_path, handler)
    app.router.add_get(OPENAPI_PATH, _openapi, name="getOpenApi")
    # OGC SensorThings (read only) beside /api/v1, with the same keys and problem documents.
    mount_sensorthings(app, SensorThings.from_settings(registry, Settings(), read_access))
    # NGSI-LD (read only) beside /api/v1, over the same keys and the history store.
    add_ngsi_ld_routes(app, registry, access=read_access)
    if console is not None:  # the operator console's pages (cityhub.streams.console)
        app.router.add_get("/console", _to_console)
        app.add_subapp("/console", console)
    return app
