"""The retry schedule: full jitter under an exponential, capped ceiling; deterministic per seed."""

from __future__ import annotations

import math
import random

import pytest

from cityhub.connectors.sinks.backoff import RetryPolicy, ceiling, delay, delays


@pytest.mark.parametrize(
    ("retry", "expected"),
    [(0, 0.5), (1, 1.0), (2, 2.0), (6, 32.0), (7, 60.0), (62, 60.0), (10_000, 60.0)],
)
def test_ceiling_doubles_then_caps(retry: int, expected: float) -> None:
    assert ceiling(retry, 0.5, 60.0) == expected


@pytest.mark.parametrize("attempts", [1, 2, 5, 20, 200])
def test_delays_count_and_bounds(attempts: int) -> None:
    waits = delays(attempts, 0.5, 60.0, random.Random(7))
    assert len(waits) == attempts - 1  # the first attempt is immediate
    for retry, wait in enumerate(waits):
        assert 0.0 <= wait <= ceiling(retry, 0.5, 60.0)
        assert math.isfinite(wait)


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    first = delays(10, 1.0, 300.0, random.Random(42))
    assert first == delays(10, 1.0, 300.0, random.Random(42))
    assert first != delays(10, 1.0, 300.0, random.Random(43))


def test_the_jitter_is_full() -> None:
    # Full jitter: the whole range [0, ceiling] is used, not a band around the ceiling.
    rng = random.Random(1)
    samples = [delay(3, 1.0, 60.0, rng) for _ in range(10_000)]
    assert min(samples) < 0.1
    assert max(samples) > 7.9
    assert 3.8 < sum(samples) / len(samples) < 4.2  # mean of uniform(0, 8)


@pytest.mark.parametrize(
    ("attempts", "base", "cap"),
    [
        (0, 1.0, 10.0),
        (-1, 1.0, 10.0),
        (3, 0.0, 10.0),
        (3, -1.0, 10.0),
        (3, 2.0, 1.0),
        (3, math.nan, 10.0),
        (3, 1.0, math.inf),
    ],
)
def test_bad_parameters_are_refused(attempts: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        delays(attempts, base, cap, random.Random(0))


def test_policy_runs_out_of_attempts() -> None:
    policy = RetryPolicy(max_attempts=4, base_s=1.0, cap_s=5.0)
    rng = random.Random(3)
    waits = [policy.next_delay(failed, rng) for failed in range(1, 6)]
    assert all(w is not None for w in waits[:3])
    assert waits[3:] == [None, None]  # after the 4th failure: dead letter
    assert len(policy.schedule(random.Random(3))) == 3


@pytest.mark.parametrize(
    ("retry_after", "at_least"), [(3.0, 3.0), (999.0, 5.0), (math.nan, 0.0), (None, 0.0)]
)
def test_retry_after_raises_the_wait_up_to_the_cap(
    retry_after: float | None, at_least: float
) -> None:
    policy = RetryPolicy(max_attempts=4, base_s=0.01, cap_s=5.0)
    wait = policy.next_delay(1, random.Random(0), retry_after=retry_after)
    assert wait is not None
    assert at_least <= wait <= 5.0


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"base_s": 0}, {"cap_s": 0.1}])
def test_bad_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_next_delay_is_called_after_a_failure() -> None:
    with pytest.raises(ValueError):
        RetryPolicy().next_delay(0, random.Random(0))


def test_a_batch_is_given_up_only_when_its_attempts_and_its_time_are_spent() -> None:
    policy = RetryPolicy(max_attempts=4, base_s=1.0, cap_s=5.0, min_retry_s=60.0)
    rng = random.Random(3)
    assert policy.next_delay(4, rng, failing_for=59.0) is not None  # attempts spent, time not
    assert policy.next_delay(9, rng, failing_for=59.9) is not None
    assert policy.next_delay(4, rng, failing_for=60.0) is None
    assert policy.next_delay(3, rng, failing_for=600.0) is not None  # time spent, attempts not


@pytest.mark.parametrize("seed", range(200))
def test_a_receiver_down_for_less_than_the_window_loses_nothing(seed: int) -> None:
    """The review's case: eight attempts drawn by full jitter once spanned 14 s, so a receiver
    down for 15 s lost a batch. With the default window, any outage shorter than it is ridden
    out, whatever the draws."""
    policy = RetryPolicy(max_attempts=8, base_s=0.5, cap_s=60.0, min_retry_s=300.0)
    rng = random.Random(seed)
    outage = 299.0
    clock, failed = 0.0, 0
    while clock < outage:  # every attempt inside the outage fails
        failed += 1
        wait = policy.next_delay(failed, rng, failing_for=clock)
        assert wait is not None, f"given up after {failed} attempts, {clock:.1f} s"
        clock += wait
    assert failed >= 8


@pytest.mark.parametrize("min_retry_s", [-1.0, math.inf, math.nan])
def test_a_bad_window_is_refused(min_retry_s: float) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(min_retry_s=min_retry_s)
