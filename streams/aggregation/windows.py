"""Tumbling event-time windows over canonical observations: count, min, max, sum, mean and last.

Pure: no Kafka, no clock. A :class:`WindowState` is the state of one input partition; the
aggregator agent (:mod:`cityhub.streams.aggregation.agent`) feeds it observations, writes what it
returns to ``cityhub.aggregates`` and keeps its JSON (:meth:`WindowState.to_json`, or the per-
window entries of :meth:`WindowState.take_changes`) in a changelog topic, so that a restarted
worker carries on where the old one stopped. :func:`recompute` is the offline answer that the
stream must agree with.

Windows
    Tumbling, one per configured size (default 60 s, 900 s, 3600 s), in event time (the
    observation's ``observed_at``), aligned to the Unix epoch: a window of size ``s`` covers
    ``[k*s, (k+1)*s)`` seconds since 1970-01-01T00:00:00Z. Everything is UTC microseconds, so
    daylight-saving changes play no part. Groups: (tenant, device, quantity, unit) and, for
    observations that carry an area and a tenant, (tenant, area, quantity, unit). The unit is
    part of the group: if a device or an area reports one quantity in two units, each unit gets
    its own aggregate, and no mean ever mixes them (a "keep the first unit" rule would depend on
    arrival order, and the aggregates would then not equal the offline recomputation). The
    tenant is part of the group so that no aggregate mixes tenants' data: devices of tenants A
    and B in one area give two area aggregates; a device moved to another tenant within a
    window gives two device aggregates. Observations of unregistered devices (tenant None) get
    device aggregates only (no subscription may see them; an area aggregate would mix them with
    other unowned data for nothing).

Privacy
    An aggregate's ``classification`` is the most restrictive one of the observations it counts
    (``public`` < None < ``internal`` < ``personal``, see
    :func:`cityhub.schemas.aggregate.most_restrictive`); a device aggregate's ``area`` is the
    area of the observation that ``last`` comes from. Both are order-independent, like ``last``.

Values
    Only finite ``int`` and ``float`` values within ±1e300 count; bools, strings, NaN,
    infinities and larger magnitudes (whose sums could overflow, and which no sensor reports)
    are skipped and counted (``non_numeric``). ``-0.0`` is taken as ``0.0``. The sum is kept exactly
    (Shewchuk's partials, as :func:`math.fsum`), so sum and mean are correctly rounded and do not
    depend on the order in which observations arrive. ``last`` is the value with the greatest
    ``observed_at``; ties go to the greatest event id.

Watermark and late data (``G`` = grace, default 60 s)
    The watermark ``W`` of a state is the greatest event time it has seen (or been advanced to
    with :meth:`WindowState.advance`); it never goes back. (With ``own_watermark`` off, only
    ``advance`` moves it: the caller derives it from upstream.) For a window ``[start, end)``:

    * ``W < end``: open. Observations update it; nothing is emitted.
    * ``W`` reaches ``end``: closed, emitted with ``revision`` 0. Its state is kept.
    * ``end <= W < end + G``: an observation for it that is not a duplicate updates it and it is
      emitted again at once with ``revision`` + 1 (a window first seen in this phase is emitted at
      once with revision 0).
    * ``W`` reaches ``end + G``: evicted. An observation for it from then on is dropped and
      counted (``late_dropped`` when it reached none of its windows, ``late_partial`` when it
      missed only some, e.g. its 1-minute window but not its 1-hour one).

    Hence the promise (tested with hypothesis): if every observation arrives while ``W`` is still
    below ``end + G`` of each of its windows, the last emission of every window equals
    :func:`recompute` over the same observations, whatever the arrival order, and whether or not
    the state went through JSON (a restart) in between. A window is written once it closes, then
    once per late change; the highest revision of an ``aggregate_id`` is the current value, and no
    new revision can come once ``W >= end + G``.

    An observation claiming a time more than ``max_future`` seconds after the caller's wall clock
    (``now``) is dropped and counted (``future_dropped``): one device with a wrong clock would
    otherwise push the watermark ahead and make everybody else's data late.

Duplicates and their bound
    Observations are delivered at least once, so each event id counts once. The ids are kept as
    63-bit digests (BLAKE2b), apart from the aggregates, in one set per device, quantity, unit
    and window of the largest end among the observation's windows (for nested sizes: the
    largest size). That window outlives the observation's other windows, so its set answers for
    all of them, the area windows included, and it is evicted with that window. So the state
    holds one digest per distinct observation younger than about the largest size + G: per
    partition, ``rate x (largest size + G)`` digests at most. The city of the brief, 10 000
    devices x 5 quantities a minute (833 observations/s), peaks at 833 x 3660 = 3.05 million
    digests over all partitions (at about 75 B each in memory, 20 B in JSON: some 230 MB of
    memory, shared by the workers); 3 sizes x 2 groupings do not multiply it.
    One set never keeps more than ``max_event_ids`` digests (default 100 000, a device reporting
    every 36 ms for an hour); beyond that the observations still count but are no longer
    remembered (``dedup_overflow``), so their duplicates could count twice.

    The first copy of an event id wins; event ids identify the observation (the normaliser makes
    them from device, frame and field), so copies carry the same time, value and unit.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from typing import Any

from cityhub.schemas.aggregate import MAX_WINDOW_SECONDS, Aggregate
from cityhub.schemas.timefmt import EARLIEST_US, LATEST_US
from cityhub.streams.aggregation.coverage import (
    ROSTER,
    Roster,
    area_expected,
    note,
    roster_entry,
    roster_from_entry,
    roster_key,
    roster_step_us,
    sweep,
)
from cityhub.streams.aggregation.points import US, Point
from cityhub.streams.aggregation.window_config import WindowConfig
from cityhub.streams.aggregation.window_stats import (
    SEEN,
    SeriesKey,
    WindowKey,
    WindowStats,
    digest,
    key_order,
    number,
    series_entry_key,
    series_of,
    to_aggregate,
)

STATE_VERSION = 3
"""2: the tenant in every key, classification and last area in every window entry; 3: the
sequence number of the last record applied to each window (and, optional in the meta, of the
last record the state took)."""

COUNTERS = (
    "observations",
    "aggregated",
    "non_numeric",
    "no_group",
    "duplicates",
    "late_dropped",
    "late_partial",
    "future_dropped",
    "dedup_overflow",
    "emitted",
    "re_emitted",
)
"""Counters kept in the state (cumulative, restored with it); the agent exports them as metrics.

