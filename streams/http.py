"""The operations endpoint of every cityhub process: ``/metrics`` (Prometheus) and ``/healthz``.

``/healthz`` answers 200 with each component's state when all are healthy, else 503, so that a
load balancer or Kubernetes probe can act on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    disable_created_metrics,
    generate_latest,
)

HealthCheck = Callable[[], bool]


def add_ops_routes(app: web.Application, checks: Mapping[str, HealthCheck]) -> web.Application:
    """Add ``/metrics`` and ``/healthz`` for ``checks`` to ``app`` (the operator API's, when the
    process serves it, so that one port serves both) and return it."""
    # The *_created series double every counter's series for a value nobody alerts on.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client lacks the hint

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        states = {name: check() for name, check in checks.items()}
        healthy = all(states.values())
        return web.json_response(
            {"status": "ok" if healthy else "unavailable", "components": states},
            status=200 if healthy else 503,
        )

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


def build_ops_app(checks: Mapping[str, HealthCheck]) -> web.Application:
    """An aiohttp application serving ``/metrics`` and ``/healthz`` for ``checks``."""
    return add_ops_routes(web.Application(client_max_size=1024), checks)


async def start_ops_server(
    host: str,
    port: int,
    checks: Mapping[str, HealthCheck],
    *,
    app: web.Application | None = None,
) -> web.AppRunner:
    """Start serving ``/metrics`` and ``/healthz`` (on ``app``, e.g. the operator API, when
    given); stop with ``await runner.cleanup()``."""
    served = build_ops_app(checks) if app is None else add_ops_routes(app, checks)
    runner = web.AppRunner(served, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
