"""A long-lived response (Server-Sent Events) served only while its client may still read it.

The API's live streams (``cityhub.streams.delivery.sse``) and the console's live device pages
(``cityhub.streams.console.device``) both wait for what to send next, and meanwhile must notice
two things on a quiet stream as on a busy one: the client went away (its quota slot comes back
now, not at the next keep-alive), and the client may no longer read (a revoked key, a signed-out
session, a deleted or paused subscription). :func:`guarded` is that loop, once: the checks at
least every ``GUARD_INTERVAL_S`` and before each item is handed on, and a keep-alive comment on
a quiet stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web

from cityhub.streams.runtime.host import SERVER_STOPPING

KEEPALIVE_S = 15.0
"""A quiet stream gets a keep-alive comment this often (proxies close idle connections)."""
GUARD_INTERVAL_S = 1.0
"""At most this long between two checks that the stream's client may still read it."""
STALLED_WRITE_S = 60.0
"""A write the client takes nothing of for this long ends its stream: a reader that stopped
reading (its socket's buffers full) held its slot of the live-stream caps for ever."""
SERVER_STOPS = "the server is stopping; reconnect to go on where this stream ended"
"""Why every stream ends when its server stops (``SERVER_STOPPING``): the client reconnects,
to this server started again or another, with ``Last-Event-ID``."""

StreamGuard = Callable[[], str | None]
"""Why a stream's client may no longer read it (a revoked key, a deleted or paused
subscription), or None while it may. Called on the event loop: it must not block."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The last thing :func:`guarded` yields: the stream must end."""

    why: str | None
    """The guard's answer, for the client's closing message; None when the client went away
    (nobody is left to tell)."""


_NOTHING = object()


async def guarded(
    request: web.Request,
    response: web.StreamResponse,
    take: Callable[[], Awaitable[T]],
    guard: StreamGuard,
    *,
    keepalive: bytes,
    keepalive_s: float | None = None,
    stopped: Callable[[], bool] = lambda: False,
) -> AsyncIterator[T | StreamEnded]:
    """Yield what ``take`` gives, as it comes, each only while the client is still connected
    and ``guard`` lets it read; these are checked at least every ``GUARD_INTERVAL_S``, also
    while nothing comes. When a check fails, yield a ``StreamEnded`` and stop. Write
    ``keepalive`` when nothing was sent for ``keepalive_s`` (``KEEPALIVE_S`` by default; checked
    at least that often too).
    Stop without a word once ``stopped()`` (the source of the items ended: the caller says
    why)."""
    if keepalive_s is None:
        keepalive_s = KEEPALIVE_S
    loop = asyncio.get_running_loop()
    keepalive_at = loop.time() + keepalive_s
    step = min(GUARD_INTERVAL_S, keepalive_s)
    server_stopping = request.config_dict.get(SERVER_STOPPING)
    while not stopped():
        item: T | object = _NOTHING
        with contextlib.suppress(TimeoutError):
            item = await asyncio.wait_for(take(), step)
        transport = request.transport
        if transport is None or transport.is_closing():
            yield StreamEnded(None)
            return
        why = SERVER_STOPS if server_stopping is not None and server_stopping.is_set() else guard()
        if why is not None:
            yield StreamEnded(why)
            return
        if item is _NOTHING:
            if loop.time() >= keepalive_at:
                await write(request, response, keepalive)
                keepalive_at = loop.time() + keepalive_s
            continue
        keepalive_at = loop.time() + keepalive_s
        yield item  # type: ignore[misc]  # not _NOTHING: what take() gave


async def write(request: web.Request, response: web.StreamResponse, data: bytes) -> None:
    """Write ``data`` to a live stream; ConnectionResetError, the connection aborted, when the
    client has taken none of it for ``STALLED_WRITE_S`` (a closing write would wait as long)."""
    try:
        async with asyncio.timeout(STALLED_WRITE_S):
            await response.write(data)
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError(
            f"the client took nothing of the stream for {STALLED_WRITE_S:.0f} s"
        ) from None
