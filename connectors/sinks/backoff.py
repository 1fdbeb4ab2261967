"""Retry schedule of a sink: exponential backoff with full jitter, capped, a bounded number of
attempts (AWS Architecture Blog, "Exponential Backoff And Jitter": full jitter spreads retries of
many failing senders best, so a receiver that comes back is not hit by all of them at once), and
a least time to go on trying: full jitter may draw waits near zero, and eight attempts once took
14 s, so a receiver down for 15 s lost a batch. A batch is given up only when both its attempts
and its time are spent.

Pure: the caller passes the random generator (seeded in tests) and does the sleeping.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

_MAX_SHIFT = 62
"""Beyond 2**62 every realistic ``base`` is past any ``cap``; stops float overflow."""


def ceiling(retry: int, base: float, cap: float) -> float:
    """The upper bound of the wait before retry number ``retry`` (0 = the first retry):
    ``min(cap, base * 2**retry)``."""
    if retry < 0:
        raise ValueError(f"retry numbers count from 0, got {retry}")
    if retry >= _MAX_SHIFT:
        return cap
    return min(cap, base * (1 << retry))


def delay(retry: int, base: float, cap: float, rng: random.Random) -> float:
    """The wait before retry number ``retry``: uniform in ``[0, ceiling(retry, base, cap)]``."""
    _check(base, cap)
    return rng.uniform(0.0, ceiling(retry, base, cap))


def delays(attempts: int, base: float, cap: float, rng: random.Random) -> list[float]:
    """The waits between ``attempts`` attempts: ``attempts - 1`` values (the first attempt is
    immediate), each drawn by ``delay``. The same seed gives the same schedule. Raises
    ValueError when ``attempts < 1``, ``base <= 0``, ``cap < base`` or either is not finite."""
    if attempts < 1:
        raise ValueError(f"at least one attempt is made, got attempts={attempts}")
    _check(base, cap)
    return [rng.uniform(0.0, ceiling(retry, base, cap)) for retry in range(attempts - 1)]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A sink's retry settings; ``max_attempts`` counts the first attempt."""

    max_attempts: int = 8
    base_s: float = 0.5
    cap_s: float = 60.0
    min_retry_s: float = 0.0
    """Seconds since the first failure before a batch may be given up, whatever the attempts."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not (math.isfinite(self.min_retry_s) and self.min_retry_s >= 0):
            raise ValueError(f"min_retry_s must be 0 or more, got {self.min_retry_s}")
        _check(self.base_s, self.cap_s)

    def next_delay(
        self,
        failed_attempts: int,
        rng: random.Random,
        *,
        retry_after: float | None = None,
        failing_for: float = 0.0,
    ) -> float | None:
        """How long to wait after ``failed_attempts`` failures (1 after the first), the first of
        them ``failing_for`` seconds ago; None when no attempt is left (``max_attempts`` made
        and ``min_retry_s`` past) and the item goes to the dead letters. A receiver's
        ``Retry-After`` (seconds) raises the wait to at least that much, up to ``cap_s``."""
        if failed_attempts < 1:
            raise ValueError(f"call after a failure: failed_attempts={failed_attempts}")
        if failed_attempts >= self.max_attempts and failing_for >= self.min_retry_s:
            return None
        wait = rng.uniform(0.0, ceiling(failed_attempts - 1, self.base_s, self.cap_s))
        if retry_after is not None and math.isfinite(retry_after) and retry_after > wait:
            wait = min(retry_after, self.cap_s)
        return wait

    def schedule(self, rng: random.Random) -> list[float]:
        """Every wait of a sink that keeps failing: ``delays(max_attempts, base_s, cap_s)``."""
        return delays(self.max_attempts, self.base_s, self.cap_s, rng)


def _check(base: float, cap: float) -> None:
    if not (math.isfinite(base) and math.isfinite(cap)):
        raise ValueError(f"base and cap must be finite, got base={base}, cap={cap}")
    if base <= 0:
        raise ValueError(f"base must be positive, got {base}")
    if cap < base:
        raise ValueError(f"cap ({cap}) must not be below base ({base})")
