"""The open-data windows: what an area's window keeps, when it closes, and what of it may be
published.

A window of one dataset, area, quantity and unit keeps the number of readings, their exact sum
(Shewchuk's partials, as ``math.fsum``: the mean does not depend on the arrival order), the
least and greatest value, and the EXACT sets of the distinct devices and data subjects that
contributed (their keys, ``cityhub.streams.opendata.points``), and whether a personal device
did. Sets, never estimates: the threshold must hold for every published window, not on average.

Closing. The windows of a (dataset, quantity, unit, window) group close together, once the
watermark reaches the window's end plus ``grace_seconds``; then :func:`publishable` decides, for
the whole group at once:

* an area's window is published iff at least ``k`` distinct devices contributed and, where a
  personal device did, at least ``k`` distinct data subjects; and, for every tenant among the
  contributors, either all of them are its own or at least ``k`` are other tenants' (a tenant
  knows its own readings and could subtract them: :func:`covered`);
* the areas below that are merged into ``MERGED_AREA`` (the union of their sets, their stats
  recomputed) when ``merge`` is on, and that merged window is published iff it passes the same
  test and shares no device and no subject with a published area's window (a device that
  moved between areas in the window: the merged window could otherwise be told apart from
  the published one by that device); otherwise withheld. Without ``merge`` they are withheld.

Nothing of a withheld window leaves the state: not its count, not even that it existed. Values
are rounded to the quantity's decimals; ``min`` and ``max`` are left out where a personal
device contributed (an extreme is one device's value); the times are the window's bounds, and
``published_at`` is the end plus grace (when the window could first close), so that a replay
writes byte for byte the same record. A window is published once: a point that reaches it
after it closed is dropped and counted (``late``).

The state of a partition (:class:`PublisherState`) keeps the open windows, and each closed
group's published records for one more window size (so that a worker restarted between the
state's write and the records' can write them again: ``closed_records``). In its changelog a
window is its stats, rewritten when they change, and one entry per device and per subject,
written once (``take_changes``): measured on 100 000 points of 2 000 devices in 50 areas, in
batches of 1 000, 7.8 MB of changelog against 48 MB when each window's sets were rewritten
with it. Each window remembers the input offset of its last point, so a point taken again
after a restart (its input not yet committed) is not counted twice (``replayed``).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from cityhub.schemas.open_data import MERGED_AREA, OpenWindow
from cityhub.streams.aggregation.points import format_us
from cityhub.streams.opendata.points import OpenPoint, tenant_of

COUNTERS = ("points", "late", "unknown_dataset", "replayed", "published", "withheld", "merged")
"""What a state counts: points taken, points dropped (late: their window had closed; of a
dataset no longer configured; replayed: counted before a restart), and area windows published
on their own, withheld (nothing of them published) and merged (published inside a merged
window)."""


class GroupKey(NamedTuple):
    """The windows decided together: one dataset, quantity and unit, one window."""

    dataset: str
    quantity: str
    unit: str | None
    start_us: int


@dataclass(slots=True)
class AreaWindow:
    """One area's window of a group: stats and the exact contributor sets."""

    area: str
    end_us: int
    count: int = 0
    partials: list[float] = field(default_factory=list)
    low: float = math.inf
    high: float = -math.inf
    devices: set[str] = field(default_factory=set)
    subjects: set[str] = field(default_factory=set)
    personal: bool = False
    seq: int = -1
    """The input offset of the last point added (-1: none known): a point at or below it is a
    replay of one this window has counted (a worker restarted after its state was written)."""

    def add(self, point: OpenPoint) -> None:
        x = point.value
        self.count += 1
        self.low = min(self.low, x)
        self.high = max(self.high, x)
        self.devices.add(point.device)
        self.subjects.add(point.subject)
        self.personal = self.personal or point.personal
        _add_exact(self.partials, x)

    def merge(self, other: AreaWindow) -> None:
        self.count += other.count
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        self.devices |= other.devices
        self.subjects |= other.subjects
        self.personal = self.personal or other.personal
        for x in other.partials:
            _add_exact(self.partials, x)

    @property
    def mean(self) -> float:
        return math.fsum(self.partials) / self.count

    def passes(self, k: int) -> bool:
        """At least ``k`` devices and, where a personal device contributed, ``k`` subjects,
        each counted as :func:`covered` says."""
        return covered(self.devices, k) and (not self.personal or covered(self.subjects, k))

    def stats_json(self) -> dict[str, Any]:
        """The window without its sets (each member is an entry of its own: ``member_key``)."""
        return {
            "end": self.end_us,
            "count": self.count,
            "partials": self.partials,
            "min": self.low,
            "max": self.high,
            "personal": self.personal,
            "seq": self.seq,
        }

    @classmethod
    def from_stats(
        cls, area: str, doc: Mapping[str, Any], devices: set[str], subjects: set[str]
    ) -> AreaWindow:
        return cls(
            area,
            int(doc["end"]),
            int(doc["count"]),
            [float(x) for x in doc["partials"]],
            float(doc["min"]),
            float(doc["max"]),
            devices,
            subjects,
            bool(doc["personal"]),
            int(doc.get("seq", -1)),
        )


