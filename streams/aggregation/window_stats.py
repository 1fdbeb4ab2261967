"""The running statistics of one window, its key, and the aggregate they make.

Pure and mutable: a :class:`WindowStats` lives only inside a
:class:`~cityhub.streams.aggregation.windows.WindowState`, which decides when it is created,
updated, emitted and evicted."""

from __future__ import annotations

import functools
import hashlib
import math
from typing import Any

import orjson

from cityhub.schemas.aggregate import Aggregate, aggregate_id, most_restrictive
from cityhub.streams.aggregation.coverage import coverage, expected_readings
from cityhub.streams.aggregation.points import US, format_us

MAX_VALUE = 1e300
"""Values of a greater magnitude do not count: a window's exact sum stays finite."""

_DIGEST_MASK = (1 << 63) - 1

WindowKey = tuple[str, str | None, str, str, str | None, int, int]
"""(grouping, tenant, device id or area, quantity, unit, size in s, start in µs); grouping SEEN
marks the key of a set of seen event ids (its tenant is always None: event ids are per device)."""

SEEN = "seen"

SeriesKey = tuple[str | None, ...]
"""What one table entry holds (see ``WindowState.take_changes``): ("device", device id,
quantity, unit), the windows of one device's quantity in one unit (of every tenant) with their
sets of seen event ids; or ("area", tenant, area, quantity, unit), the windows of one area's
quantity and its roster of devices (``coverage``)."""


def series_of(key: WindowKey) -> SeriesKey:
    """The series (table entry) a window or a set of seen ids belongs to."""
    g, tenant, k, q, unit, _, _ = key
    if g == "area":
        return ("area", tenant, k, q, unit)
    return ("device", k, q, unit)


def series_entry_key(series: SeriesKey) -> str:
    """A series' key as a string (JSON text), for its table entry."""
    return orjson.dumps(list(series)).decode()


@functools.lru_cache(maxsize=4096)
def format_boundary(us: int) -> str:
    """format_us for window bounds, which thousands of windows share."""
    return format_us(us)


def number(value: Any) -> float | None:
    """The value as a finite float with -0.0 made 0.0, or None when it does not count."""
    if type(value) is float:
        x = value
    elif type(value) is int or (isinstance(value, int | float) and not isinstance(value, bool)):
        try:
            x = float(value)
        except OverflowError:
            return None
    else:
        return None
    if not -MAX_VALUE <= x <= MAX_VALUE:  # also False for NaN
        return None
    return x + 0.0  # -0.0 + 0.0 == +0.0: min and max must not depend on arrival order


