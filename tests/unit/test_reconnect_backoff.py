"""The bridge's wait between MQTT sessions: growing while sessions fail, starting over after one
that worked."""

from __future__ import annotations

import pytest

from cityhub.connectors.mqtt.failures import taken_over_hint
from cityhub.connectors.mqtt.reconnect import ReconnectBackoff
from cityhub.schemas.settings import MqttSettings


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


def test_a_session_closed_soon_after_subscribing_asks_about_the_client_id() -> None:
    """Two hubs with one client id take the session from each other; the broker only closes the
    older connection, so the log line says what to look for (review)."""
    mqtt = MqttSettings(client_id="city-hub")
    hint = taken_over_hint("lost", 1.2, mqtt)
    assert "closed 1.2 s after subscribing" in hint
    assert "client id 'city-hub'" in hint
    assert taken_over_hint("lost", 40.0, mqtt) == ""  # a session that worked for a while
    assert taken_over_hint("lost", None, mqtt) == ""  # never subscribed: another cause
    assert taken_over_hint("login_refused", 1.0, mqtt) == ""
