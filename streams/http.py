"""The management endpoint of every cityhub process: ``/metrics`` (Prometheus) and ``/healthz``.

It has a port of its own (settings ``management.host`` and ``management.port``, loopback by
default), apart from the operator API's: the metrics name tenants and subscriptions and nothing
on this endpoint asks for a key, so it is for the operator's scraper and probes only, never
exposed where the API is. The API's port serves ``/api/v1`` alone and answers 404 for these
paths.

``/healthz`` answers 200 with each component's state when all are healthy, else 503, so that a
load balancer or Kubernetes probe can act on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Gauge,
    disable_created_metrics,
    generate_latest,
)

HealthCheck = Callable[[], bool]

MANAGEMENT_PATHS = ("/metrics", "/healthz")

COMPONENT_READY = Gauge(
    "cityhub_component_ready",
    "1 while a component of this process is healthy as /healthz reports it (registry, "
    "subscriptions, privacy, worker, delivery, bridge...), else 0; set at each scrape.",
    ["component"],
)


def build_management_app(checks: Mapping[str, HealthCheck]) -> web.Application:
    """An aiohttp application serving ``/metrics`` and ``/healthz`` for ``checks`` (and
    nothing else: any other path is a plain 404)."""
    # The *_created series double every counter's series for a value nobody alerts on.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client lacks the hint

    async def metrics(_: web.Request) -> web.Response:
        # The same checks as /healthz, so that an alert sees what a probe sees.
        for name, check in checks.items():
            COMPONENT_READY.labels(name).set(1 if check() else 0)
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        states = {name: check() for name, check in checks.items()}
        healthy = all(states.values())
        return web.json_response(
            {"status": "ok" if healthy else "unavailable", "components": states},
            status=200 if healthy else 503,
        )

    app = web.Application(client_max_size=1024)  # GETs only: no body to speak of
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app
