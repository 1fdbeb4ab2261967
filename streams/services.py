"""mode services that run cityhub's non-faust parts beside a faust worker in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from aiohttp import web
from mode import Service

from cityhub.streams.http import HealthCheck, bound_port, build_management_app, serve

log = logging.getLogger("cityhub")


class StartableStore(Protocol):
    """A store whose view tails a compacted topic: the registry's, the subscriptions'."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class CoroutineService(Service):
    """Runs one long-lived coroutine for as long as the worker runs; if it fails, the worker
    is crashed so that a supervisor restarts the process instead of it limping on."""

    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]], **kw: Any) -> None:
        super().__init__(**kw)
        self._name = name
        self._run = run
        self._task: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return self._name

    async def on_start(self) -> None:
        self._task = asyncio.ensure_future(self._guard())

    async def _guard(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s failed", self._name)
            await self.crash(exc)

    async def on_stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class HttpServerService(Service):
    """Serves an aiohttp application on ``host:port`` while the worker runs, and logs where
    (``what``, e.g. "operator API", and the paths worth knowing)."""

    def __init__(
        self,
        label: str,
        app: web.Application,
        host: str,
        port: int,
        *,
        announce: Callable[[str], str],
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self._label, self._app, self._host, self._port = label, app, host, port
        self._announce = announce
        self._runner: web.AppRunner | None = None

    @property
    def label(self) -> str:
        return self._label

    async def on_start(self) -> None:
        self._runner = await serve(self._app, self._host, self._port)
        port = bound_port(self._runner) or self._port
        log.info("%s", self._announce(f"http://{self._host}:{port}"))

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def management_service(
    host: str, port: int, checks: Mapping[str, HealthCheck], **kw: Any
) -> HttpServerService:
    """``/metrics`` and ``/healthz`` on the management port (``cityhub.streams.http``)."""
    return HttpServerService(
        "management-http",
        build_management_app(checks),
        host,
        port,
        announce=lambda base: f"management: metrics on {base}/metrics, health on {base}/healthz",
        **kw,
    )


def api_service(app: web.Application, host: str, port: int, **kw: Any) -> HttpServerService:
    """The operator API (``/api/v1`` and nothing else) on the API port."""
    return HttpServerService(
        "api-http",
        app,
        host,
        port,
        announce=lambda base: f"operator API on {base}/api/v1 (OpenAPI: /api/v1/openapi.json)",
        **kw,
    )


class RegistryStoreService(Service):
    """Keeps a compacted-topic store running (its view tailing the topic: the device registry's,
    or the subscriptions') for as long as the worker runs."""

    def __init__(self, store: StartableStore, *, label: str = "registry", **kw: Any) -> None:
        super().__init__(**kw)
        self._store = store
        self._label = label

    @property
    def label(self) -> str:
        return self._label

    async def on_start(self) -> None:
        await self._store.start()

    async def on_stop(self) -> None:
        await self._store.stop()
