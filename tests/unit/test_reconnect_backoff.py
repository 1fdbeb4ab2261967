"""The bridge's wait between MQTT sessions: growing while sessions fail, starting over after one
that worked."""

from __future__ import annotations

import pytest

from cityhub.connectors.mqtt.reconnect import ReconnectBackoff


def _backoff() -> ReconnectBackoff:
    return ReconnectBackoff(jitter=lambda: 0.5)  # no jitter: each wait is the delay itself


def test_sessions_that_never_subscribe_double_the_wait_up_to_the_cap() -> None:
    backoff = _backoff()
    waits = [backoff.after_session(None) for _ in range(9)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_a_session_that_held_its_subscriptions_starts_the_wait_over() -> None:
    backoff = _backoff()
    for _ in range(6):
        backoff.after_session(None)  # a broker down for a while: 16 s next
    # It comes back, the bridge subscribes, and 20 s later the broker restarts again.
    assert backoff.after_session(20.0) == 0.5
    assert backoff.after_session(None) == 1.0


def test_a_session_taken_away_soon_after_subscribing_keeps_the_wait_growing() -> None:
    # Another process with the bridge's client id kicks it off each time it connects.
    backoff = _backoff()
    assert [backoff.after_session(0.2) for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 8.0]


@pytest.mark.parametrize(("jitter", "wait"), [(0.0, 0.25), (0.999, 0.7495)])
def test_each_wait_is_jittered_between_half_and_one_and_a_half_times_the_delay(
    jitter: float, wait: float
) -> None:
    assert ReconnectBackoff(jitter=lambda: jitter).after_session(None) == pytest.approx(wait)