def digest(event_id: str) -> int:
    """63-bit digest of an event id, the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest()) & _DIGEST_MASK


def key_order(key: WindowKey) -> tuple[Any, ...]:
    """Total order of window keys (None units first), so emissions come in one order however
    the state was built or restored."""
    g, tenant, k, q, unit, size, start = key
    return (g, tenant is not None, tenant or "", k, q, unit is not None, unit or "", size, start)


class WindowStats:
    """The running statistics of one window (mutable; lives only inside a WindowState)."""

    __slots__ = (
        "aid",
        "area",
        "classification",
        "count",
        "flagged",
        "interval",
        "last_id",
        "last_us",
        "last_value",
        "max",
        "min",
        "partials",
        "readings",
        "revision",
        "seq",
    )

    def __init__(
        self,
        x: float,
        t: int,
        event_id: str,
        classification: str | None,
        area: str | None,
        flagged: bool = False,
        interval: int | None = None,
        exclude: bool = False,
    ) -> None:
        self.readings = 1
        """Every reading taken (flagged ones included)."""
        self.flagged = 1 if flagged else 0
        if flagged and exclude:
            # Kept out of the statistics: none yet (min and max are infinities until one comes).
            self.count = 0
            self.min = math.inf
            self.max = -math.inf
            self.partials: list[float] = []
        else:
            self.count = 1
            """The readings in min, max, sum and mean."""
            self.min = x
            self.max = x
            self.partials = [x]
        self.interval = interval
        """The device's expected interval (s) as the last reading gave it (device windows)."""
        self.last_us = t
        self.last_id = event_id
        self.last_value = x
        self.classification = classification
        """The most restrictive classification so far."""
        self.area = area
        """The area of the last observation (greatest time, then event id)."""
        self.revision = -1
        """-1: never emitted; else the revision of the last emission."""
        self.seq = -1
        """The caller's sequence number (input offset) of the last record applied; -1: none."""
        self.aid: str | None = None
        """The aggregate id, once computed (not persisted: it follows from the key)."""

    def add(
        self,
        value: float,
        t: int,
        event_id: str,
        classification: str | None,
        area: str | None,
        flagged: bool = False,
        interval: int | None = None,
        exclude: bool = False,
    ) -> None:
        self.readings += 1
        if classification != self.classification:
            self.classification = most_restrictive(self.classification, classification)
        if t > self.last_us or (t == self.last_us and event_id > self.last_id):
            self.last_us = t
            self.last_id = event_id
            self.last_value = value
            self.area = area
            self.interval = interval
        if flagged:
            self.flagged += 1
            if exclude:
                return
        self.count += 1
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        x = value
        # Add x to the exact sum held as non-overlapping partials (Shewchuk; the msum recipe
        # behind math.fsum), so that math.fsum(partials) is the correctly rounded sum. Inline:
        # this runs for every window of every observation.
        partials = self.partials
        i = 0
        for y in partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                partials[i] = lo
                i += 1
            x = hi
        partials[i:] = [x]

    def to_list(self, key: WindowKey) -> list[Any]:
        return [
            *key,
            self.count,
            self.min if self.count else None,
            self.max if self.count else None,
            list(self.partials),
            self.last_us,
            self.last_id,
            self.last_value,
            self.revision,
            self.classification,
            self.area,
            self.seq,
            self.readings,
            self.flagged,
            self.interval,
        ]

    @classmethod
    def from_list(cls, data: list[Any]) -> tuple[WindowKey, WindowStats]:
        g, tenant, k, q, unit, size, start = data[:7]
        count, lo, hi, partials, last_us, last_id, last_value, revision, cl, area, seq = data[7:18]
        w = cls.__new__(cls)
        w.count = int(count)
        w.min = math.inf if lo is None else float(lo)
        w.max = -math.inf if hi is None else float(hi)
        w.partials = [float(p) for p in partials]
        w.last_us = int(last_us)
        w.last_id = str(last_id)
        w.last_value = float(last_value)
        w.revision = int(revision)
        w.classification = None if cl is None else str(cl)
        w.area = None if area is None else str(area)
        w.seq = int(seq)
        # Entries written before coverage (18 items) took every reading, none flagged.
        readings, flagged, interval = data[18:21] if len(data) >= 21 else (count, 0, None)
        w.readings = int(readings)
        w.flagged = int(flagged)
        w.interval = None if interval is None else int(interval)
        w.aid = None
        return (
            str(g),
            None if tenant is None else str(tenant),
            str(k),
            str(q),
            None if unit is None else str(unit),
            int(size),
            int(start),
        ), w


def to_aggregate(key: WindowKey, w: WindowStats, expected: float | None = None) -> Aggregate:
    """The aggregate of a window. ``expected``: the readings an area's devices promised (see
    :mod:`cityhub.streams.aggregation.coverage`); a device window's follows from its size and
    the device's interval."""
    g, tenant, k, q, unit, size, start = key
    total: float | None = None
    if w.count:
        try:
            total = math.fsum(w.partials)
        except OverflowError:  # beyond float range: a sensor value no city reports
            total = math.inf if w.max > 0 else -math.inf
    if w.aid is None:
        w.aid = aggregate_id(g, tenant, k, q, unit, size, start)
    device = g == "device"
    if device:
        expected = expected_readings(size, w.interval)
    return Aggregate(
        aggregate_id=w.aid,
        grouping="device" if device else "area",
        key=k,
        tenant=tenant,
        classification=w.classification,
        device_id=k if device else None,
        area=w.area if device else k,
        quantity=q,
        unit=unit,
        window_size=size,
        window_start=format_boundary(start),
        window_end=format_boundary(start + size * US),
        count=w.count,
        min=w.min if w.count else None,
        max=w.max if w.count else None,
        sum=total,
        mean=None if total is None else total / w.count,
        last=w.last_value,
        last_observed_at=format_us(w.last_us),
        last_event_id=w.last_id,
        revision=w.revision,
        readings=w.readings,
        flagged=w.flagged,
        expected=expected,
        coverage=coverage(w.readings, expected),
    )