def covered(members: set[str], k: int) -> bool:
    """Whether a window's devices (or subjects) hide each contributor's values: at least ``k``
    of them, and for every tenant among them either all are its own or at least ``k`` are
    others'. A tenant knows its own devices' readings and can subtract them from a published
    mean, sum or extreme: four of its own devices beside another tenant's one made ``k = 5``
    and published that one device's reading (a review found it)."""
    if len(members) < k:
        return False
    own = Counter(tenant_of(m) for m in members)
    return all(n == len(members) or len(members) - n >= k for n in own.values())


def _add_exact(partials: list[float], x: float) -> None:
    """Add ``x`` to the exact sum held as non-overlapping partials (the msum recipe behind
    ``math.fsum``)."""
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


@dataclass(frozen=True, slots=True)
class Publication:
    """What :func:`publishable` decided for one group."""

    windows: list[OpenWindow]
    withheld: int
    """Area windows of which nothing is published."""
    merged: int
    """Area windows published inside the merged window."""


def publishable(
    group: GroupKey,
    windows: Sequence[AreaWindow],
    *,
    k: int,
    merge: bool,
    decimals: int,
    grace_us: int,
) -> Publication:
    """The records of one closed group (see the module docstring), in area order: each area
    window that passes the threshold, then the merged window of those that do not, when it may
    be published."""
    if not windows:
        return Publication([], 0, 0)
    passing = sorted((w for w in windows if w.passes(k)), key=lambda w: w.area)
    small = sorted((w for w in windows if not w.passes(k)), key=lambda w: w.area)
    published = [_record(group, w, w.area, decimals, grace_us) for w in passing]
    if not small or not merge:
        return Publication(published, len(small), 0)
    merged = AreaWindow(MERGED_AREA, small[0].end_us)
    for w in small:
        merged.merge(w)
    shown_devices = set().union(*(w.devices for w in passing))
    shown_subjects = set().union(*(w.subjects for w in passing))
    if (
        not merged.passes(k)
        or not merged.devices.isdisjoint(shown_devices)
        or not merged.subjects.isdisjoint(shown_subjects)
    ):
        return Publication(published, len(small), 0)
    published.append(_record(group, merged, MERGED_AREA, decimals, grace_us))
    return Publication(published, 0, len(small))


def _record(
    group: GroupKey, window: AreaWindow, area: str, decimals: int, grace_us: int
) -> OpenWindow:
    personal = window.personal
    return OpenWindow(
        dataset=group.dataset,
        area=area,
        quantity=group.quantity,
        unit=group.unit,
        window_start=format_us(group.start_us),
        window_end=format_us(window.end_us),
        mean=_round(window.mean, decimals),
        min=None if personal else _round(window.low, decimals),
        max=None if personal else _round(window.high, decimals),
        readings=window.count,
        published_at=format_us(window.end_us + grace_us),
    )


