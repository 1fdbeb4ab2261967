"""mode services that run cityhub's non-faust parts beside a faust worker in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from aiohttp import web
from mode import Service

from cityhub.streams.http import HealthCheck, start_ops_server

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


class OpsServerService(Service):
    """Serves ``/metrics`` and ``/healthz`` while the worker runs, beside the operator API when
    ``app`` (its aiohttp application) is given."""

    def __init__(
        self,
        host: str,
        port: int,
        checks: Mapping[str, HealthCheck],
        *,
        app: web.Application | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self._host, self._port, self._checks, self._app = host, port, checks, app
        self._runner: Any = None

    @property
    def label(self) -> str:
        return "ops-http"

    async def on_start(self) -> None:
        self._runner = await start_ops_server(self._host, self._port, self._checks, app=self._app)
        if self._app is not None:
            log.info(
                "operator API on http://%s:%d/api/v1 (OpenAPI: /api/v1/openapi.json)",
                self._host,
                self._port,
            )
        log.info("metrics on http://%s:%d/metrics, health on /healthz", self._host, self._port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


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
