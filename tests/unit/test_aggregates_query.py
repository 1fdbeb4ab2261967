"""The pure part of reading aggregates back: partitions as Kafka's default partitioner puts
them, the time filter, revision reduction, the early stop, the limits and who sees what; and,
with hypothesis, that a query over the records real window states write (several states
interleaved in one partition, late data, idle advances) equals a brute-force pass over all of
its group's records."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityhub.schemas.settings import AggregationSettings
from cityhub.streams.aggregation.memory import InMemoryAggregates, MemoryRecord, group_of
from cityhub.streams.aggregation.points import US, Point, epoch_us
from cityhub.streams.aggregation.query import (
    AggregateQuery,
    QueryLimits,
    QueryRejected,
    Scan,
    area_group,
    check_range,
    device_group,
    format_ms,
    murmur2,
    partition_for_key,
    visible_to,
)
from cityhub.streams.aggregation.window_config import WindowConfig
from cityhub.streams.aggregation.windows import WindowState

T0_MS = epoch_us("2026-11-29T10:00:00Z") // 1000
MIN = 60_000

LIMITS = QueryLimits(
    grace_seconds=60,
    largest_window_seconds=3600,
    max_range_seconds=7 * 86400,
    max_scanned_records=1_000_000,
    max_items=10_000,
    timeout_seconds=5.0,
    concurrency=2,
)


def agg(
    *,
    key: str = "d1",
    grouping: str = "device",
    tenant: str | None = "acme",
    classification: str | None = "internal",
    quantity: str = "temperature",
    size: int = 60,
    start_ms: int = T0_MS,
    revision: int = 0,
    count: int = 1,
) -> dict[str, Any]:
    """An aggregate's JSON as the window agent writes it (the id stands for the window)."""
    return {
        "aggregate_id": f"{grouping}/{tenant}/{key}/{quantity}/{size}/{start_ms}",
        "grouping": grouping,
        "key": key,
        "tenant": tenant,
        "classification": classification,
        "device_id": key if grouping == "device" else None,
        "area": key if grouping == "area" else None,
        "quantity": quantity,
        "unit": "Cel",
        "window_size": size,
        "window_start": format_ms(start_ms),
        "window_end": format_ms(start_ms + size * 1000),
        "count": count,
        "min": 1.0,
        "max": 2.0,
        "sum": 3.0,
        "mean": 1.5,
        "last": 2.0,
        "last_observed_at": format_ms(start_ms + 1000),
        "last_event_id": "e",
        "revision": revision,
        "version": 2,
    }


def records(*docs: dict[str, Any]) -> list[MemoryRecord]:
    return [MemoryRecord(i, group_of(d).encode(), orjson.dumps(d), 0) for i, d in enumerate(docs)]


def scan(query: AggregateQuery, docs: list[dict[str, Any]], limits: QueryLimits = LIMITS) -> Scan:
    s = Scan(query, limits)
    recs = records(*docs)
    s.feed(recs, end_offset=len(recs))
    return s


def q(from_min: float, to_min: float, **kw: Any) -> AggregateQuery:
    return AggregateQuery(
        kw.pop("group", "device/d1"),
        T0_MS + round(from_min * MIN),
        T0_MS + round(to_min * MIN),
        **kw,
    )


# --- partitions --------------------------------------------------------------------------------


def test_partition_of_a_key_is_aiokafkas_default_partitioner() -> None:
    rng = random.Random(7)
    keys = [b"", b"a", b"ab", b"abc", b"abcd", b"device/aq-0007", b"area/city/centrum"]
    keys += [rng.randbytes(rng.randrange(0, 64)) for _ in range(2000)]
    keys += [f"device/dev-{i:05d}".encode() for i in range(2000)]
    for key in keys:
        assert murmur2(key) == aiokafka_murmur2(key)
        for n in (1, 2, 3, 8, 12, 64):
            parts = list(range(n))
            assert partition_for_key(key, n) == DefaultPartitioner()(key, parts, parts)


def test_group_keys_are_the_aggregates_record_keys() -> None:
    assert device_group("aq-1") == "device/aq-1"
    assert area_group("city", "centrum") == "area/city/centrum"
    assert group_of(agg(grouping="area", key="centrum", tenant="city")) == "area/city/centrum"
    with pytest.raises(ValueError):
        partition_for_key(b"x", 0)


