"""A line chart of one quantity's recent windows, as plain numbers for a server-rendered SVG.

The page draws the mean of each window as a line with a dot per window and the range (min to
max) as a vertical bar, with a title and a description for screen readers, and the same numbers
in a table beside it (so that nothing is shown only as a picture).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WIDTH = 640
HEIGHT = 240
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 36
MAX_POINTS = 500


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    y_min: float
    y_max: float
    window_end: str
    mean: float
    low: float
    high: float
    count: int
    readings: int = 0
    """Every reading of the window, flagged ones included (``count`` may leave those out)."""
    flagged: int = 0
    coverage: float | None = None
    """Readings against what the devices' expected intervals promised (at most 1)."""


@dataclass(frozen=True, slots=True)
class Chart:
    quantity: str
    unit: str
    points: tuple[Point, ...]
    path: str
    """The SVG path of the means (``M x y L x y ...``)."""
    y_ticks: tuple[tuple[float, str], ...]
    x_ticks: tuple[tuple[float, str], ...]
    lowest: float
    highest: float
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = HEIGHT - BOTTOM


def quantities(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """The quantities the windows hold, in name order."""
    return sorted({str(item["quantity"]) for item in items if "quantity" in item})


def build_chart(items: Sequence[Mapping[str, Any]], quantity: str) -> Chart | None:
    """The chart of ``quantity``'s windows of the smallest size among ``items`` (aggregates as
    the API returns them); None when there are none."""
    # A window whose every reading was flagged (and kept out of the mean) has no mean: skipped.
    mine = [
        item
        for item in items
        if item.get("quantity") == quantity and isinstance(item.get("mean"), (int, float))
    ]
    if not mine:
        return None
    size = min(int(item["window_size"]) for item in mine)
    rows = sorted(
        (item for item in mine if int(item["window_size"]) == size),
        key=lambda item: str(item["window_end"]),
    )[-MAX_POINTS:]
    lows = [_number(item, "min") for item in rows]
    highs = [_number(item, "max") for item in rows]
    lowest, highest = min(lows), max(highs)
    if highest == lowest:
        lowest, highest = lowest - 1, highest + 1
    span = highest - lowest
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def y_of(value: float) -> float:
        return round(TOP + plot_h * (highest - value) / span, 1)

    def x_of(index: int) -> float:
        return round(LEFT + (plot_w * index / (len(rows) - 1) if len(rows) > 1 else plot_w / 2), 1)

    points = tuple(
        Point(
            x=x_of(i),
            y=y_of(float(row["mean"])),
            y_min=y_of(_number(row, "min")),
            y_max=y_of(_number(row, "max")),
            window_end=str(row["window_end"]),
            mean=float(row["mean"]),
            low=_number(row, "min"),
            high=_number(row, "max"),
            count=int(row["count"]),
            readings=int(row.get("readings") or row["count"]),
            flagged=int(row.get("flagged") or 0),
            coverage=float(row["coverage"])
            if isinstance(row.get("coverage"), (int, float))
            else None,
        )
        for i, row in enumerate(rows)
    )
    path = " ".join(f"{'M' if i == 0 else 'L'} {p.x} {p.y}" for i, p in enumerate(points))
    y_ticks = tuple(
        (y_of(lowest + span * step / 4), f"{lowest + span * step / 4:.4g}") for step in range(5)
    )
    picks = sorted({0, len(points) // 2, len(points) - 1})
    x_ticks = tuple((points[i].x, points[i].window_end[11:16]) for i in picks)
    return Chart(
        quantity=quantity,
        unit=str(rows[-1].get("unit") or ""),
        points=points,
        path=path,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        lowest=lowest,
        highest=highest,
    )


def _number(item: Mapping[str, Any], name: str) -> float:
    """The window's ``name`` (min, max), or its mean where it has none."""
    value = item.get(name)
    return float(value if isinstance(value, (int, float)) else item["mean"])
