"""Token buckets: how many requests a caller may make, now and on average.

Pure: no I/O, no clock of its own (every call takes ``now``, a monotonic time in seconds), so
tests drive it with a fake clock. The API's middleware (``cityhub.streams.api.throttle``) keeps
one ``RateLimiter`` per process, keyed by API key id or client address.

A bucket holds at most ``burst`` tokens and gains ``rate`` tokens per second; a request takes
one. A caller that has been quiet may therefore make ``burst`` requests at once, and
``rate`` per second after that.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """One caller's bucket: ``tokens`` as of ``updated`` (seconds, monotonic)."""

    rate: float
    """Tokens gained per second (> 0)."""
    burst: float
    """Most tokens the bucket holds (>= 1)."""
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        """A bucket with every token, as a caller never seen before gets."""
        if rate <= 0 or burst < 1:
            raise ValueError(f"a bucket needs rate > 0 and burst >= 1, not {rate} and {burst}")
        return cls(rate, burst, burst, now)

    def _refill(self, now: float) -> None:
        # A clock that went back (it should not; it is monotonic) refills nothing, and the
        # bucket keeps its later time so that tokens are never counted twice.
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float) -> float:
        """Take one token if there is one and return 0.0; otherwise take nothing and return the
        seconds until one will be there (> 0)."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def is_full(self, now: float) -> bool:
        """Whether the bucket has refilled completely by ``now``: then it is no different from a
        new one and may be forgotten."""
        return self.tokens + max(0.0, now - self.updated) * self.rate >= self.burst


def retry_after_seconds(wait: float) -> int:
    """A wait as the whole seconds of a ``Retry-After`` header: rounded up, at least 1."""
    return max(1, math.ceil(wait))


class RateLimiter:
    """Token buckets by caller key, with memory bounded by ``max_callers``.

    Buckets are kept in least-recently-used order. A bucket that has refilled completely is
    forgotten (it equals a new one, so nothing is lost); when more than ``max_callers`` callers
    are active at once (an attack from many addresses), the least recently used are forgotten
    too, which hands them a fresh bucket: memory stays bounded at that price.
    """

    def __init__(self, rate: float, burst: int, *, max_callers: int = 100_000) -> None:
        if rate <= 0 or burst < 1 or max_callers < 1:
            raise ValueError("a rate limiter needs rate > 0, burst >= 1 and max_callers >= 1")
        self.rate = rate
        self.burst = burst
        self._max = max_callers
        self._buckets: dict[Hashable, TokenBucket] = {}

    def take(self, caller: Hashable, now: float) -> float:
        """``TokenBucket.take`` on ``caller``'s bucket: 0.0 when the request may go ahead, else
        the seconds until it could."""
        bucket = self._buckets.pop(caller, None)
        if bucket is None:
            self._forget_idle(now)
            bucket = TokenBucket.full(self.rate, self.burst, now)
        self._buckets[caller] = bucket  # (re)inserted last: the most recently used
        return bucket.take(now)

    def _forget_idle(self, now: float) -> None:
        # Amortised clean-up on each new caller: the oldest entries are the likeliest to be full.
        buckets = self._buckets
        for _ in range(2):
            oldest = next(iter(buckets), None)
            if oldest is None or not buckets[oldest].is_full(now):
                break
            del buckets[oldest]
        while len(buckets) >= self._max:
            del buckets[next(iter(buckets))]

    def __len__(self) -> int:
        """Callers currently remembered."""
        return len(self._buckets)
