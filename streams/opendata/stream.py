"""The open-data live stream: newly published windows as Server-Sent Events, without a key.

Each connection follows the process's ``OpenDataView`` (no Kafka consumer of its own: the view
already tails the topic), from the moment it connects or, with ``Last-Event-ID``, right after
that event while the view's feed still holds it. Events are ``event: window`` with the window
and its dataset's licence as JSON, and ``id`` the window's offset on the topic (the same in every
API process, so a client may reconnect to another). A comment line every ``heartbeat_seconds``
keeps proxies from closing a quiet stream. The stream is served by
``cityhub.streams.delivery.guarded_stream`` as the subscriptions' are: at most a second passes
between checks that the client is still there (its slot of the caps comes back then) and that
the server does not stop (then the stream says ``: closed: ...`` and ends), and a client that
takes nothing of a write for a minute loses its stream.

Open streams are capped per client address (IPv6: its /64) and in total, per process
(``quotas.open_data_streams_per_address``, ``quotas.open_data_streams``): past either, a 429
with ``Retry-After``. A client slower than the feed's bound loses the windows the feed dropped
(the windows API and the files have them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import orjson
from aiohttp import web

from cityhub.schemas.open_data import OpenWindow
from cityhub.schemas.sharing import Licence
from cityhub.streams.delivery.guarded_stream import StreamEnded, guarded, write
from cityhub.streams.opendata.view import OpenDataView
from cityhub.streams.quotas import QuotaExceeded

HEARTBEAT_SECONDS = 15.0
RETRY_MS = 3000
FULL_RETRY_AFTER_S = 30


@dataclass(frozen=True, slots=True)
class StreamFilter:
    """What one stream sends: windows of ``dataset``, ``area`` and ``quantity`` (None: any)."""

    dataset: str | None = None
    area: str | None = None
    quantity: str | None = None

    def admits(self, window: OpenWindow) -> bool:
        return (
            (self.dataset is None or window.dataset == self.dataset)
            and (self.area is None or window.area == self.area)
            and (self.quantity is None or window.quantity == self.quantity)
        )


def window_event(offset: int, window: OpenWindow, licence: Licence | None) -> bytes:
    """One SSE event of a window, with its licence."""
    doc = window.public()
    if licence is not None:
        doc["licence"] = {"id": licence.value, "uri": licence.uri}
    return b"id: %d\nevent: window\ndata: %s\n\n" % (offset, orjson.dumps(doc))


class OpenDataStreams:
    """Serves the live streams of one process and counts them to cap them."""

    def __init__(
        self,
        view: Callable[[], OpenDataView],
        wait_beyond: Callable[[int, float], Awaitable[bool]],
        licences: Mapping[str, Licence],
        *,
        max_per_address: int,
        max_total: int,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        """``view`` gives the view, ``wait_beyond(offset, timeout)`` waits for it to move past
        an offset (the store's), ``licences`` maps each dataset to its licence."""
        self._view = view
        self._wait_beyond = wait_beyond
        self._licences = dict(licences)
        self._max_per_address = max_per_address
        self._max_total = max_total
        self._heartbeat = heartbeat_seconds
        self._open: Counter[str] = Counter()

    @property
    def open_streams(self) -> int:
        return self._open.total()

    def _admit(self, address: str) -> None:
        if self._open[address] >= self._max_per_address:
            raise QuotaExceeded(
                f"This client address already has {self._open[address]} open-data streams "
                "open; close one first.",
                quota="open_data_streams_per_address",
                limit=self._max_per_address,
                status=429,
                retry_after=FULL_RETRY_AFTER_S,
            )
        if self._open.total() >= self._max_total:
            raise QuotaExceeded(
                "This server already serves its maximum of open-data streams; try again later.",
                quota="open_data_streams",
                limit=self._max_total,
                status=429,
                retry_after=FULL_RETRY_AFTER_S,
            )
        self._open[address] += 1

    def _release(self, address: str) -> None:
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def start_offset(self, last_event_id: int | None) -> int:
        """Where a stream starts: after ``last_event_id`` while the feed holds what follows it,
        else at the view's end (live)."""
        view = self._view()
        if last_event_id is not None and view.feed_start() - 1 <= last_event_id <= view.offset:
            return last_event_id
        return view.offset

    async def serve(
        self,
        request: web.Request,
        address: str,
        chosen: StreamFilter,
        *,
        last_event_id: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        """Stream the windows ``chosen`` admits to the client until it goes away. Raises
        QuotaExceeded before anything is sent when a cap is reached."""
        self._admit(address)
        try:
            response = web.StreamResponse(
                headers={
                    **(headers or {}),
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-store",
                    "X-Accel-Buffering": "no",
                }
            )
            position = self.start_offset(last_event_id)
            await response.prepare(request)

            async def events() -> bytes:
                """The next windows ``chosen`` admits, once the view has some (``guarded``
                cancels the wait every second to look at the client)."""
                nonlocal position
                while True:
                    await self._wait_beyond(position, self._heartbeat)
                    view = self._view()
                    found = [
                        window_event(offset, w, self._licences.get(w.dataset))
                        for offset, w in view.feed_after(position)
                        if chosen.admits(w)
                    ]
                    position = view.offset
                    if found:
                        return b"".join(found)

            try:
                await write(request, response, f"retry: {RETRY_MS}\n: connected\n\n".encode())
                batches = guarded(
                    request,
                    response,
                    events,
                    lambda: None,  # public: nobody's access can end
                    keepalive=b": heartbeat\n\n",
                    keepalive_s=self._heartbeat,
                )
                async for batch in batches:
                    if isinstance(batch, StreamEnded):
                        if batch.why is not None:
                            await write(request, response, f": closed: {batch.why}\n\n".encode())
                        break
                    await write(request, response, batch)
            except ConnectionError:
                pass  # the client went away (a cancellation, at shutdown, propagates)
            return response
        finally:
            self._release(address)
