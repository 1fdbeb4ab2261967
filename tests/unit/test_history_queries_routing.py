"""Which source serves an aggregates query when the history store is enabled
(``cityhub.streams.aggregation.query.reads_history``, ``RoutedAggregates``): short recent ranges
from Kafka, every other from the store; the API's source says which, and the store's longer
range is the limit the API checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityhub.schemas.settings import Settings
from cityhub.streams.aggregation.memory import InMemoryAggregates
from cityhub.streams.aggregation.query import (
    AggregateQuery,
    AggregatesUnavailable,
    QueryLimits,
    ScanResult,
    device_group,
    reads_history,
)
from cityhub.streams.aggregation.reader import KafkaAggregateReader, aggregate_source
from cityhub.streams.history.aggregates_source import (
    HistoryAggregateReader,
    RoutedAggregates,
    history_limits,
)
from cityhub.streams.testing import FakeClock

HOUR = 3_600_000
NOW = 1_780_000_000_000
WINDOW = 6 * HOUR


def test_short_recent_ranges_read_kafka_and_every_other_history() -> None:
    group = device_group("d")
    for from_ms, to_ms, history in (
        (NOW - HOUR, NOW, False),
        (NOW - WINDOW, NOW, False),  # exactly the window: still Kafka
        (NOW - WINDOW - 1, NOW, True),  # a millisecond further back
        (NOW - 2 * HOUR, NOW + 5 * HOUR, True),  # recent but longer than the window
        (NOW - 30 * 24 * HOUR, NOW - 29 * 24 * HOUR, True),  # a day a month ago
        (NOW + HOUR, NOW + 2 * HOUR, False),  # ahead of now (finds nothing either way)
    ):
        query = AggregateQuery(group, from_ms, to_ms)
        assert reads_history(query, now_ms=NOW, kafka_window_ms=WINDOW) is history, (
            from_ms - NOW,
            to_ms - NOW,
        )
    # A window of 0: everything from the store.
    assert reads_history(AggregateQuery(group, NOW - 1, NOW), now_ms=NOW, kafka_window_ms=0)


class Labelled(InMemoryAggregates):
    """An in-memory source whose answers say where they came from."""

    def __init__(self, limits: QueryLimits, source: str) -> None:
        super().__init__(limits)
        self.source = source

    async def read(self, query: AggregateQuery) -> ScanResult:
        result = await super().read(query)
        return ScanResult(
            result.items, result.scanned, result.partition, result.stopped_early, 0, self.source
        )


async def test_the_routed_source_asks_the_one_that_serves_and_closes_both() -> None:
    settings = Settings()
    kafka = Labelled(QueryLimits.from_settings(settings.aggregation), "kafka")
    history = Labelled(history_limits(settings), "history")
    clock = FakeClock(NOW / 1000)
    routed = RoutedAggregates(kafka, history, kafka_window_hours=6, clock=clock)
    recent = AggregateQuery(device_group("d"), NOW - HOUR, NOW)
    assert (await routed.read(recent)).source == "kafka"
    clock.advance(7 * 3600)  # the same range, seven hours later
    assert (await routed.read(recent)).source == "history"
    assert (kafka.reads, history.reads) == (1, 1)
    # The API checks the range against the store's limit: a year passes, 367 days do not.
    assert routed.limits.max_range_seconds == 366 * 24 * 3600
    assert routed.limits.max_items == settings.aggregation.query_max_items
    await routed.close()


async def test_the_apis_source_follows_the_setting() -> None:
    on = aggregate_source(Settings())
    assert isinstance(on, RoutedAggregates)
    assert isinstance(on.kafka, KafkaAggregateReader)
    assert isinstance(on.history, HistoryAggregateReader)
    await on.close()  # nothing was connected: closing costs nothing
    off = aggregate_source(Settings(history={"enabled": False}))  # type: ignore[arg-type]
    assert isinstance(off, KafkaAggregateReader)
    await off.close()


async def test_a_history_store_without_its_password_file_is_unavailable_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Before the stack wrote it (or with a wrong setting): the console's device page and the
    # API answered 500; now 503 (unavailable), and only the log names the missing file.
    missing = tmp_path / "no-such-password"
    settings = Settings(history={"password_file": missing})  # type: ignore[arg-type]
    reader = HistoryAggregateReader(settings)
    try:
        with pytest.raises(AggregatesUnavailable) as raised:
            await reader.read(AggregateQuery(device_group("d"), NOW - 30 * 24 * HOUR, NOW))
        assert str(missing) not in str(raised.value)
        assert str(missing) in caplog.text
    finally:
        await reader.close()
