"""The subscriptions' delivery statuses: read from a delivery process's metrics, written in
rounds (changed, heartbeat, tombstones, retries) and read back by the API's view."""

from __future__ import annotations

import pytest
from prometheus_client.metrics_core import Metric

from cityhub.schemas.subscription import SubscriptionState
from cityhub.schemas.subscription_status import SubscriptionStatus, status_key
from cityhub.streams.delivery import metrics as m
from cityhub.streams.delivery.status import Figures, StatusRounds, figures_of
from cityhub.streams.delivery.status_publisher import (
    InMemorySubscriptionStatusStore,
    StatusPublisher,
)
from cityhub.streams.delivery.status_view import SubscriptionStatusView


def _families() -> list[Metric]:
    out: list[Metric] = []
    for metric in (m.STATE, m.LAG_MESSAGES, m.LAG_SECONDS, m.DELIVERED, m.FAILED, m.DEADLETTERED):
        out.extend(metric.collect())
    return out


def test_figures_are_read_back_from_the_delivery_metrics() -> None:
    labels = ("t-status", "sub-a")
    m.set_state(*labels, SubscriptionState.FAILING)
    m.LAG_MESSAGES.labels(*labels).set(42)
    m.LAG_SECONDS.labels(*labels).set(3.5)
    m.DELIVERED.labels(*labels).inc(7)
    m.FAILED.labels(*labels).inc(2)
    m.DEADLETTERED.labels(*labels).inc(1)
    try:
        fig = figures_of(_families())[labels]
        assert fig == Figures(
            state=SubscriptionState.FAILING,
            lag_messages=42,
            lag_seconds=3.5,
            delivered=7,
            failed=2,
            dead_lettered=1,
        )
    finally:
        m.forget(*labels)
    assert labels not in figures_of(_families())


def test_a_round_writes_what_changed_and_a_heartbeat_of_what_did_not() -> None:
    rounds = StatusRounds(process="p1", since=1000.0, heartbeat=30.0)
    key = ("t", "s")
    fig = Figures(lag_messages=3, delivered=10)
    records, gone = rounds.round({key: fig}, [key], [key], 1000.0)
    assert [r.key for r in records] == ["status/t/s"]
    assert gone == []
    assert records[0].rate_per_second is None  # one count is no rate yet
    assert records[0].lag_messages == 3
    # The second count gives the rate (none delivered: 0 per second).
    records, _ = rounds.round({key: fig}, [key], [key], 1005.0)
    assert records[0].rate_per_second == 0.0
    # Nothing changed: nothing written, until the heartbeat is due.
    assert rounds.round({key: fig}, [key], [key], 1010.0) == ([], [])
    records, _ = rounds.round({key: fig}, [key], [key], 1036.0)
    assert len(records) == 1
    # 50 more delivered in 5 s: 10 per second.
    records, _ = rounds.round({key: Figures(delivered=60)}, [key], [key], 1041.0)
    assert records[0].rate_per_second == pytest.approx(10.0)
    assert records[0].delivered == 60
    assert records[0].lag_messages == 0
    assert records[0].process == "p1"
    assert records[0].since.startswith("1970-01-01T00:16:40")


def test_a_subscription_not_reported_here_is_not_written_and_a_deleted_one_is_tombstoned() -> None:
    rounds = StatusRounds(process="p1", since=0.0)
    a, b = ("t", "a"), ("t", "b")
    records, _ = rounds.round({a: Figures(), b: Figures()}, [a], [a, b], 1.0)
    assert [r.subscription for r in records] == ["a"]  # b is another process's
    records, gone = rounds.round({}, [], [b], 2.0)
    assert records == []
    assert gone == [status_key("t", "a")]
    assert rounds.round({}, [], [b], 3.0) == ([], [])  # once


def test_a_record_that_failed_to_write_is_written_again() -> None:
    rounds = StatusRounds(process="p1", since=0.0)
    key = ("t", "s")
    records, _ = rounds.round({key: Figures()}, [key], [key], 1.0)
    rounds.failed(records)
    again, _ = rounds.round({key: Figures()}, [key], [key], 2.0)
    assert len(again) == 1


def test_the_view_keeps_the_latest_status_and_skips_malformed_records() -> None:
    view = SubscriptionStatusView()
    record = SubscriptionStatus(
        tenant="t",
        subscription="s",
        state=SubscriptionState.ACTIVE,
        lag_messages=1,
        lag_seconds=0.5,
        delivered=2,
        failed=0,
        dead_lettered=0,
        dropped=0,
        rate_per_second=0.2,
        process="p",
        since="2026-12-04T10:00:00Z",
        at="2026-12-04T10:00:05Z",
    )
    view.apply(record.key, record.model_dump_json().encode(), 0)
    assert view.of("t", "s") == record
    view.apply("status/t/other", record.model_dump_json().encode(), 1)  # key mismatch
    view.apply("status/t/s2", b"{not json", 2)
    view.apply("nonsense", b"{}", 3)
    assert view.malformed == 3
    assert view.count() == 1
    assert view.offset == 3
    view.apply(record.key, None, 4)
    assert view.of("t", "s") is None


class _Source:
    def __init__(self) -> None:
        self.mine: set[tuple[str, str]] = {("t", "s")}
        self.all: set[tuple[str, str]] = {("t", "s")}

    def reporting(self) -> set[tuple[str, str]]:
        return self.mine

    def present(self) -> set[tuple[str, str]]:
        return self.all


async def test_the_publisher_writes_to_the_topic_the_api_reads_and_retries_a_failed_write() -> None:
    store = InMemorySubscriptionStatusStore()
    source = _Source()
    clock = [100.0]

    def families() -> list[Metric]:
        return []

    publisher = StatusPublisher(source, clock=lambda: clock[0], process="p", families=families)
    assert await publisher.publish(store.send) == 1
    status = store.view.of("t", "s")
    assert status is not None
    assert status.lag_messages == 0
    assert status.process == "p"

    fails = [True]

    async def flaky(key: str, value: bytes | None) -> None:
        if fails[0]:
            raise OSError("kafka away")
        await store.send(key, value)

    publisher.rounds.failed([status])  # pretend it changed
    clock[0] = 101.0
    assert await publisher.publish(flaky) == 0
    fails[0] = False
    clock[0] = 102.0
    assert await publisher.publish(flaky) == 1
    source.mine, source.all = set(), set()
    clock[0] = 103.0
    assert await publisher.publish(store.send) == 1  # the tombstone
    assert store.view.of("t", "s") is None
