"""Windows at the edges of the accepted time range (1970 up to 2100): every observation inside it
gives windows whose bounds can be written, read back by the query and the API, and carried as a
Kafka timestamp, even when the window ends in 2100; sizes are bounded so that this holds;
observations outside the range never reach a window, and a state saved with such windows by an
older version is restored without them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from cityhub.schemas.aggregate import MAX_WINDOW_SECONDS, Aggregate
from cityhub.schemas.errors import InvalidTimestamp
from cityhub.schemas.settings import AggregationSettings
from cityhub.schemas.timefmt import LATEST_US
from cityhub.schemas.validation import errors
from cityhub.streams.aggregation.memory import MemoryRecord
from cityhub.streams.aggregation.points import US, Point, epoch_us
from cityhub.streams.aggregation.query import AggregateQuery, QueryLimits, Scan, device_group
from cityhub.streams.aggregation.window_config import WindowConfig
from cityhub.streams.aggregation.windows import WindowState

SIZES = (60, 3600, 86400, MAX_WINDOW_SECONDS)
CONFIG = WindowConfig(sizes=SIZES, grace=60, groupings=("device", "area"), max_future=None)
LIMITS = QueryLimits(
    grace_seconds=60,
    largest_window_seconds=MAX_WINDOW_SECONDS,
    max_range_seconds=2 * MAX_WINDOW_SECONDS,
    max_scanned_records=1000,
    max_items=1000,
    timeout_seconds=5.0,
    concurrency=1,
)


def observation(observed_at: str, event: str = "e1") -> dict[str, Any]:
    return {
        "event_id": event,
        "device_id": "d1",
        "area": "north",
        "quantity": "temperature",
        "value": 1.5,
        "unit": "Cel",
        "observed_at": observed_at,
        "tenant": "city",
        "classification": "public",
    }


def windows_of(*observed_at: str) -> list[Aggregate]:
    state = WindowState(CONFIG)
    out: list[Aggregate] = []
    for i, at in enumerate(observed_at):
        out += state.add(Point.from_observation(observation(at, f"e{i}")))
    return out + state.flush()


@pytest.mark.parametrize(
    "observed_at",
    ["2099-12-31T23:59:59.999Z", "2099-12-31T23:59:59.999999Z", "1970-01-01T00:00:00Z"],
)
def test_windows_at_the_edges_can_be_written_and_read_back(observed_at: str) -> None:
    aggregates = windows_of(observed_at)
    assert len(aggregates) == 2 * len(SIZES)  # device and area, every size
    t = epoch_us(observed_at)
    for a in aggregates:
        doc = a.to_dict()
        assert errors("aggregate", doc) == []  # the date-time format of both bounds
        start = epoch_us(a.window_start)
        assert start <= t < start + a.window_size * US
        assert a.timestamp_ms() == start // 1000 + a.window_size * 1000
        # The query reads it whatever its end, including one at or past 2100.
        query = AggregateQuery(
            device_group("d1") if a.grouping == "device" else "area/city/north",
            from_ms=start // 1000,
            to_ms=start // 1000 + 1,
        )
        scan = Scan(query, LIMITS)
        record = MemoryRecord(0, a.kafka_key(), a.to_json(), a.timestamp_ms())
        scan.feed([record], end_offset=1)
        result = scan.result(0)
        assert (result.malformed, len(result.items)) == (0, 1), a


def test_the_last_hour_of_2099_ends_in_2100() -> None:
    aggregates = {a.window_size: a for a in windows_of("2099-12-31T23:30:00Z")}
    hour = aggregates[3600]
    assert (hour.window_start, hour.window_end) == (
        "2099-12-31T23:00:00.000Z",
        "2100-01-01T00:00:00.000Z",
    )
    assert hour.timestamp_ms() == LATEST_US // 1000
    longest = aggregates[MAX_WINDOW_SECONDS]
    assert longest.window_end > "2100"
    assert longest.timestamp_ms() > LATEST_US // 1000


@pytest.mark.parametrize(
    "observed_at",
    [
        "9999-12-31T23:59:59.999Z",
        "0001-01-01T00:00:00+01:00",
        "2100-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "\uff12\uff10\uff12\uff16-11-29T01:00:00Z",
    ],
)
def test_observations_outside_the_range_reach_no_window(observed_at: str) -> None:
    # The aggregator catches ValueError around from_observation and counts the record malformed.
    with pytest.raises(InvalidTimestamp) as info:
        Point.from_observation(observation(observed_at))
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("sizes", [(MAX_WINDOW_SECONDS + 1,), (60, 10**12), (0,), (-60,)])
def test_window_sizes_are_bounded(sizes: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="366 days"):
        WindowConfig(sizes=sizes)
    with pytest.raises(ValidationError):
        AggregationSettings(window_sizes_seconds=sizes)


def test_a_state_saved_with_windows_outside_the_range_is_restored_without_them() -> None:
    state = WindowState(CONFIG)
    state.add(Point.from_observation(observation("2099-12-31T23:59:00Z")))
    saved = state.to_json()
    kept = len(saved["entries"])
    # What an older version could save: a window of year 9999 and one that ends past it.
    year_9999 = 253402300740 * US
    window = next(e for e in saved["entries"] if e[0] == "device")
    saved["entries"].append([*window[:5], 60, year_9999, *window[7:]])
    saved["entries"].append([*window[:5], 10**12, 0, *window[7:]])
    saved["entries"].append(["seen", None, "d1", "temperature", "Cel", 60, year_9999, [1, 2]])
    restored = WindowState.from_json(orjson.loads(orjson.dumps(saved)), CONFIG)
    assert len(restored.to_json()["entries"]) == kept
    emitted = restored.flush()
    assert len(emitted) == 2 * len(SIZES)
    assert all(errors("aggregate", a.to_dict()) == [] for a in emitted)
