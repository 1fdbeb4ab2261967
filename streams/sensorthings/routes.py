"""The SensorThings service's HTTP shell: ``GET /sta/v1.1`` and everything below it, on the
API's port, with the API's keys (``X-API-Key`` or ``Authorization: Bearer``; 401 without
one) and its problem documents for errors (400 for a bad query, 404 for an unknown entity).

Read only: any other method is a 405. The entities a key sees are built once per key's tenant
and its active agreements from the registry view and the Datastreams in history, and reused
until any of them changes. Entities of another tenant shown under an agreement are counted
for it (``Channel.READ``).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import psycopg
from aiohttp import web

from cityhub.schemas.errors import ConfigurationError
from cityhub.schemas.registry import DeviceType, Role
from cityhub.schemas.settings import Settings
from cityhub.streams.api.auth import authenticate
from cityhub.streams.api.metrics import API_LATENCY, API_REQUESTS
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.api.query_rules import GIVEN_TWICE
from cityhub.streams.history.connection import ConnectionPool
from cityhub.streams.history.queries import Viewer as HistoryViewer
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.view import DeviceEntry, RegistryView
from cityhub.streams.sensorthings.expr import QueryError
from cityhub.streams.sensorthings.model import Graph, StreamFacts, Viewer
from cityhub.streams.sensorthings.observations import HistoryReads
from cityhub.streams.sensorthings.service import Context, Missing, answer
from cityhub.streams.service_errors import FieldError, ServiceError
from cityhub.streams.sharing.grants import Grant
from cityhub.streams.sharing.read_access import NO_SHARING, ReadAccess

log = logging.getLogger("cityhub.sensorthings")

ROOT = "/sta/v1.1"
OUT_OF_RANGE = "The filter computes a number or a position out of range; use smaller values."
_GRAPHS_KEPT = 32
_ALL = 1 << 30


def _registry_entries(view: RegistryView) -> tuple[list[DeviceEntry], list[DeviceType]]:
    devices: list[DeviceEntry] = []
    types: list[DeviceType] = []
    for tenant in view.tenants():
        types.extend(view.types_page(tenant.id, limit=_ALL)[0])
        devices.extend(view.devices_page(tenant.id, limit=_ALL)[0])
    return devices, types


class SensorThings:
    """The service's state in one API process: the registry, the history reads, and the
    entities built per tenant."""

    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        reads: HistoryReads | None,
        access: ReadAccess = NO_SHARING,
    ) -> None:
        self.registry = registry
        self.settings = settings.sensorthings
        self.reads = reads
        self.access = access
        self._graphs: OrderedDict[tuple[str | None, int, int, tuple[Grant, ...]], Graph] = (
            OrderedDict()
        )

    @classmethod
    def from_settings(
        cls, registry: Registry, settings: Settings, access: ReadAccess = NO_SHARING
    ) -> SensorThings:
        """The service over the history store ``settings.history`` names (connected lazily);
        without one (``history.enabled`` false) it serves the registry's entities and no
        Datastreams or Observations. ``access``: the agreements it applies and counts."""
        if not settings.history.enabled:
            return cls(registry, settings, None, access)
        pool = ConnectionPool(settings, size=4, application_name="cityhub-sensorthings")
        reads = HistoryReads(
            pool, refresh_seconds=settings.sensorthings.datastreams_refresh_seconds
        )
        return cls(registry, settings, reads, access)

    async def graph(self, tenant: str | None, grants: tuple[Grant, ...] = ()) -> Graph:
        """The entities the viewer of ``tenant`` (None: admin) may see under its active
        ``grants``, built at most once per registry offset, Datastream read and set of
        grants."""
        streams: list[StreamFacts] = [] if self.reads is None else await self.reads.streams()
        version = 0 if self.reads is None else self.reads.version
        view = self.registry.view
        key = (tenant, view.offset, version, grants)
        graph = self._graphs.get(key)
        if graph is None:
            devices, types = _registry_entries(view)
            graph = Graph(devices, types, streams, Viewer(tenant, grants))
            self._graphs[key] = graph
            while len(self._graphs) > _GRAPHS_KEPT:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        return graph

    async def close(self) -> None:
        if self.reads is not None:
            await self.reads.close()


SENSORTHINGS_KEY = web.AppKey("sensorthings", SensorThings)


def _base(request: web.Request, service: SensorThings) -> str:
    if service.settings.service_url:
        return service.settings.service_url.rstrip("/")
    return f"{request.scheme}://{request.host}{ROOT}"


METRIC_ROUTE = ROOT + "/{path}"
"""The ``route`` label of every SensorThings request in the API's metrics (bounded, whatever
the path)."""


async def handle(request: web.Request) -> web.StreamResponse:
    """Every GET under the service root, counted and timed with the API's metrics
    (``cityhub_api_requests_total{route="/sta/v1.1/{path}"}``)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await _answer(request)
        status = response.status
        return response
    except (ApiProblem, ServiceError) as exc:
        status = exc.status
        raise
    finally:
        API_REQUESTS.labels(METRIC_ROUTE, request.method, str(status)).inc()
        API_LATENCY.labels(METRIC_ROUTE, request.method).observe(time.perf_counter() - started)


