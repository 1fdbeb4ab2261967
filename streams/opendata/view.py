"""The open-data view: the published windows of the last ``recent_days`` UTC days, in memory.

Fed by the compacted ``open_data`` topic (``cityhub.streams.compacted``: it is a ``View``), read
by the open API (recent days), the file writer (which days changed) and the live stream (what
arrived after an offset). Pure: no I/O, the clock is given.

Bounded three ways: days before the first held day leave memory as the clock moves on (their
windows live in the daily files); at most ``max_windows`` windows are held (past it the oldest
day leaves); windows of older days (a replay of the topic at start, a late window) wait for the
file writer in a buffer of at most ``max_pending`` windows, past which they are counted as
``skipped`` and not written; and the stream's feed keeps the last ``feed_size`` windows.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta

from pydantic import ValidationError

from cityhub.schemas.errors import InvalidTimestamp
from cityhub.schemas.open_data import OpenWindow
from cityhub.streams.opendata.files import canonical, canonical_time, sorted_windows

Slot = tuple[str, date]
"""A dataset and a UTC day: one daily file."""

DEFAULT_MAX_WINDOWS = 200_000
"""About 300 MB (a held window takes about 1.6 kB)."""
DEFAULT_MAX_PENDING = 100_000
DEFAULT_FEED_SIZE = 10_000


def utc_day(ts: float) -> date:
    """The UTC day of a clock reading."""
    return datetime.fromtimestamp(ts, UTC).date()


class OpenDataView:
    """The windows of ``datasets`` (others are ignored and counted) of the recent days."""

    def __init__(
        self,
        datasets: Iterable[str],
        *,
        recent_days: int,
        clock: Callable[[], float] = time.time,
        max_windows: int = DEFAULT_MAX_WINDOWS,
        max_pending: int = DEFAULT_MAX_PENDING,
        feed_size: int = DEFAULT_FEED_SIZE,
    ) -> None:
        if recent_days < 1 or max_windows < 1 or max_pending < 0 or feed_size < 1:
            raise ValueError("the view's bounds must be positive")
        self._datasets = frozenset(datasets)
        self._recent_days = recent_days
        self._clock = clock
        self._max_windows = max_windows
        self._max_pending = max_pending
        self._days: dict[Slot, dict[str, OpenWindow]] = {}
        self._pending: dict[Slot, dict[str, OpenWindow]] = {}
        self._pending_count = 0
        self._dirty: set[Slot] = set()
        self._feed: deque[tuple[int, OpenWindow]] = deque(maxlen=feed_size)
        self._held = 0
        self.offset = -1
        self.malformed = 0
        self.ignored = 0
        """Windows of datasets this hub does not publish (or whose key is not theirs)."""
        self.skipped = 0
        """Windows of old days not written to a file: the pending buffer was full."""

    # --- what is held --------------------------------------------------------------------------

    @property
    def held(self) -> int:
        """Windows held in memory."""
        return self._held

    @property
    def pending(self) -> int:
        """Windows of days not held that wait for the file writer."""
        return self._pending_count

    def first_day_held(self) -> date:
        """The oldest UTC day kept in memory now (``recent_days`` days up to today)."""
        return utc_day(self._clock()) - timedelta(days=self._recent_days - 1)

    def holds(self, day: date) -> bool:
        """Whether ``day``'s windows are served from memory (else from the files)."""
        return day >= self.first_day_held()

    def windows(self, dataset: str, day: date) -> list[OpenWindow]:
        """``dataset``'s windows of ``day`` in file order (empty when none, or not held)."""
        return sorted_windows(self._days.get((dataset, day), {}).values())

    def days(self, dataset: str) -> list[date]:
        """The days of ``dataset`` with windows in memory, oldest first."""
        return sorted(day for (d, day) in self._days if d == dataset)

    # --- fed by the topic ----------------------------------------------------------------------

    def apply(self, key: str, value: bytes | None, offset: int) -> None:
        """Apply one record of the topic; never raises."""
        self.offset = offset
        if value is None:
            self._forget(key)
            return
        try:
            window = canonical(OpenWindow.model_validate_json(value))
        except (ValidationError, InvalidTimestamp, ValueError):
            self.malformed += 1
            return
        # A key that is not the window's own would let one window shadow another.
        if window.dataset not in self._datasets or self._canonical_key(key) != window.key:
            self.ignored += 1
            return
        self._evict_old_days()
        slot = (window.dataset, date.fromisoformat(window.day))
        if self.holds(slot[1]):
            bucket = self._days.setdefault(slot, {})
            if window.key not in bucket:
                self._held += 1
            bucket[window.key] = window
            self._evict_over_bound()
        elif not self._hold_pending(slot, {window.key: window}):
            return
        self._dirty.add(slot)
        self._feed.append((offset, window))

    @staticmethod
    def _canonical_key(key: str) -> str:
        """A key with its start time in canonical form (the publisher may write another RFC 3339
        form of the same instant)."""
        head, sep, start = key.rpartition("/")
        if not sep:
            return key
        try:
            return f"{head}/{canonical_time(start)}"
        except ValueError:  # InvalidTimestamp is one
            return key

    def _forget(self, key: str) -> None:
        """A tombstone: the window leaves memory (a file keeps what it was written with)."""
        key = self._canonical_key(key)
        for bucket in self._days.values():
            if bucket.pop(key, None) is not None:
                self._held -= 1
                return

    def _hold_pending(self, slot: Slot, windows: dict[str, OpenWindow]) -> bool:
        bucket = self._pending.setdefault(slot, {})
        added = False
        for key, window in windows.items():
            if key not in bucket:
                if self._pending_count >= self._max_pending:
                    self.skipped += 1
                    continue
                self._pending_count += 1
            bucket[key] = window
            added = True
        if not bucket:
            del self._pending[slot]
        return added

    def _evict_old_days(self) -> None:
        first = self.first_day_held()
        for slot in [s for s in self._days if s[1] < first]:
            self._drop_day(slot)

    def _evict_over_bound(self) -> None:
        while self._held > self._max_windows and self._days:
            self._drop_day(min(self._days, key=lambda s: (s[1], s[0])))

    def _drop_day(self, slot: Slot) -> None:
        """``slot`` leaves memory; if its file is not written yet, its windows wait for it."""
        bucket = self._days.pop(slot)
        self._held -= len(bucket)
        if slot in self._dirty:
            self._hold_pending(slot, bucket)

    # --- read by the file writer and the stream ------------------------------------------------

    def take_dirty(self) -> list[tuple[str, date, list[OpenWindow]]]:
        """The days that got windows since the last call, each with the windows to write: all
        of the day's when it is held, else those waiting for it (which leave the buffer)."""
        self._evict_old_days()
        result = []
        for slot in sorted(self._dirty, key=lambda s: (s[1], s[0])):
            if slot in self._days:
                windows = list(self._days[slot].values())
            else:
                waiting = self._pending.pop(slot, {})
                self._pending_count -= len(waiting)
                windows = list(waiting.values())
            if windows:
                result.append((slot[0], slot[1], windows))
        self._dirty.clear()
        return result

    def requeue(self, dataset: str, day: date, windows: Iterable[OpenWindow]) -> None:
        """A write that failed: its day is written again at the next ``take_dirty``."""
        slot = (dataset, day)
        if slot not in self._days:
            self._hold_pending(slot, {w.key: w for w in windows})
        self._dirty.add(slot)

    def feed_after(self, offset: int) -> list[tuple[int, OpenWindow]]:
        """The windows applied after ``offset`` that the feed still holds, in offset order."""
        if not self._feed or self._feed[-1][0] <= offset:
            return []
        return [(o, w) for (o, w) in self._feed if o > offset]

    def feed_start(self) -> int:
        """The offset of the oldest window the feed holds (the view's offset when empty)."""
        return self._feed[0][0] if self._feed else self.offset
