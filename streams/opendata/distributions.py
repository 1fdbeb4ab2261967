"""The open data an API process serves: the view of the ``open_data`` topic and the daily files.

``OpenDataDistributions`` tails the compacted topic into an ``OpenDataView`` (every API process
holds the same view; no consumer group) and writes the daily CSV and Parquet files of each day
that got windows, debounced (``debounce_seconds`` after the first new window of a batch), in a
thread so the event loop keeps serving. Several processes may write the same files: the bytes
are the same, and each write is a rename.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from prometheus_client import Counter, Gauge

from cityhub.schemas.open_data import OpenDataSettings, OpenWindow
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.compacted import CompactedTopicStore, InMemoryCompactedStore
from cityhub.streams.opendata import files
from cityhub.streams.opendata.files import day_bounds
from cityhub.streams.opendata.stream import HEARTBEAT_SECONDS, OpenDataStreams
from cityhub.streams.opendata.view import OpenDataView

log = logging.getLogger("cityhub.opendata")

DEFAULT_FILES_ROOT = Path(".cityhub/open-data")
"""Where the files go without ``open_data.files_dir``: a folder per Kafka topic prefix in it."""
FILES_WRITTEN = Counter(
    "cityhub_open_data_files_written_total",
    "Daily open-data files (CSV and Parquet together) written by this process.",
)
FILE_FAILURES = Counter(
    "cityhub_open_data_file_failures_total",
    "Daily open-data files this process failed to write (tried again after the debounce).",
)
HELD = Gauge("cityhub_open_data_windows_held", "Published windows the open API holds in memory.")
SKIPPED = Gauge(
    "cityhub_open_data_windows_skipped",
    "Windows of old days this process did not write to a file (its buffer was full).",
)

OpenDataStore = (
    CompactedTopicStore[OpenDataView, OpenWindow] | InMemoryCompactedStore[OpenDataView, OpenWindow]
)


def window_key(window: OpenWindow) -> str:
    return window.key


class OpenDataDistributions:
    """The view, the files and what the routes ask of them."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: OpenDataStore | None = None,
        clock: Callable[[], float] = time.time,
        debounce_seconds: float = 2.0,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        """Tail ``settings``' open-data topic (or ``store``, whose view must be an
        ``OpenDataView``: tests give an in-memory one)."""
        self.settings: OpenDataSettings = settings.open_data
        self.files_dir = (
            Path(self.settings.files_dir)
            if self.settings.files_dir is not None
            else DEFAULT_FILES_ROOT / settings.kafka.topic_prefix
        )
        self._clock = clock
        self._debounce = debounce_seconds
        if store is None:
            view = OpenDataView(
                (d.id for d in self.settings.datasets),
                recent_days=self.settings.recent_days,
                clock=clock,
            )
            store = CompactedTopicStore(
                settings,
                topic=Topics.for_prefix(settings.kafka.topic_prefix).open_data,
                view=view,
                key_of=window_key,
                what="open data",
                client_id="cityhub-open-data",
                describe=lambda v: f"{v.held} windows of the recent days",
            )
        self.store: OpenDataStore = store
        self.streams = OpenDataStreams(
            lambda: self.store.view,
            self.store.wait_beyond,
            {d.id: d.licence for d in self.settings.datasets},
            max_per_address=settings.quotas.open_data_streams_per_address,
            max_total=settings.quotas.open_data_streams,
            heartbeat_seconds=heartbeat_seconds,
        )
        """The live streams of this process."""
        self._writer: asyncio.Task[None] | None = None

    @property
    def view(self) -> OpenDataView:
        return self.store.view

    @property
    def ready(self) -> bool:
        return self.store.ready

    def now(self) -> float:
        return self._clock()

    async def start(self) -> None:
        """Load the view (Unavailable if the topic cannot be read) and start writing files."""
        await self.store.start()
        self._writer = asyncio.create_task(self._write_loop(), name="cityhub-open-data-files")

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        with contextlib.suppress(Exception):
            await self.flush()  # what arrived since the last write, before the process ends
        await self.store.stop()

    async def _write_loop(self) -> None:
        flushed = -1
        while True:
            # Wake on new windows, then wait the debounce so that a burst is one write.
            await self.store.wait_beyond(flushed, 60.0)
            await asyncio.sleep(self._debounce)
            flushed = self.view.offset  # whatever arrives later wakes the next round
            await self.flush()

    async def flush(self) -> int:
        """Write the files of every day that got windows since the last flush; the number of
        days written. A day whose write fails is tried again at the next flush."""
        written = 0
        failed: list[str] = []
        first_error: Exception | None = None
        for dataset, day, windows in self.view.take_dirty():
            try:
                await asyncio.to_thread(files.write_day, self.files_dir, dataset, day, windows)
            except Exception as exc:
                FILE_FAILURES.inc()
                failed.append(f"{dataset} {day}")
                first_error = first_error or exc
                self.view.requeue(dataset, day, windows)
                continue
            FILES_WRITTEN.inc()
            written += 1
        if failed:
            # One line per round, not per day: an unwritable folder fails every day at once.
            log.error(
                "writing %d open-data day(s) to %s failed (%s%s); tried again with the next "
                "windows or within a minute: %s",
                len(failed),
                self.files_dir,
                ", ".join(failed[:3]),
                ", ..." if len(failed) > 3 else "",
                first_error,
            )
        HELD.set(self.view.held)
        SKIPPED.set(self.view.skipped)
        return written

    # --- what the routes read ------------------------------------------------------------------

    async def windows_of_day(
        self, dataset: str, day: date, *, area: str | None = None, quantity: str | None = None
    ) -> list[OpenWindow]:
        """``dataset``'s windows of ``day`` (those of ``area`` and ``quantity`` when given), in
        file order: from memory for a recent day, else from its file."""
        if self.view.holds(day):
            return [
                w
                for w in self.view.windows(dataset, day)
                if (area is None or w.area == area) and (quantity is None or w.quantity == quantity)
            ]
        return await asyncio.to_thread(
            lambda: files.read_day(self.files_dir, dataset, day, area=area, quantity=quantity)
        )

    def day_complete(self, day: date) -> bool:
        """Whether ``day`` can get no more windows: the clock is past its end and the
        publisher's grace (and a last window's publication) after it."""
        _, end = day_bounds(day)
        closes = end + timedelta(seconds=self.settings.grace_seconds)
        return self.now() >= closes.timestamp()

    def file_days(self, dataset: str) -> list[date]:
        """The days ``dataset`` has files for, oldest first."""
        return files.list_days(self.files_dir, dataset)

    async def read_file(self, dataset: str, day: date, fmt: str) -> bytes | None:
        """A daily file's bytes, or None when it does not exist."""
        path = files.day_path(self.files_dir, dataset, day, fmt)

        def read() -> bytes | None:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                return None

        return await asyncio.to_thread(read)