# --- matching and reduction --------------------------------------------------------------------


def test_windows_overlapping_the_range_match_and_the_bounds_are_exclusive() -> None:
    docs = [
        agg(start_ms=T0_MS - MIN),  # ends at from: out
        agg(start_ms=T0_MS),  # in
        agg(start_ms=T0_MS + 9 * MIN),  # in
        agg(start_ms=T0_MS + 10 * MIN),  # starts at to: out
        agg(size=3600, start_ms=T0_MS - 60 * MIN + 1000 * 3600 - 3600_000),  # ends at from: out
        agg(size=3600, start_ms=T0_MS),  # overlaps: in
        agg(key="d2", start_ms=T0_MS),  # another group: out
    ]
    items = scan(q(0, 10), docs).result(0).items
    assert [(d["window_size"], d["window_start"]) for d in items] == [
        (60, format_ms(T0_MS)),
        (3600, format_ms(T0_MS)),
        (60, format_ms(T0_MS + 9 * MIN)),
    ]


def test_quantity_and_window_size_filter() -> None:
    docs = [agg(), agg(quantity="humidity"), agg(size=900), agg(quantity="humidity", size=900)]
    got = scan(q(0, 10, quantity="humidity", window_size=900), docs).result(0).items
    assert [(d["quantity"], d["window_size"]) for d in got] == [("humidity", 900)]


def test_the_highest_revision_is_current_and_a_replay_changes_nothing() -> None:
    docs = [
        agg(revision=0, count=1),
        agg(start_ms=T0_MS + MIN, revision=0, count=5),
        agg(revision=1, count=2),
        agg(revision=2, count=3),
        agg(revision=1, count=2),  # a replay of an older revision after a worker restart
    ]
    items = scan(q(0, 10), docs).result(0).items
    assert [(d["window_start"], d["revision"], d["count"]) for d in items] == [
        (format_ms(T0_MS), 2, 3),
        (format_ms(T0_MS + MIN), 0, 5),
    ]


def test_malformed_records_of_the_group_are_skipped_and_counted() -> None:
    s = Scan(q(0, 10), LIMITS)
    bad = [
        MemoryRecord(0, b"device/d1", b"not json", 0),
        MemoryRecord(1, b"device/d1", orjson.dumps({"window_end": "x"}), 0),
        MemoryRecord(2, b"device/d1", None, 0),
        MemoryRecord(3, b"device/d1", orjson.dumps({**agg(), "window_size": "60"}), 0),
        MemoryRecord(4, b"device/d1", orjson.dumps(agg()), 0),
    ]
    s.feed(bad, end_offset=5)
    result = s.result(0)
    assert result.malformed == 4
    assert len(result.items) == 1


# --- stopping ----------------------------------------------------------------------------------


def test_early_stop_once_the_group_is_past_to_plus_grace_plus_largest_size() -> None:
    # to = +10 min; grace 1 min; largest 60 min: a window ending at +71 min stops the scan.
    docs = [
        agg(start_ms=T0_MS),
        agg(key="d2", start_ms=T0_MS + 500 * MIN),  # another group far ahead: no stop
        agg(start_ms=T0_MS + 69 * MIN),  # ends at +70: not yet
        agg(start_ms=T0_MS + 70 * MIN),  # ends at +71: stop
        agg(start_ms=T0_MS + 5 * MIN),  # cannot happen after that (and is not read)
    ]
    s = scan(q(0, 10), docs)
    assert s.done
    assert s.stopped_early
    assert s.scanned == 4
    assert len(s.result(0).items) == 1


def test_a_larger_size_than_configured_widens_the_stop() -> None:
    docs = [agg(size=7200, start_ms=T0_MS), agg(start_ms=T0_MS + 70 * MIN)]
    s = scan(q(0, 10), docs)
    assert not s.stopped_early  # 71 < 10 + 1 + 120 minutes
    assert len(s.result(0).items) == 1


