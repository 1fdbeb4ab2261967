"""The quality checks of one value: pure functions over plain data, no clock, no I/O.

A device's recent values of one quantity are its *series*: a flat list of floats
``[at, value, since, at, value, since, ...]`` (oldest first, at most ``SERIES_POINTS`` points;
``at`` and ``since`` in seconds since the epoch, ``since`` = when the value took the value it has
at that point), JSON-friendly for the normaliser's changelog.

Restart-safe by construction: a value is judged against the newest point observed strictly
*before* it, never against points at or after its own time. A record replayed after a crash
(whose point the stored series may already hold) finds the same predecessor and gets the same
flags, as long as no more than ``SERIES_POINTS`` later points of the series pushed it out.
Values flagged ``out_of_range`` or ``spike`` are not kept as a reference: one wild reading must
not make the next good one look like a spike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cityhub.schemas.quality import QualityFlag, QuantityLimits

SERIES_POINTS: Final = 4
"""Points kept per device and quantity: enough to judge a replayed record again after a crash
(a worker commits each batch; a device rarely sends four values of one quantity in one)."""
MIN_SPIKE_SECONDS: Final = 60.0
"""A change is measured over at least this long: sensor noise between readings seconds apart is
no spike (a rate limit of 0.05 degC/s then allows 3 degC between them)."""

OUT_OF_RANGE: Final = QualityFlag.OUT_OF_RANGE.value
SPIKE: Final = QualityFlag.SPIKE.value
FLAT_LINE: Final = QualityFlag.FLAT_LINE.value

Series = list[float]


@dataclass(frozen=True, slots=True)
class Limits:
    """A quantity's limits as the checks use them (``QuantityLimits`` resolved for one device
    type); None switches a check off."""

    low: float | None = None
    high: float | None = None
    rate: float | None = None
    """Largest plausible change per second."""
    flat: float | None = None
    """Longest plausible time, in seconds, with exactly the same value."""

    @classmethod
    def of(cls, limits: QuantityLimits) -> Limits:
        flat = limits.flat_line_seconds
        return cls(limits.min, limits.max, limits.max_rate_per_second, flat)

    @property
    def needs_series(self) -> bool:
        """Whether a check looks at the device's previous values (spike, flat line)."""
        return self.rate is not None or self.flat is not None

    @property
    def checks_anything(self) -> bool:
        return self.needs_series or self.low is not None or self.high is not None


NO_CHECKS: Final = Limits()


def out_of_range(limits: Limits, value: float) -> bool:
    """Whether ``value`` lies outside ``[low, high]`` (bounds included in the range)."""
    return (limits.low is not None and value < limits.low) or (
        limits.high is not None and value > limits.high
    )


def check_value(
    limits: Limits, series: Sequence[float] | None, value: float, at: float
) -> tuple[list[str], Series | None]:
    """The flags of ``value`` observed at ``at`` (epoch seconds) and the series to store back:
    a new list, or None when the series does not change (``series`` itself is never changed).

    ``out_of_range`` outside the limits; ``spike`` when it differs from the previous value (the
    newest point before ``at``) by more than ``rate`` times the time between them (at least
    ``MIN_SPIKE_SECONDS``); ``flat_line`` when the series has held exactly this value for more
    than ``flat`` seconds up to ``at``. Flags come in ``QualityFlag`` order."""
    flags: list[str] = []
    if out_of_range(limits, value):
        flags.append(OUT_OF_RANGE)
    if not limits.needs_series:
        return flags, None
    points = series or ()
    # The newest point strictly before ``at`` (points are in time order).
    before = len(points) - 3
    while before >= 0 and points[before] >= at:
        before -= 3
    since = at
    if before >= 0:
        prev_at, prev_value, prev_since = points[before], points[before + 1], points[before + 2]
        if limits.rate is not None and abs(value - prev_value) > limits.rate * max(
            at - prev_at, MIN_SPIKE_SECONDS
        ):
            flags.append(SPIKE)
        if value == prev_value:
            since = prev_since
    if limits.flat is not None and at - since > limits.flat:
        flags.append(FLAT_LINE)
    if OUT_OF_RANGE in flags or SPIKE in flags:
        return flags, None
    return flags, _with_point(points, before, at, value, since)


def _with_point(
    points: Sequence[float], before: int, at: float, value: float, since: float
) -> Series:
    """``points`` with (at, value, since) inserted after the point at index ``before`` (-1: at
    the front), replacing a point at the same time, the oldest dropped beyond SERIES_POINTS."""
    head = list(points[: before + 3]) if before >= 0 else []
    rest = points[before + 3 :] if before >= 0 else points
    if rest and rest[0] == at:
        rest = rest[3:]
    out = [*head, at, float(value), since, *rest]
    if len(out) > 3 * SERIES_POINTS:
        del out[: len(out) - 3 * SERIES_POINTS]
    return out


def is_series(value: object) -> bool:
    """Whether a stored value (from the changelog) has the series' shape."""
    return (
        isinstance(value, list)
        and len(value) % 3 == 0
        and len(value) <= 3 * SERIES_POINTS
        and all(type(x) is float or type(x) is int for x in value)
    )