def _round(x: float, decimals: int) -> float:
    return round(x, decimals) + 0.0  # no -0.0


@dataclass(frozen=True, slots=True)
class PublisherConfig:
    """What a state needs of the settings."""

    window_us: Mapping[str, int]
    """Dataset id -> its window size in µs."""
    k: int
    merge: bool
    grace_us: int
    decimals_of: Callable[[str], int]


class PublisherState:
    """The open and recently closed windows of one input partition (module docstring)."""

    def __init__(self, config: PublisherConfig) -> None:
        self.config = config
        self.watermark: int | None = None
        self.open: dict[GroupKey, dict[str, AreaWindow]] = {}
        self.closed: dict[GroupKey, tuple[int, list[OpenWindow]]] = {}
        """Closed groups still held: (the watermark that closed them, the records published)."""
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._changed_open: set[tuple[GroupKey, str]] = set()
        self._changed_closed: set[GroupKey] = set()
        self._members_changed: dict[str, bool] = {}
        """Member entries (``member_key``) added (True) or gone (False) since the last take."""

    def __len__(self) -> int:
        return sum(len(areas) for areas in self.open.values())

    def add(self, point: OpenPoint, seq: int | None = None) -> None:
        """Count ``point`` in its area's window, unless that window has closed (``late``) or
        has counted it (``seq``, its input offset, at or below the window's last: a replay)."""
        size = self.config.window_us.get(point.dataset)
        if size is None:
            self.counters["unknown_dataset"] += 1
            return
        start = point.observed_us - point.observed_us % size
        end = start + size
        if self.watermark is not None and end + self.config.grace_us <= self.watermark:
            self.counters["late"] += 1
            return
        group = GroupKey(point.dataset, point.quantity, point.unit, start)
        areas = self.open.setdefault(group, {})
        window = areas.get(point.area)
        if window is None:
            window = areas[point.area] = AreaWindow(point.area, end)
        if seq is not None:
            if seq <= window.seq:
                self.counters["replayed"] += 1
                return
            window.seq = seq
        if point.device not in window.devices:
            self._members_changed[member_key(DEVICE, group, point.area, point.device)] = True
        if point.subject not in window.subjects:
            self._members_changed[member_key(SUBJECT, group, point.area, point.subject)] = True
        window.add(point)
        self.counters["points"] += 1
        self._changed_open.add((group, point.area))

    def advance(self, watermark: int) -> list[OpenWindow]:
        """Move the watermark to ``watermark`` (µs; it never goes back) and decide every group
        it closes; returns the records to publish. The records of a closed group are kept until
        the watermark is a window size past the one that closed it (measured from the close, not
        from the window: a watermark that leaps ahead after a quiet spell must not close and
        forget a group in one step)."""
        if self.watermark is not None and watermark <= self.watermark:
            return []
        self.watermark = watermark
        grace = self.config.grace_us
        records: list[OpenWindow] = []
        closing = [
            group
            for group, areas in self.open.items()
            if next(iter(areas.values())).end_us + grace <= watermark
        ]
        for group in sorted(closing, key=_group_order):
            areas = self.open.pop(group)
            decision = publishable(
                group,
                list(areas.values()),
                k=self.config.k,
                merge=self.config.merge,
                decimals=self.config.decimals_of(group.quantity),
                grace_us=grace,
            )
            self.counters["published"] += len(decision.windows) - (decision.merged > 0)
            self.counters["withheld"] += decision.withheld
            self.counters["merged"] += decision.merged
            if decision.windows:  # kept to be written again: nothing to keep of a withheld one
                self.closed[group] = (watermark, decision.windows)
                self._changed_closed.add(group)
            self._changed_open.update((group, area) for area in areas)
            for area, window in areas.items():
                for device in window.devices:
                    self._members_changed[member_key(DEVICE, group, area, device)] = False
                for subject in window.subjects:
                    self._members_changed[member_key(SUBJECT, group, area, subject)] = False
            records += decision.windows
        for group, (closed_at, _) in list(self.closed.items()):
            if closed_at + self.config.window_us.get(group.dataset, 0) <= watermark:
                del self.closed[group]
                self._changed_closed.add(group)
        return records

    def closed_records(self) -> list[OpenWindow]:
        """The records of the closed groups still held (to be written again after a restart)."""
        return [r for group in sorted(self.closed, key=_group_order) for r in self.closed[group][1]]

    # -- the changelog -------------------------------------------------------------------------

    def take_changes(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The meta (watermark) and the entries changed since the last call: entry key ->
        JSON value, or None where the entry is gone. An open window is an entry of its stats
        (``open_entry_key``, rewritten when it changes) and one small entry per device and per
        subject (``member_key``, written once, when the member first contributes): a set is
        never rewritten whole, so the changelog grows with the new members, not with the
        readings. A closed group keeps its records (``closed_entry_key``)."""
        entries: dict[str, Any] = {}
        for group, area in self._changed_open:
            window = self.open.get(group, {}).get(area)
            entries[open_entry_key(group, area)] = None if window is None else window.stats_json()
        for key, present in self._members_changed.items():
            entries[key] = 1 if present else None
        self._members_changed.clear()
        for group in self._changed_closed:
            held = self.closed.get(group)
            entries[closed_entry_key(group)] = (
                None
                if held is None
                else {
                    "closed_at": held[0],
                    "records": [r.model_dump(mode="json") for r in held[1]],
                }
            )
        self._changed_open.clear()
        self._changed_closed.clear()
        return {"watermark": self.watermark}, entries

    @classmethod
    def from_entries(
        cls,
        meta: Mapping[str, Any] | None,
        entries: Iterable[tuple[str, Any]],
        config: PublisherConfig,
    ) -> PublisherState:
        """The state that ``take_changes`` wrote (its meta and its entries' last values);
        entries that do not parse are left out."""
        state = cls(config)
        if meta is not None and isinstance(meta.get("watermark"), int):
            state.watermark = meta["watermark"]
        stats: dict[tuple[GroupKey, str], Mapping[str, Any]] = {}
        members: dict[tuple[GroupKey, str], tuple[set[str], set[str]]] = {}
        for key, value in entries:
            try:
                kind, dataset, quantity, unit, start, *rest = orjson.loads(key)
                group = GroupKey(
                    str(dataset), str(quantity), None if unit is None else str(unit), int(start)
                )
                if kind == "open" and len(rest) == 1:
                    stats[(group, str(rest[0]))] = value
                elif kind in (DEVICE, SUBJECT) and len(rest) == 2:
                    sets = members.setdefault((group, str(rest[0])), (set(), set()))
                    sets[0 if kind == DEVICE else 1].add(str(rest[1]))
                elif kind == "closed" and not rest:
                    records = [OpenWindow.model_validate(r) for r in value["records"]]
                    state.closed[group] = (int(value["closed_at"]), records)
            except (KeyError, TypeError, ValueError):
                continue
        for (group, area), doc in stats.items():
            devices, subjects = members.get((group, area), (set(), set()))
            try:
                window = AreaWindow.from_stats(area, doc, devices, subjects)
            except (KeyError, TypeError, ValueError):
                continue
            state.open.setdefault(group, {})[area] = window
        return state


def _group_order(group: GroupKey) -> tuple[Any, ...]:
    return (group.start_us, group.dataset, group.quantity, group.unit or "")


def open_entry_key(group: GroupKey, area: str) -> str:
    """The entry key of an area's open window: a JSON list, as areas and ids may hold any
    character."""
    return orjson.dumps(["open", *group, area]).decode()


def closed_entry_key(group: GroupKey) -> str:
    return orjson.dumps(["closed", *group]).decode()


DEVICE = "device"
SUBJECT = "subject"


def member_key(kind: str, group: GroupKey, area: str, member: str) -> str:
    """The entry of one device (``DEVICE``) or subject (``SUBJECT``) of an area's window."""
    return orjson.dumps([kind, *group, area, member]).decode()
