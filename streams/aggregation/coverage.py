"""Coverage of a window: how many readings arrived against how many the devices promised.

Pure. A device promises one reading of each of its quantities per expected reporting interval
(its own override, else its type's, else the hub's default: the registry's accessor, which the
agent asks). Hence:

Device window
    ``expected = window size / interval`` (a fraction when the interval is longer than the
    window), from the interval the window's last reading was aggregated with; None when the
    device has no expected interval. A device that sends nothing in a window has no window
    there at all: silence shows in the area's coverage and in device health, not here.

Area window
    The sum of that over the devices the area expects to report the quantity: its **roster**,
    kept per (tenant, area, quantity, unit) in the area state and its changelog. A device is on
    it from its first reading of the quantity there; it counts for a window ``[start, end)``
    when its first reading is before ``end`` and its last one at or after ``end - M``, ``M``
    being ``roster_seconds`` (default one day; never less than the window), the last reading
    rounded up to ``M / 24`` (``ROSTER_STEPS``). So a device that falls silent lowers its
    area's coverage for ``M`` (and up to ``M / 24`` more) after its last reading, and then drops
    out (device health reports it as silent from then on); a device installed later does not
    count for windows before its first reading.

    Limits: a device that never reported the quantity in the area is not expected (the hub
    learns the roster from the data; a type's quantities are not declared in the registry);
    a device moved to another area counts in both for ``M``; the roster is what the state had
    seen when the window was emitted, so an observation that arrives after the window's last
    emission (a late one of another window) does not change that window's ``expected``.

``coverage = readings / expected``, at most 1 (a device reporting more often than promised does
not make up for a silent one in the area's sum, but neither is coverage above 1 meaningful);
None when nothing is expected.
"""

from __future__ import annotations

import math
from typing import Any

from cityhub.streams.aggregation.points import US

ROSTER = "roster"
"""The first item of a roster's entry in the state's JSON (where windows have their grouping)."""

Roster = dict[str, list[Any]]
"""By device id: ``[first reading µs, last reading µs rounded up to the roster's step, interval
s or None]`` (the interval of the last reading)."""

ROSTER_STEPS = 24
"""The roster keeps a device's last reading rounded up to ``roster_seconds / 24`` (an hour of a
day): a device reporting every minute changes its roster's entry once an hour, not with every
reading, and so does the changelog; a silent device is expected up to that much longer."""


def roster_step_us(roster_seconds: int) -> int:
    """The step (µs) that the last readings on a roster are rounded up to."""
    return max(1, roster_seconds // ROSTER_STEPS) * US


def roster_key(series: tuple[Any, ...]) -> tuple[Any, ...]:
    """The key of an area series' roster entry in the changelog (beside the series' own)."""
    return (ROSTER, *series[1:])


def expected_readings(size_s: int, interval_s: int | None) -> float | None:
    """What one device promises in a window of ``size_s`` seconds; None without an interval."""
    if not interval_s or interval_s <= 0:
        return None
    return size_s / interval_s


def coverage(readings: int, expected: float | None) -> float | None:
    """``readings / expected`` bounded to [0, 1], rounded to 6 digits; None when nothing is
    expected."""
    if expected is None or expected <= 0:
        return None
    return round(min(1.0, readings / expected), 6)


def note(roster: Roster, device_id: str, t: int, interval_s: int | None, step_us: int) -> bool:
    """Put a reading at ``t`` (µs) of ``device_id`` on the roster; True if its entry changed.
    Order-independent: first is the least time, last the greatest rounded up to ``step_us``;
    the interval goes with the last (within one step, the latest to arrive: the registry's
    current one)."""
    last = -(-t // step_us) * step_us
    entry = roster.get(device_id)
    if entry is None:
        roster[device_id] = [t, last, interval_s]
        return True
    changed = False
    if t < entry[0]:
        entry[0] = t
        changed = True
    if last > entry[1] or (last == entry[1] and interval_s != entry[2]):
        entry[1] = last
        entry[2] = interval_s
        changed = True
    return changed


def memory_us(roster_seconds: int, size_s: int) -> int:
    """How long (µs) after its last reading a device still counts for a window of ``size_s``."""
    return max(roster_seconds, size_s) * US


def area_expected(roster: Roster, size_s: int, end_us: int, roster_seconds: int) -> float | None:
    """The readings the roster's devices promised in the window of ``size_s`` ending at
    ``end_us`` (see the module docstring); None when none of them has an interval. Summed
    exactly in device order, so the value does not depend on the order they joined."""
    since = end_us - memory_us(roster_seconds, size_s)
    terms = [
        size_s / entry[2]
        for _, entry in sorted(roster.items())
        if entry[2] and entry[0] < end_us and entry[1] >= since
    ]
    return math.fsum(terms) if terms else None


def sweep(roster: Roster, horizon_us: int) -> bool:
    """Forget the devices whose last reading is before ``horizon_us``; True if any went."""
    gone = [device for device, entry in roster.items() if entry[1] < horizon_us]
    for device in gone:
        del roster[device]
    return bool(gone)


def roster_entry(series: tuple[Any, ...], roster: Roster) -> list[Any]:
    """The roster as one item of its series' changelog entry (beside the windows' lists)."""
    _, tenant, area, quantity, unit = series
    return [ROSTER, tenant, area, quantity, unit, [[d, *roster[d]] for d in sorted(roster)]]


def roster_from_entry(item: list[Any]) -> tuple[tuple[Any, ...], Roster]:
    """(series, roster) of an item that :func:`roster_entry` made."""
    _, tenant, area, quantity, unit, devices = item
    roster: Roster = {}
    for device, first, last, interval in devices:
        roster[str(device)] = [int(first), int(last), None if interval is None else int(interval)]
    return ("area", tenant, area, quantity, unit), roster
