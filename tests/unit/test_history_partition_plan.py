"""Which partitions the history tables get, and which they lose (no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from cityhub.streams.history.partition_plan import (
    AGGREGATES,
    OBSERVATIONS,
    Partition,
    accepted_span,
    expired,
    parse_partition_name,
    partition_for,
    partitions_ahead,
    partitions_needed,
)

NOW = datetime(2026, 12, 31, 22, 30, tzinfo=UTC)


def test_daily_and_monthly_partitions_have_names_and_bounds() -> None:
    day = partition_for(OBSERVATIONS, date(2026, 12, 31))
    assert day == Partition(
        datetime(2026, 12, 31, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
        "observations_p20261231",
    )
    month = partition_for(AGGREGATES, date(2026, 12, 1))
    assert month == Partition(
        datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), "aggregates_p202612"
    )
    assert parse_partition_name(OBSERVATIONS, day.name) == day
    assert parse_partition_name(AGGREGATES, month.name) == month
    for other in (
        "observations_default",
        "observations_p2026123",
        "aggregates_p20261201",
        "observations_p20261332",
        "something_p20261231",
    ):
        assert parse_partition_name(OBSERVATIONS, other) is None or other == day.name
        assert parse_partition_name(AGGREGATES, other) is None


def test_the_accepted_span_runs_from_the_retention_to_the_days_ahead() -> None:
    span = accepted_span(NOW, retention_days=30, ahead_days=2)
    assert span.earliest == datetime(2026, 12, 1, 22, 30, tzinfo=UTC)
    assert span.latest == datetime(2027, 1, 3, tzinfo=UTC)  # the whole of the second day ahead
    assert NOW in span
    assert datetime(2027, 1, 2, 23, 59, tzinfo=UTC) in span
    assert datetime(2027, 1, 3, tzinfo=UTC) not in span
    assert datetime(2026, 12, 1, 22, 29, tzinfo=UTC) not in span


def test_a_hostile_clock_makes_no_partition() -> None:
    span = accepted_span(NOW, retention_days=400, ahead_days=2)
    times = [
        datetime(1971, 1, 1, tzinfo=UTC),
        datetime(2099, 12, 31, tzinfo=UTC),
        *(datetime(1971 + n % 50, 1 + n % 12, 1, tzinfo=UTC) for n in range(5000)),
        datetime(2026, 12, 31, 8, tzinfo=UTC),
        datetime(2027, 1, 1, 1, tzinfo=UTC),
    ]
    needed = partitions_needed(OBSERVATIONS, times, span)
    assert {p.name for p in needed} == {"observations_p20261231", "observations_p20270101"}
    assert {p.name for p in partitions_needed(AGGREGATES, times, span)} == {
        "aggregates_p202612",
        "aggregates_p202701",
    }


def test_partitions_ahead_cover_today_and_the_days_after() -> None:
    assert {p.name for p in partitions_ahead(OBSERVATIONS, NOW, 2)} == {
        "observations_p20261231",
        "observations_p20270101",
        "observations_p20270102",
    }
    assert {p.name for p in partitions_ahead(AGGREGATES, NOW, 2)} == {
        "aggregates_p202612",
        "aggregates_p202701",
    }


def test_only_partitions_wholly_past_the_cutoff_expire() -> None:
    days = [partition_for(OBSERVATIONS, date(2026, 11, d)) for d in (28, 29, 30)]
    cutoff = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    assert [p.name for p in expired(reversed(days), cutoff)] == [
        "observations_p20261128",
        "observations_p20261129",
    ]
