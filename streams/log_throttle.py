"""At most one log line of a kind every ``interval`` seconds, and how many were held back.

What cityhub's log filters share (``cityhub.streams.http_refusals``: unparsable requests;
``cityhub.streams.kafka_log_flood``: aiokafka's repeats during a Kafka outage): the first line of
a kind passes, the next ones within the interval are held back and counted, and the first one
after it passes with the count, which the filter words into its line. Pure: the clock is passed
in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class _Kind:
    passed_at: float
    """When the last line of this kind went through."""
    held: int = 0
    """Lines of this kind held back since then."""


@dataclass(frozen=True, slots=True)
class Admitted:
    """A line let through: how many of its kind were held back since the last one let through,
    and how long ago that one was (``inf`` for the first of its kind)."""

    held: int
    elapsed: float


class LineThrottle:
    """Decides, per kind of line, whether a line goes through (see the module docstring).

    At most ``max_kinds`` kinds are remembered: past that, the kinds whose interval is over are
    forgotten, and if none is, a new line counts as ``fallback``'s kind instead (a caller whose
    kinds are unbounded passes a coarser one)."""

    def __init__(
        self,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_kinds: int = 512,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._max_kinds = max_kinds
        self._kinds: dict[Hashable, _Kind] = {}

    def admit(self, kind: Hashable, fallback: Hashable | None = None) -> Admitted | None:
        """``Admitted`` when a line of ``kind`` goes through now, None when it is held back."""
        now = self._clock()
        found = self._kinds.get(kind)
        if found is None:
            if len(self._kinds) >= self._max_kinds:
                self._forget(now)
            if len(self._kinds) >= self._max_kinds:
                kind = fallback
                found = self._kinds.get(kind)
            if found is None:
                self._kinds[kind] = _Kind(passed_at=now)
                return Admitted(0, math.inf)
        elapsed = now - found.passed_at
        if elapsed < self._interval:
            found.held += 1
            return None
        held, found.held, found.passed_at = found.held, 0, now
        return Admitted(held, elapsed)

    def _forget(self, now: float) -> None:
        over = [k for k, v in self._kinds.items() if now - v.passed_at >= self._interval]
        for key in over:
            del self._kinds[key]