def test_the_high_watermark_is_the_hard_stop() -> None:
    recs = records(agg(), agg(start_ms=T0_MS + MIN))
    s = Scan(q(0, 10), LIMITS)
    assert s.feed(recs, end_offset=1)
    assert s.scanned == 1
    assert not s.stopped_early
    assert len(s.result(0).items) == 1


# --- limits ------------------------------------------------------------------------------------


def test_range_checks() -> None:
    check_range(T0_MS, T0_MS + 1, LIMITS)
    with pytest.raises(QueryRejected, match="before"):
        check_range(T0_MS, T0_MS, LIMITS)
    with pytest.raises(QueryRejected, match="at most 604800 s") as info:
        check_range(T0_MS, T0_MS + 7 * 86400_000 + 1, LIMITS)
    assert info.value.field == "to"
    # Every digit written out (a review read "3.16225e+07 s (366 days)" for 366 days and a minute).
    year = dataclasses.replace(LIMITS, max_range_seconds=366 * 86400)
    with pytest.raises(QueryRejected) as info:
        check_range(T0_MS, T0_MS + (366 * 86400 + 60) * 1000, year)
    assert "is 31622460 s (366 days and 60 s) long" in info.value.detail
    assert "at most 31622400 s (366 days)" in info.value.detail


def test_too_many_records_to_scan_is_refused_with_how_far_it_got() -> None:
    limits = dataclasses.replace(LIMITS, max_scanned_records=3)
    docs = [agg(start_ms=T0_MS + i * MIN) for i in range(5)]
    with pytest.raises(QueryRejected, match="more than 3 records") as info:
        scan(q(0, 10), docs, limits)
    assert format_ms(T0_MS + 3 * MIN) in info.value.detail


def test_too_many_windows_are_refused() -> None:
    limits = dataclasses.replace(LIMITS, max_items=2)
    docs = [agg(revision=r) for r in range(5)] + [agg(start_ms=T0_MS + MIN)]
    assert len(scan(q(0, 10), docs, limits).result(0).items) == 2
    with pytest.raises(QueryRejected, match="More than 2 windows") as info:
        scan(q(0, 10), [*docs, agg(start_ms=T0_MS + 2 * MIN)], limits)
    assert info.value.field == "windowSize"  # the query parameter to change


def test_limits_come_from_the_settings() -> None:
    limits = QueryLimits.from_settings(AggregationSettings(window_sizes_seconds=(60, 300)))
    assert limits.largest_window_seconds == 300
    assert limits.grace_seconds == 60
    assert limits.max_range_seconds == 7 * 86400


# --- who sees what -----------------------------------------------------------------------------


def test_visibility_own_tenant_everything_others_only_public() -> None:
    items = [
        agg(tenant="acme", classification=c) for c in ("public", "internal", "personal", None)
    ] + [agg(tenant="beta", classification=c) for c in ("public", "internal", "personal", None)]
    items.append(agg(tenant=None, classification="public"))  # unregistered: nobody's
    seen = visible_to("acme", items)
    assert [(i["tenant"], i["classification"]) for i in seen] == [
        ("acme", "public"),
        ("acme", "internal"),
        ("acme", "personal"),
        ("acme", None),
        ("beta", "public"),
    ]


def test_a_window_that_became_restricted_shows_no_older_public_revision() -> None:
    docs = [agg(classification="public"), agg(classification="personal", revision=1)]
    current = scan(q(0, 10), docs).result(0).items
    assert visible_to("beta", current) == []
    assert len(visible_to("acme", current)) == 1


# --- against real window states ----------------------------------------------------------------