``no_group``: an observation without an area or a tenant in a state that groups by area only."""


class WindowState:
    """The windows of one input partition, with its watermark and counters.

    Not thread-safe; one agent task owns it. ``add`` and ``advance`` return the aggregates to
    write, in a deterministic order (by window end, then group); write them before committing the
    input offsets past the observations that produced them.
    """

    def __init__(self, config: WindowConfig | None = None) -> None:
        self.config = config or WindowConfig()
        self.watermark: int | None = None
        """µs since the epoch; None until the first observation."""
        self.seq = -1
        """The caller's sequence number (input offset) of the last record taken; -1: none."""
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._windows: dict[WindowKey, WindowStats] = {}
        self._seen: dict[WindowKey, set[int]] = {}
        """Event id digests by (SEEN, device, quantity, unit, size, start) of the observations'
        longest-lived window; evicted with that window."""
        self._by_end: dict[int, list[WindowKey]] = {}
        self._close_heap: list[int] = []
        """Window ends not yet passed by the watermark (each end once)."""
        self._evict_heap: list[int] = []
        """Every end in _by_end (each once), for eviction at end + grace."""
        self._members: dict[SeriesKey, set[WindowKey]] = {}
        """The windows and sets of seen ids held, by the table entry (series) they belong to."""
        self._changed: dict[SeriesKey, None] = {}
        self._rosters: dict[SeriesKey, Roster] = {}
        """Area series: the devices expected to report (``coverage``), an entry of their own."""
        self._roster_changed: dict[SeriesKey, None] = {}
        self._swept = -(1 << 80)
        self._sizes = tuple((s, s * US) for s in self.config.sizes)
        self._grace_us = self.config.grace * US
        self._device = "device" in self.config.groupings
        self._area = "area" in self.config.groupings
        self._own_watermark = self.config.own_watermark
        self._exclude = self.config.exclude_flagged
        self._roster_s = self.config.roster_seconds
        self._roster_step = roster_step_us(self._roster_s)
        # A roster entry older than this behind the watermark counts for no window still held.
        self._roster_us = max(self._roster_s, *self.config.sizes) * US + self._grace_us

    def __len__(self) -> int:
        """Number of windows held (open or within their grace period)."""
        return len(self._windows)

    # -- feeding -------------------------------------------------------------------------------

    def add(
        self, point: Point, *, now: float | None = None, seq: int | None = None
    ) -> list[Aggregate]:
        """Take one observation; return the aggregates it causes to be written: late re-emissions
        of windows it changed, then windows that its event time closed. ``now`` (wall clock,
        seconds) enables the ``max_future`` check.

        ``seq`` (the input record's offset: increasing, never reused) makes a repeated record
        harmless even when only part of the state it changed was saved. A state's changes are
        saved as several entries (``take_changes``: the windows, then the set of seen event
        ids, in that order); a crash may keep the first few of them only. The record is then
        processed again, is no duplicate (its id did not reach the saved set), and the windows
        whose saved ``seq`` shows they already hold it are skipped. A record whose ``seq`` is not
        above the state's (its meta is written last, so the record was saved whole) is a
        duplicate, even when its windows are gone (processed again after a crash, it would
        otherwise count as too late)."""
        c = self.counters
        c["observations"] += 1
        if seq is not None:
            if seq <= self.seq:
                c["duplicates"] += 1
                return []
            self.seq = seq
        t = point.observed_us
        max_future = self.config.max_future
        if now is not None and max_future is not None and t > (now + max_future) * US:
            c["future_dropped"] += 1
            return []
        wm = self.watermark
        x = number(point.value)
        if x is None:
            c["non_numeric"] += 1
            return self._advance(t) if self._own_watermark else []
        groups: list[tuple[str, str]] = []
        tenant = point.tenant
        if self._device:
            groups.append(("device", point.device_id))
        if self._area and point.area is not None and tenant is not None:
            groups.append(("area", point.area))
        if not groups:
            c["no_group"] += 1
            return self._advance(t) if self._own_watermark else []
        grace = self._grace_us
        quantity, unit, event_id = point.quantity, point.unit, point.event_id
        device_series: SeriesKey = ("device", point.device_id, quantity, unit)
        classification, area = point.classification, point.area
        flagged, interval, exclude = point.flagged, point.interval_s, self._exclude

        # The window whose set of seen ids answers for duplicates: the one that ends last.
        h_size = h_start = 0
        h_end = -(1 << 80)  # below any end, 1970 or not
        for size_s, size_us in self._sizes:
            start = t - t % size_us
            end = start + size_us
            if end > h_end or (end == h_end and size_s > h_size):
                h_size, h_start, h_end = size_s, start, end
        if wm is not None and h_end + grace <= wm:
            c["late_dropped"] += 1
            return []
        seen_key: WindowKey = (SEEN, None, point.device_id, quantity, unit, h_size, h_start)
        seen = self._seen.get(seen_key)
        event_digest = digest(event_id)
        if seen is not None and event_digest in seen:
            c["duplicates"] += 1
            return []

        out: list[Aggregate] = []
        missed = 0
        windows = self._windows
        changed = self._changed
        for g, k in groups:
            if g == "device":
                series, own_interval = device_series, interval
            else:
                series, own_interval = ("area", tenant, k, quantity, unit), None
                roster = self._rosters.get(series)
                if roster is None:
                    roster = self._rosters[series] = {}
                if note(roster, point.device_id, t, interval, self._roster_step):
                    self._roster_changed[series] = None
            for size_s, size_us in self._sizes:
                start = t - t % size_us
                end = start + size_us
                if wm is not None and end + grace <= wm:
                    missed += 1
                    continue
                key: WindowKey = (g, tenant, k, quantity, unit, size_s, start)
                w = windows.get(key)
                if w is None:
                    w = windows[key] = WindowStats(
                        x, t, event_id, classification, area, flagged, own_interval, exclude
                    )
                    self._track(key, end)
                elif seq is not None and w.seq >= seq:
                    continue  # applied before a crash that saved this window but not the ids
                else:
                    w.add(x, t, event_id, classification, area, flagged, own_interval, exclude)
                if seq is not None:
                    w.seq = seq
                changed[series] = None
                if wm is not None and end <= wm:
                    out.append(self._emit(key, w))
        if seen is None:
            seen = self._seen[seen_key] = set()
            self._track(seen_key, h_end)
        if len(seen) < self.config.max_event_ids:
            seen.add(event_digest)
            changed[device_series] = None
        else:
            c["dedup_overflow"] += 1
        if missed:
            c["late_partial"] += 1
        c["aggregated"] += 1
        if self._own_watermark:
            out.extend(self._advance(t))
        return out

    def advance(self, watermark: float) -> list[Aggregate]:
        """Move the watermark to ``watermark`` (seconds since the epoch) if that is ahead, and
        return the windows that this closes. For partitions that go quiet: the agent may advance
        to wall clock minus the lateness it tolerates, so that windows close without new data."""
        return self._advance(math.floor(watermark * US))

    def advance_us(self, watermark: int) -> list[Aggregate]:
        """:meth:`advance` in µs since the epoch (exact: no float in between)."""
        return self._advance(watermark)

    def flush(self) -> list[Aggregate]:
        """Close and evict every window (end of a finite input): as if the watermark jumped past
        the last window's end + grace. Later observations for those windows are late."""
        if not self._by_end:
            return []
        return self._advance(max(self._by_end) + self._grace_us)

    def emitted(self) -> list[Aggregate]:
        """The last emission of every window held that was emitted (closed, within its grace
        period), unchanged: same revision, same content, in the order the windows close. A
        restarted worker writes these again, so that an emission lost between the state's write
        and the aggregate's is not lost for good; consumers drop the copies (same
        ``aggregate_id`` and ``revision``)."""
        out: list[Aggregate] = []
        for end in sorted(self._by_end):
            for key in sorted(self._by_end[end], key=key_order):
                w = self._windows.get(key)
                if w is not None and w.revision >= 0:
                    out.append(to_aggregate(key, w, self._expected(key)))
        return out

    def _expected(self, key: WindowKey) -> float | None:
        """An area window's expected readings, from its roster (a device window's follow from
        its own interval)."""
        if key[0] != "area":
            return None
        roster = self._rosters.get(series_of(key))
        if not roster:
            return None
        return area_expected(roster, key[5], key[6] + key[5] * US, self._roster_s)

    # -- internals -----------------------------------------------------------------------------

    def _track(self, key: WindowKey, end: int) -> None:
        series = series_of(key)
        members = self._members.get(series)
        if members is None:
            self._members[series] = {key}
        else:
            members.add(key)
        keys = self._by_end.get(end)
        if keys is None:
            self._by_end[end] = [key]
            heapq.heappush(self._evict_heap, end)
            if self.watermark is None or end > self.watermark:
                heapq.heappush(self._close_heap, end)
        else:
            keys.append(key)

    def _emit(self, key: WindowKey, w: WindowStats) -> Aggregate:
        w.revision += 1
        self.counters["re_emitted" if w.revision else "emitted"] += 1
        self._changed[series_of(key)] = None
        return to_aggregate(key, w, self._expected(key))

    def _advance(self, wm: int) -> list[Aggregate]:
        if self.watermark is not None and wm <= self.watermark:
            return []
        self.watermark = wm
        out: list[Aggregate] = []
        close = self._close_heap
        while close and close[0] <= wm:
            keys = self._by_end.get(heapq.heappop(close))
            if keys:
                for key in sorted(keys, key=key_order):
                    w = self._windows.get(key)  # None: a set of seen ids
                    if w is not None and w.revision < 0:
                        out.append(self._emit(key, w))
        evict = self._evict_heap
        horizon = wm - self._grace_us
        while evict and evict[0] <= horizon:
            for key in self._by_end.pop(heapq.heappop(evict), ()):
                if self._windows.pop(key, None) is None:
                    del self._seen[key]
                series = series_of(key)
                self._members[series].discard(key)
                self._changed[series] = None
        if self._rosters and wm - self._swept >= 60 * US:  # a sweep a minute is plenty
            self._swept = wm
            for series, roster in list(self._rosters.items()):
                if sweep(roster, wm - self._roster_us):
                    self._roster_changed[series] = None
                    if not roster:
                        del self._rosters[series]
        return out

    # -- persistence ---------------------------------------------------------------------------

    def meta_json(self) -> dict[str, Any]:
        """The state apart from its windows: version, watermark, counters and ``seq``."""
        return {
            "v": STATE_VERSION,
            "watermark": self.watermark,
            "counters": dict(self.counters),
            "seq": self.seq,
        }

    def _entry(self, key: WindowKey) -> list[Any]:
        w = self._windows.get(key)
        if w is not None:
            return w.to_list(key)
        return [*key, sorted(self._seen[key])]

    def to_json(self) -> dict[str, Any]:
        """The whole state as plain JSON data (dicts, lists, str, int, float, None): the meta of
        ``meta_json`` and ``entries``, one list per window and per set of seen event ids."""
        keys = [*self._windows, *self._seen]
        rosters = [roster_entry(series, r) for series, r in self._rosters.items() if r]
        return {**self.meta_json(), "entries": [self._entry(key) for key in keys] + rosters}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], config: WindowConfig | None = None) -> WindowState:
        """The state that ``to_json`` (or ``meta_json`` plus the lists in the entries of
        ``take_changes``, as ``{**meta, "entries": [...]}``) describes. It behaves exactly as
        the original: same emissions, in the same order, for the same input. ``config`` may
        differ from the original's; windows of sizes no longer configured still close and
        evict normally."""
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"unknown window state version {data.get('v')!r}")
        state = cls(config)
        wm = data.get("watermark")
        state.watermark = None if wm is None else int(wm)
        state.seq = int(data.get("seq", -1))
        for name, value in data.get("counters", {}).items():
            state.counters[name] = int(value)
        keys: list[WindowKey] = []
        for item in data.get("entries", ()):
            if item[0] == ROSTER:
                series, roster = roster_from_entry(list(item))
                state._rosters[series] = roster
                continue
            size, start = int(item[5]), int(item[6])
            if not (EARLIEST_US <= start < LATEST_US and 0 < size <= MAX_WINDOW_SECONDS):
                # A window that could never be emitted (saved before times and sizes were
                # checked: one of year 9999, one that ends past it): leave it behind.
                continue
            if item[0] == SEEN:
                _, _, k, q, unit, size, start, ids = item
                key: WindowKey = (SEEN, None, str(k), str(q), unit, int(size), int(start))
                state._seen[key] = {int(d) for d in ids}
            else:
                key, w = WindowStats.from_list(list(item))
                state._windows[key] = w
            keys.append(key)
        # Order-independent: a table gives its entries back in any order.
        for key in sorted(keys, key=key_order):
            state._track(key, key[6] + key[5] * US)
        return state

    def take_changes(self) -> tuple[dict[str, Any], dict[str, list[Any] | None]]:
        """What changed since the last call, for a table that keeps the state in parts (the
        whole state is too big to write per observation): the meta (see ``meta_json``) and,
        by entry key (:func:`series_entry_key`), the entries of each changed series: a list of
        the window and seen-id lists that ``to_json`` would give for it, or None when it holds
        nothing any more (delete it). One device's quantity is one series, its windows and its
        seen ids together: what one observation changes in a device state is one entry.

        Write them in the order given (area rosters, area series, then device series) and the
        meta last. A
        crash may keep only the first few: processing the record again with the same ``seq``
        repairs that (see :meth:`add`); in an area state the seen ids are in the device series,
        after the area windows that the observation changed."""
        entries: dict[str, list[Any] | None] = {}
        for series in self._roster_changed:  # first: see add (a torn write)
            roster = self._rosters.get(series)
            items = [roster_entry(series, roster)] if roster else None
            entries[series_entry_key(roster_key(series))] = items
        self._roster_changed = {}
        members = self._members
        changed = sorted(self._changed, key=lambda series: series[0] != "area")
        for series in changed:
            keys = members.get(series)
            items = [self._entry(key) for key in sorted(keys, key=key_order)] if keys else []
            if not keys:
                members.pop(series, None)
            entries[series_entry_key(series)] = items or None
        self._changed = {}
        return self.meta_json(), entries
