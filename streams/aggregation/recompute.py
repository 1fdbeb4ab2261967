"""The offline answer that the stream's window state must agree with (tested with hypothesis)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

from cityhub.schemas.aggregate import Aggregate, restrictiveness
from cityhub.streams.aggregation.coverage import Roster, area_expected, note, roster_step_us
from cityhub.streams.aggregation.points import US, Point
from cityhub.streams.aggregation.window_config import WindowConfig
from cityhub.streams.aggregation.window_stats import (
    WindowKey,
    WindowStats,
    key_order,
    number,
    to_aggregate,
)


class _Row(NamedTuple):
    observed_us: int
    event_id: str
    value: float
    classification: str | None
    area: str | None
    flagged: bool
    interval_s: int | None


def recompute(points: Iterable[Point], config: WindowConfig | None = None) -> list[Aggregate]:
    """The aggregates of a complete set of observations, computed offline and independent of
    their order: what the stream's last emission of each window must equal. Every aggregate has
    revision 0; ``grace`` and ``max_future`` play no part. Duplicates (by event id) count once;
    values are selected as :meth:`WindowState.add` selects them, flagged ones kept out of the
    statistics when ``exclude_flagged`` says so.

    An area window's ``expected`` comes from the roster of every observation given (see
    :mod:`cityhub.streams.aggregation.coverage`): the stream's equals it when the roster it
    had at the window's last emission held the same devices with the same bounds."""
    cfg = config or WindowConfig()
    seen: set[str] = set()
    groups: dict[WindowKey, list[_Row]] = {}
    rosters: dict[tuple[str | None, ...], Roster] = {}
    step = roster_step_us(cfg.roster_seconds)
    for p in points:
        if p.event_id in seen:
            continue
        seen.add(p.event_id)
        x = number(p.value)
        if x is None:
            continue
        keys: list[tuple[str, str]] = []
        if "device" in cfg.groupings:
            keys.append(("device", p.device_id))
        if "area" in cfg.groupings and p.area is not None and p.tenant is not None:
            keys.append(("area", p.area))
            series = ("area", p.tenant, p.area, p.quantity, p.unit)
            note(rosters.setdefault(series, {}), p.device_id, p.observed_us, p.interval_s, step)
        row = _Row(p.observed_us, p.event_id, x, p.classification, p.area, p.flagged, p.interval_s)
        for g, k in keys:
            for size in cfg.sizes:
                start = p.observed_us - p.observed_us % (size * US)
                groups.setdefault((g, p.tenant, k, p.quantity, p.unit, size, start), []).append(row)
    out: list[Aggregate] = []
    for key in sorted(groups, key=lambda k: (k[6] + k[5] * US, key_order(k))):
        out.append(_window(key, groups[key], cfg, rosters))
    return out


def _window(
    key: WindowKey,
    rows: list[_Row],
    cfg: WindowConfig,
    rosters: dict[tuple[str | None, ...], Roster],
) -> Aggregate:
    last = max(rows, key=lambda r: (r.observed_us, r.event_id))
    values = [r.value for r in rows if not (r.flagged and cfg.exclude_flagged)]
    classification = max((r.classification for r in rows), key=restrictiveness)
    device = key[0] == "device"
    w = WindowStats(
        last.value,
        last.observed_us,
        last.event_id,
        classification,
        last.area,
        interval=last.interval_s if device else None,
    )
    w.readings = len(rows)
    w.flagged = sum(1 for r in rows if r.flagged)
    w.count = len(values)
    w.min = min(values) if values else math.inf
    w.max = max(values) if values else -math.inf
    w.partials = [math.fsum(values)] if values else []
    w.revision = 0
    expected = None
    if not device:
        _, tenant, k, q, unit, size, start = key
        roster = rosters[("area", tenant, k, q, unit)]
        expected = area_expected(roster, size, start + size * US, cfg.roster_seconds)
    return to_aggregate(key, w, expected)
