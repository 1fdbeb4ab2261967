"""Pure: which time partitions the history tables have, should have, and may drop.

``observations`` has a partition per UTC day (``observations_p20261203``), ``aggregates`` one
per UTC month (``aggregates_p202612``), each beside a DEFAULT partition. A partition is made only
for a time inside the *accepted span*, from the retention limit up to ``partitions_ahead_days``
ahead of now: a row outside it (a device's clock in 1971 or 2099) goes to the DEFAULT partition,
so no clock can make the writer create thousands of partitions. A partition whose whole range is
older than the retention is dropped whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

Period = Literal["day", "month"]


@dataclass(frozen=True, slots=True)
class TableLayout:
    """How one history table is partitioned."""

    table: str
    column: str
    """The partition key."""
    period: Period

    @property
    def default_partition(self) -> str:
        return f"{self.table}_default"


OBSERVATIONS = TableLayout("observations", "observed_at", "day")
AGGREGATES = TableLayout("aggregates", "window_start", "month")
TABLES = (OBSERVATIONS, AGGREGATES)


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    """One time partition: ``[lower, upper)`` in UTC."""

    lower: datetime
    upper: datetime
    name: str


def period_start(layout: TableLayout, when: datetime) -> date:
    """The first day of the period (the day, or the month) holding ``when`` (an aware time)."""
    day = (when if when.tzinfo is UTC else when.astimezone(UTC)).date()
    return day if layout.period == "day" else day.replace(day=1)


def partition_for(layout: TableLayout, start: date) -> Partition:
    """The partition of the period that begins on ``start``."""
    lower = datetime(start.year, start.month, start.day, tzinfo=UTC)
    if layout.period == "day":
        upper = lower + timedelta(days=1)
        name = f"{layout.table}_p{start:%Y%m%d}"
    else:
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        upper = datetime(year, month, 1, tzinfo=UTC)
        name = f"{layout.table}_p{start:%Y%m}"
    return Partition(lower, upper, name)


def parse_partition_name(layout: TableLayout, name: str) -> Partition | None:
    """The partition a table name stands for; None for the DEFAULT one or any other table."""
    digits = 8 if layout.period == "day" else 6
    match = re.fullmatch(rf"{layout.table}_p(\d{{{digits}}})", name)
    if match is None:
        return None
    text = match.group(1)
    try:
        start = date(int(text[:4]), int(text[4:6]), int(text[6:]) if digits == 8 else 1)
    except ValueError:
        return None
    return partition_for(layout, start)


@dataclass(frozen=True, slots=True)
class AcceptedSpan:
    """The times partitions are made for: ``[earliest, latest)``."""

    earliest: datetime
    latest: datetime

    def __contains__(self, when: object) -> bool:
        return isinstance(when, datetime) and self.earliest <= when < self.latest


def accepted_span(now: datetime, *, retention_days: int, ahead_days: int) -> AcceptedSpan:
    """From ``retention_days`` before ``now`` up to the end of the day ``ahead_days`` after."""
    end_of_today = datetime.combine(now.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)
    return AcceptedSpan(
        earliest=now - timedelta(days=retention_days),
        latest=end_of_today + timedelta(days=ahead_days + 1),
    )


def partitions_needed(
    layout: TableLayout, times: Iterable[datetime], span: AcceptedSpan
) -> set[Partition]:
    """The partitions of the times inside ``span`` (the others belong to DEFAULT)."""
    # The distinct periods first: a batch of thousands of rows has a day or two.
    starts = {period_start(layout, t) for t in times if span.earliest <= t < span.latest}
    return {partition_for(layout, start) for start in starts}


def partitions_ahead(layout: TableLayout, now: datetime, ahead_days: int) -> set[Partition]:
    """The partitions from today up to ``ahead_days`` ahead, made before anything needs them."""
    today = now.astimezone(UTC).date()
    return {
        partition_for(layout, period_start(layout, datetime.combine(day, datetime.min.time(), UTC)))
        for day in (today + timedelta(days=n) for n in range(ahead_days + 1))
    }


def retention_cutoff(now: datetime, retention_days: int) -> datetime:
    """Rows older than this are past their retention."""
    return now - timedelta(days=retention_days)


def expired(partitions: Iterable[Partition], cutoff: datetime) -> list[Partition]:
    """The partitions whose whole range is older than ``cutoff``, oldest first."""
    return sorted(p for p in partitions if p.upper <= cutoff)