def _check_repeats(request: web.Request) -> None:
    """A query option given twice (``$filter=a&$filter=b``) is a 400, as a query key given twice
    is in /api/v1: neither is quietly taken over the other."""
    counts: dict[str, int] = {}
    for name, _ in request.query.items():  # items(), not keys: those come once each
        if name.startswith("$"):
            counts[name] = counts.get(name, 0) + 1
    repeated = [name[:32] for name, count in counts.items() if count > 1]
    if repeated:
        raise ApiProblem(
            400,
            "; ".join(f"{name}: {GIVEN_TWICE}" for name in repeated),
            errors=[FieldError(name, GIVEN_TWICE) for name in repeated],
        )


async def _answer(request: web.Request) -> web.StreamResponse:
    service = request.app[SENSORTHINGS_KEY]
    principal = authenticate(service.registry, request.headers)
    _check_repeats(request)
    tenant = None if principal.role is Role.ADMIN else principal.tenant
    grants = service.access.active_for(tenant)
    viewer = HistoryViewer.admin() if tenant is None else HistoryViewer.of_tenant(tenant, grants)
    path = request.match_info.get("path", "")
    try:
        graph = await service.graph(tenant, grants)
        ctx = Context(graph, viewer, _base(request, service), service.settings, service.reads)
        result = await answer(ctx, path, request.query)
        service.access.count(ctx.tally)
    except QueryError as exc:
        raise ApiProblem(400, str(exc)) from None
    except Missing as exc:
        raise ApiProblem(404, f"Not found: {exc}.") from None
    except psycopg.DataError:
        # A value the filter computes that PostgreSQL cannot hold (an overflow, a substring
        # position past the integer range): the query's fault, told in the client's terms
        # (PostgreSQL's SQLSTATE tells a client nothing it can act on).
        raise ApiProblem(400, OUT_OF_RANGE) from None
    except (psycopg.OperationalError, ConfigurationError):
        log.warning("the history store cannot be reached", exc_info=True)
        raise ApiProblem(
            503,
            "The history store cannot be reached; try again shortly.",
            headers={"Retry-After": "5"},
        ) from None
    if result.text is not None:
        return web.Response(text=result.text, content_type="text/plain")
    if result.document is None:
        return web.Response(status=204)
    return web.json_response(result.document)


async def _close(app: web.Application) -> None:
    await app[SENSORTHINGS_KEY].close()


def mount(app: web.Application, service: SensorThings) -> None:
    """Serve ``service`` under ``/sta/v1.1`` on ``app`` (and close it with the app)."""
    app[SENSORTHINGS_KEY] = service
    app.on_cleanup.append(_close)
    app.router.add_get(ROOT, handle, name="staRoot")
    app.router.add_get(ROOT + "/{path:.*}", handle, name="staResource")
