"""Live observations for the console's device pages: one shared reader of
``<prefix>.observations`` per API process, running only while someone watches.

Each watcher (one device page's event stream) gets a bounded queue of its device's new
observations; a slow watcher loses its oldest ones (and is told how many), never slows the
others. Watchers are bounded per session (``console.live_streams_per_session``) and per process
(``console.live_streams``); past either, ``LiveRefused``. The reader starts with the first
watcher, from the topic's end (a page shows what arrives from now on), and stops
``IDLE_STOP_SECONDS`` after the last one left. It reads without a consumer group (``assign``:
no offsets move, no group to join) and looks at a record's key (the device id) before decoding
it, so the cost of records nobody watches is a dictionary lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from cityhub.streams.console.metrics import LIVE_DROPPED, LIVE_STREAMS

log = logging.getLogger("cityhub.console")

IDLE_STOP_SECONDS = 10.0
"""The reader outlives its last watcher this long, so a page reload does not restart it."""

Batch = Sequence[tuple[bytes | None, bytes]]
"""(key, value) records as the reader fetched them."""
ReadBatches = Callable[[Callable[[Batch], None], asyncio.Event], Awaitable[None]]
"""Reads the topic from its end, handing each batch to the callback, until cancelled; sets the
event once positioned at the end (what arrives after it is delivered)."""


class LiveRefused(Exception):
    """No more live streams for this session or this process; ``quota`` names which."""

    def __init__(self, quota: str) -> None:
        super().__init__(quota)
        self.quota = quota


@dataclass(eq=False, slots=True)
class Watcher:
    tenant: str
    device_id: str
    size: int
    queue: asyncio.Queue[dict[str, Any]] = field(init=False)
    dropped: int = 0

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.size)

    def offer(self, doc: dict[str, Any]) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
            LIVE_DROPPED.inc()
        self.queue.put_nowait(doc)


class LiveObservations:
    """The process's live observations (see the module)."""

    def __init__(
        self,
        read: ReadBatches,
        *,
        per_session: int,
        total: int,
        buffer: int,
        idle_stop_seconds: float = IDLE_STOP_SECONDS,
    ) -> None:
        self._read = read
        self._per_session = per_session
        self._total = total
        self._buffer = buffer
        self._idle_stop = idle_stop_seconds
        self._watchers: dict[bytes, set[Watcher]] = {}
        self._sessions: Counter[str] = Counter()
        self._count = 0
        self._task: asyncio.Task[None] | None = None
        self._positioned = asyncio.Event()
        self._stopper: asyncio.TimerHandle | None = None

    @property
    def watching(self) -> int:
        return self._count

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @contextlib.asynccontextmanager
    async def watch(
        self, tenant: str, device_id: str, session: str, *, ready_timeout: float = 10.0
    ) -> AsyncIterator[Watcher]:
        """A watcher of ``device_id`` of ``tenant`` for as long as the block runs; the reader
        is positioned (or ``ready_timeout`` passed) when the block starts."""
        if self._count >= self._total:
            raise LiveRefused("live_streams")
        if self._sessions[session] >= self._per_session:
            raise LiveRefused("live_streams_per_session")
        watcher = Watcher(tenant, device_id, self._buffer)
        key = device_id.encode()
        self._watchers.setdefault(key, set()).add(watcher)
        self._sessions[session] += 1
        self._count += 1
        LIVE_STREAMS.inc()
        self._ensure_running()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._positioned.wait(), ready_timeout)
            yield watcher
        finally:
            watchers = self._watchers.get(key)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[key]
            self._sessions[session] -= 1
            if self._sessions[session] <= 0:
                del self._sessions[session]
            self._count -= 1
            LIVE_STREAMS.dec()
            if self._count == 0:
                self._schedule_stop()

    def deliver(self, batch: Batch) -> None:
        """Hand each record of a watched device to its watchers (of the record's tenant)."""
        for key, value in batch:
            if key is None:
                continue
            watchers = self._watchers.get(key)
            if not watchers:
                continue
            try:
                doc = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(doc, dict):
                continue
            for watcher in tuple(watchers):
                if doc.get("tenant") == watcher.tenant:
                    watcher.offer(doc)

    def _ensure_running(self) -> None:
        if self._stopper is not None:
            self._stopper.cancel()
            self._stopper = None
        if not self.running:
            self._positioned = asyncio.Event()
            self._task = asyncio.create_task(self._run(self._positioned), name="console live")

    async def _run(self, positioned: asyncio.Event) -> None:
        try:
            await self._read(self.deliver, positioned)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the console's live observations reader failed; it restarts on demand")
            positioned.set()

    def _schedule_stop(self) -> None:
        if self._stopper is None:
            loop = asyncio.get_running_loop()
            self._stopper = loop.call_later(self._idle_stop, self._stop_if_idle)

    def _stop_if_idle(self) -> None:
        self._stopper = None
        if self._count == 0 and self._task is not None:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        if self._stopper is not None:
            self._stopper.cancel()
            self._stopper = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