DEVICES = {"d1": ("acme", "north"), "d2": ("acme", "north"), "d3": ("beta", "north")}
SIZES = (60, 300)
GRACE = 150


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Observations over ~40 minutes in a mostly increasing order with late ones, and idle
    advances of the watermark; each step is ("obs", Point) or ("advance", seconds)."""
    steps: list[tuple[str, Any]] = []
    clock = 0.0
    for i in range(draw(st.integers(1, 120))):
        if draw(st.integers(0, 9)) == 0:
            clock += draw(st.floats(0, 400))
            steps.append(("advance", clock))
            continue
        clock += draw(st.floats(0, 40))
        at = clock - draw(st.sampled_from([0.0, 0.0, 0.0, 5.0, 70.0, 130.0, 160.0, 400.0]))
        device = draw(st.sampled_from(sorted(DEVICES)))
        tenant, area = DEVICES[device]
        quantity = draw(st.sampled_from(["temperature", "humidity"]))
        classification = draw(st.sampled_from(["public", "internal", None]))
        point = Point(
            f"e{i}",
            device,
            area,
            quantity,
            float(i % 7),
            "u",
            T0_MS * 1000 + round(at * US),
            tenant,
            classification,
        )
        steps.append(("obs", point))
    return steps


def brute_force(topic: InMemoryAggregates, query: AggregateQuery) -> list[dict[str, Any]]:
    current: dict[str, dict[str, Any]] = {}
    for part in range(topic.partitions):
        for rec in topic.records(part):
            if rec.key != query.key:
                continue
            doc = orjson.loads(rec.value or b"")
            end = epoch_us(doc["window_end"]) // 1000
            start = epoch_us(doc["window_start"]) // 1000
            if end <= query.from_ms or start >= query.to_ms:
                continue
            if query.quantity not in (None, doc["quantity"]):
                continue
            if query.window_size not in (None, doc["window_size"]):
                continue
            old = current.get(doc["aggregate_id"])
            if old is None or doc["revision"] >= old["revision"]:
                current[doc["aggregate_id"]] = doc
    return sorted(
        current.values(),
        key=lambda d: (epoch_us(d["window_start"]), d["window_size"], d["quantity"], d["unit"]),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=streams(),
    queries=st.lists(
        st.tuples(
            st.sampled_from(["device/d1", "device/d2", "device/d3", "area/acme/north"]),
            st.integers(-10, 50),
            st.integers(1, 30),
            st.sampled_from([None, "temperature"]),
            st.sampled_from([None, 60, 300]),
        ),
        min_size=1,
        max_size=6,
    ),
)
async def test_a_query_equals_a_brute_force_pass_over_real_window_emissions(
    steps: list[tuple[str, Any]], queries: list[tuple[str, int, int, str | None, int | None]]
) -> None:
    # Two device states (two worker partitions) and an area state write into a topic of two
    # partitions, so groups of different watermarks interleave in one partition.
    config = WindowConfig(sizes=SIZES, grace=GRACE, groupings=("device",), max_future=None)
    area_config = WindowConfig(sizes=SIZES, grace=GRACE, groupings=("area",), max_future=None)
    states = {"d1": WindowState(config), "d3": WindowState(config)}
    states["d2"] = states["d1"] if len(steps) % 2 else WindowState(config)
    area_state = WindowState(area_config)
    limits = dataclasses.replace(LIMITS, grace_seconds=GRACE, largest_window_seconds=300)
    topic = InMemoryAggregates(limits, partitions=2)
    everyone = {id(s): s for s in (*states.values(), area_state)}.values()
    for kind, step in steps:
        if kind == "advance":
            out = [a for s in everyone for a in s.advance(T0_MS / 1000 + step - GRACE)]
        else:
            out = states[step.device_id].add(step) + area_state.add(step)
        for a in out:
            topic.add(a)
    for s in everyone:
        for a in s.flush():
            topic.add(a)
    for group, from_min, span, quantity, size in queries:
        query = AggregateQuery(
            group, T0_MS + from_min * MIN, T0_MS + (from_min + span) * MIN, quantity, size
        )
        result = await topic.read(query)
        assert result.items == brute_force(topic, query)


def test_a_query_of_one_size_stops_that_size_past_to_plus_grace() -> None:
    docs = [
        agg(start_ms=T0_MS),
        agg(size=300, start_ms=T0_MS),  # not of the size asked for
        agg(start_ms=T0_MS + 11 * MIN),  # ends at +12 = to + grace + 60 s: stop
        agg(start_ms=T0_MS + 5 * MIN),
    ]
    s = scan(q(0, 10, window_size=60), docs)
    assert s.stopped_early
    assert s.scanned == 3
    assert [d["window_size"] for d in s.result(0).items] == [60]
    assert not scan(q(0, 10), docs).stopped_early  # every size: an hour later at the earliest
