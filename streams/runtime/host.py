"""Running a process's parts together: stores, the worker, the bridge, servers, until a signal.

Each part is a coroutine that runs until it is cancelled. ``run_parts`` starts them in order,
and when one fails (raises) it stops the others in reverse order and raises the failure, so the
process exits non-zero and its supervisor (``cityhub run``, systemd, Kubernetes) starts it
again: a part limping on after a failure would hide it. A part that returns (the simulator after
its count) just ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from cityhub.streams.http import HealthCheck, build_management_app

log = logging.getLogger("cityhub")


@dataclass(frozen=True, slots=True)
class Part:
    """One long-running piece of a process."""

    name: str
    run: Callable[[], Coroutine[Any, Any, None]]


class Store(Protocol):
    """A store whose view tails a compacted topic: the registry's, the subscriptions'."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def store_part(name: str, store: Store) -> Part:
    """Keeps ``store`` started for as long as the process runs."""

    async def run() -> None:
        await store.start()
        try:
            await asyncio.Event().wait()
        finally:
            await store.stop()

    return Part(name, run)


SERVER_STOPPING = web.AppKey("cityhub_server_stopping", asyncio.Event)
"""Set when the server of an app (``server_part``) begins to stop: its long-lived responses
(live streams, ``cityhub.streams.delivery.guarded_stream``) end then, so that the stop does
not wait for them (it waited for ever: an API under ``cityhub run`` was killed after 30 s, and
one whose supervisor had died stayed on as an orphan)."""

IDLE_TIMEOUT_S = 75.0
"""How long a connection may go without a whole request's headers: from when it opens, and
from the end of each response (``http.idle_timeout_seconds`` for the API)."""


def server_part(
    name: str, app: web.Application, host: str, port: int, *, idle_timeout: float = IDLE_TIMEOUT_S
) -> Part:
    """Serves ``app`` on ``host:port`` for as long as the process runs. A connection that has
    not sent a whole request's headers ``idle_timeout`` seconds after it opened or after its
    last response is closed (aiohttp's keep-alive timeout, armed at connection and after each
    response, closes a connection still waiting for headers; its default is an hour, which let
    slow or silent clients hold sockets that long). A request in progress is never cut; when
    the part stops, ``SERVER_STOPPING`` tells the live streams to end."""

    async def run() -> None:
        stopping = asyncio.Event()
        app[SERVER_STOPPING] = stopping

        async def stop_streams(_: web.Application) -> None:
            stopping.set()

        app.on_shutdown.append(stop_streams)
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=idle_timeout)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            log.info("%s on http://%s:%d", name, host, port)
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    return Part(name, run)


def management_part(host: str, port: int, checks: Mapping[str, HealthCheck]) -> Part:
    """``/metrics`` and ``/healthz`` of the process on its management port."""
    return server_part("metrics and health", build_management_app(checks), host, port)


async def run_parts(parts: Sequence[Part]) -> None:
    """Run ``parts`` until cancelled or until one fails (then raise its failure, the others
    stopped in reverse order)."""
    tasks = [asyncio.create_task(part.run(), name=part.name) for part in parts]
    running = set(tasks)
    try:
        while running:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("%s failed: %r", task.get_name(), task.exception())
                    raise task.exception()  # type: ignore[misc]
        await asyncio.Event().wait()  # every part returned: stay until stopped
    finally:
        for task in reversed(tasks):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
