"""How a window state windows: sizes, grace, groupings and the bounds of its dedup sets."""

from __future__ import annotations

from dataclasses import dataclass

from cityhub.schemas.aggregate import MAX_WINDOW_SECONDS, Grouping

DEFAULT_SIZES = (60, 900, 3600)
DEFAULT_GRACE = 60
DEFAULT_MAX_EVENT_IDS = 100_000
DEFAULT_MAX_FUTURE = 300
DEFAULT_ROSTER_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """How to window: sizes and grace in seconds; ``groupings`` is ``("device", "area")`` or one
    of them (a deployment keyed by device runs a device-only state on the device-keyed topic and
    an area-only state on a topic repartitioned by area); ``max_future`` None: no check;
    ``own_watermark`` False: observations never move the watermark, only :meth:`WindowState.
    advance` does (a state fed by several upstream partitions, whose watermark is the least of
    theirs). ``exclude_flagged``: readings with a quality flag stay out of min, max, sum and
    mean (they still count in ``readings`` and ``flagged``). ``roster_seconds``: how long an
    area remembers a device that reported a quantity (its expected readings count in the area's
    coverage for that long after its last one: :mod:`cityhub.streams.aggregation.coverage`)."""

    sizes: tuple[int, ...] = DEFAULT_SIZES
    grace: int = DEFAULT_GRACE
    groupings: tuple[Grouping, ...] = ("device", "area")
    max_event_ids: int = DEFAULT_MAX_EVENT_IDS
    max_future: int | None = DEFAULT_MAX_FUTURE
    own_watermark: bool = True
    exclude_flagged: bool = False
    roster_seconds: int = DEFAULT_ROSTER_SECONDS

    def __post_init__(self) -> None:
        if not self.sizes or any(
            type(s) is not int or not 0 < s <= MAX_WINDOW_SECONDS for s in self.sizes
        ):
            raise ValueError(
                f"window sizes must be whole seconds from 1 to {MAX_WINDOW_SECONDS} (366 days), "
                f"not {self.sizes!r}"
            )
        if len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"window sizes repeat: {self.sizes!r}")
        if self.grace < 0:
            raise ValueError(f"grace must be >= 0, not {self.grace!r}")
        if not self.groupings or not set(self.groupings) <= {"device", "area"}:
            raise ValueError(f"groupings must be device and/or area, not {self.groupings!r}")
        if len(set(self.groupings)) != len(self.groupings):
            raise ValueError(f"groupings repeat: {self.groupings!r}")
        if self.max_event_ids < 0:
            raise ValueError("max_event_ids must be >= 0")
        if self.roster_seconds < 0:
            raise ValueError("roster_seconds must be >= 0")
