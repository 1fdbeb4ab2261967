"""Token buckets on a fake clock: a burst at once, then the rate; refusals say how long to wait;
callers are independent; the table of callers stays bounded."""

from __future__ import annotations

import pytest

from cityhub.streams.api.rate_limit import RateLimiter, TokenBucket, retry_after_seconds


def test_a_new_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket.full(rate=2.0, burst=3, now=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.5)  # one token comes back every 0.5 s
    assert bucket.take(100.25) == pytest.approx(0.25)  # a refusal takes nothing
    assert bucket.take(100.5) == 0.0
    assert bucket.take(100.5) == pytest.approx(0.5)


def test_a_quiet_bucket_refills_to_its_burst_and_no_further() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=2, now=0.0)
    bucket.take(0.0)
    bucket.take(0.0)
    assert not bucket.is_full(1.0)
    assert bucket.is_full(2.0)
    # An hour of silence buys two requests, not 3 600.
    assert [bucket.take(3600.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]


def test_a_clock_that_goes_back_creates_no_tokens() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=1, now=10.0)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(5.0) == pytest.approx(1.0)
    assert bucket.take(10.5) == pytest.approx(0.5)  # still measured from 10.0
    assert bucket.take(11.0) == 0.0


@pytest.mark.parametrize(
    ("wait", "seconds"), [(0.001, 1), (0.5, 1), (1.0, 1), (1.01, 2), (59.2, 60)]
)
def test_retry_after_is_whole_seconds_rounded_up_at_least_one(wait: float, seconds: int) -> None:
    assert retry_after_seconds(wait) == seconds


def test_callers_have_their_own_buckets() -> None:
    limiter = RateLimiter(1.0, 2)
    assert limiter.take("a", 0.0) == 0.0
    assert limiter.take("a", 0.0) == 0.0
    assert limiter.take("a", 0.0) > 0
    assert limiter.take("b", 0.0) == 0.0  # a throttled caller does not throttle another
    assert limiter.take("b", 0.0) == 0.0
    assert limiter.take("a", 1.0) == 0.0


def test_full_buckets_are_forgotten_and_the_table_is_bounded() -> None:
    limiter = RateLimiter(1.0, 1, max_callers=100)
    for i in range(50):
        limiter.take(i, 0.0)
    assert len(limiter) == 50
    # Once refilled, the old callers are no different from new ones and are dropped as new
    # callers arrive.
    for i in range(50, 100):
        limiter.take(i, 10.0)
    assert len(limiter) < 100
    # Many callers at once (an attack from many addresses): never more than max_callers.
    for i in range(1000, 2000):
        limiter.take(i, 10.0)
    assert len(limiter) <= 100
    # A caller that is still limited keeps its state while it stays active.
    limiter.take("busy", 10.0)
    assert limiter.take("busy", 10.0) > 0


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_nonsense_limits_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate, burst)
    with pytest.raises(ValueError, match="rate"):
        TokenBucket.full(rate, burst, 0.0)
