"""Coverage and quality flags in the window aggregates: readings, flagged, expected, coverage,
flagged values kept out of the statistics on request, the area's roster of devices, restarts,
and the promise that the stream's last emissions equal the offline recomputation."""

import dataclasses
import json
import math

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityhub.schemas.validation import errors
from cityhub.streams.aggregation.coverage import area_expected, coverage, expected_readings
from cityhub.streams.aggregation.points import US, Point, epoch_us
from cityhub.streams.aggregation.recompute import recompute
from cityhub.streams.aggregation.window_config import WindowConfig
from cityhub.streams.aggregation.windows import WindowState

T0 = epoch_us("2026-11-29T10:00:00Z")  # a whole hour


def pt(eid, value, at_s, *, device="d1", area=None, flagged=False, interval=None, tenant="city"):
    return Point(
        eid,
        device,
        area,
        "temperature",
        value,
        "Cel",
        T0 + round(at_s * US),
        tenant,
        None,
        flagged,
        interval,
    )


def last_by_id(emissions):
    last = {}
    for a in emissions:
        last[a.aggregate_id] = a
    return last


def windows(state, points):
    out = []
    for p in points:
        out += state.add(p)
    out += state.flush()
    return {(a.grouping, a.key, a.window_size, a.window_start[11:19]): a for a in out}


def test_coverage_is_bounded_and_null_without_expectation():
    assert expected_readings(60, 30) == 2.0
    assert expected_readings(60, 900) == 60 / 900
    assert expected_readings(60, None) is None
    assert coverage(1, 2.0) == 0.5
    assert coverage(5, 2.0) == 1.0  # more often than promised: bounded
    assert coverage(3, None) is None
    assert coverage(0, 0.0) is None


def test_a_device_reporting_half_as_often_as_promised_has_coverage_one_half():
    s = WindowState(WindowConfig(sizes=(600,), grace=0, groupings=("device",)))
    got = windows(s, [pt(f"e{i}", 20.0, i * 60, interval=30) for i in range(10)])
    agg = got[("device", "d1", 600, "10:00:00")]
    assert (agg.readings, agg.count, agg.flagged) == (10, 10, 0)
    assert (agg.expected, agg.coverage) == (20.0, 0.5)
    assert errors("aggregate", agg.to_dict()) == []


def test_flagged_readings_are_counted_and_kept_out_of_the_statistics_on_request():
    values = [(10.0, False), (12.0, False), (-80.0, True), (14.0, False), (99.0, True)]
    points = [pt(f"e{i}", v, i * 10, flagged=f, interval=10) for i, (v, f) in enumerate(values)]
    kept = windows(WindowState(WindowConfig(sizes=(60,), grace=0, groupings=("device",))), points)
    out = windows(
        WindowState(
            WindowConfig(sizes=(60,), grace=0, groupings=("device",), exclude_flagged=True)
        ),
        points,
    )
    k = kept[("device", "d1", 60, "10:00:00")]
    o = out[("device", "d1", 60, "10:00:00")]
    assert (k.readings, k.flagged, k.count, k.min, k.max, k.mean) == (5, 2, 5, -80.0, 99.0, 11.0)
    assert (o.readings, o.flagged, o.count, o.min, o.max, o.sum) == (5, 2, 3, 10.0, 14.0, 36.0)
    assert o.mean == 12.0
    # Coverage counts every reading that arrived, flagged or not; last is the last reading.
    assert o.coverage == k.coverage == round(5 / 6, 6)
    assert (o.last, o.last_event_id) == (99.0, "e4")


def test_a_window_of_flagged_readings_only_has_null_statistics_when_they_are_kept_out():
    config = WindowConfig(sizes=(60,), grace=0, groupings=("device",), exclude_flagged=True)
    got = windows(
        WindowState(config), [pt("a", 1.0, 1, flagged=True), pt("b", 2.0, 2, flagged=True)]
    )
    agg = got[("device", "d1", 60, "10:00:00")]
    assert (agg.readings, agg.flagged, agg.count) == (2, 2, 0)
    assert (agg.min, agg.max, agg.sum, agg.mean) == (None, None, None, None)
    assert agg.last == 2.0
    assert errors("aggregate", agg.to_dict()) == []
    # ... and later unflagged readings fill them in, in whatever order they come.
    s = WindowState(config)
    s.add(pt("a", 5.0, 1, flagged=True))
    s.add(pt("b", 3.0, 2))
    (agg,) = s.flush()
    assert (agg.count, agg.min, agg.max, agg.mean) == (1, 3.0, 3.0, 3.0)


def test_a_silent_sensor_lowers_its_areas_coverage_for_the_roster_period():
    config = WindowConfig(sizes=(600,), grace=0, groupings=("area",), roster_seconds=1800)
    points = []
    for minute in range(60):
        for d in range(4):
            if d == 3 and minute >= 10:
                continue  # d3 falls silent at 10:10
            points.append(
                pt(f"{d}-{minute}", 1.0, minute * 60 + d, device=f"d{d}", area="north", interval=60)
            )
    got = windows(WindowState(config), points)
    covered = {start: a.coverage for (g, _, _, start), a in got.items() if g == "area"}
    assert covered["10:00:00"] == 1.0
    # d3's last reading, 10:09:03, is kept rounded up to the roster's step (1800 s / 24 = 75 s):
    # 10:10:00. It is still expected in the windows that end within 30 minutes of that.
    assert covered["10:10:00"] == covered["10:20:00"] == covered["10:30:00"] == 0.75
    # Then it drops off the roster: the area promises three devices' readings.
    assert covered["10:40:00"] == covered["10:50:00"] == 1.0
    assert got[("area", "north", 600, "10:20:00")].expected == 40.0


def test_a_device_that_joins_later_is_not_expected_before_its_first_reading():
    config = WindowConfig(sizes=(60,), grace=0, groupings=("area",))
    s = WindowState(config)
    s.add(pt("a", 1.0, 0, device="d1", area="north", interval=60))
    s.add(pt("b", 1.0, 61, device="d1", area="north", interval=60))  # closes 10:00
    s.add(pt("c", 1.0, 62, device="d2", area="north", interval=60))
    first, *_ = s.flush()
    assert first.window_start.endswith("10:01:00.000Z")
    assert first.expected == 2.0


def test_roster_survives_restarts_and_its_entries_rebuild_the_state():
    config = WindowConfig(sizes=(60, 900), grace=30, groupings=("area",), roster_seconds=600)
    points = [
        pt(f"e{i}", float(i), i * 20, device=f"d{i % 3}", area="north", interval=20 * (1 + i % 2))
        for i in range(100)
    ]
    whole = WindowState(config)
    table: dict[str, list] = {}
    meta: dict[str, object] = {}
    for i, p in enumerate(points):
        whole.add(p, seq=i)
        meta, changes = whole.take_changes()
        for key, value in changes.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        if i % 17 == 0:
            # Rebuilt from the table's entries, as the agent's assign does after a restart.
            entries = [item for value in table.values() for item in value]
            again = WindowState.from_json({**meta, "entries": entries}, config)
            assert again.emitted() == whole.emitted()
            assert sorted(map(str, again.to_json()["entries"])) == sorted(
                map(str, whole.to_json()["entries"])
            )
    assert any(a.expected for a in whole.emitted())
    entries = [item for value in table.values() for item in value]
    again = WindowState.from_json({**meta, "entries": entries}, config)
    assert again.flush() == whole.flush()


def test_state_entries_written_before_coverage_still_load():
    s = WindowState(WindowConfig(sizes=(60,), grace=0, groupings=("device",)))
    s.add(pt("a", 1.0, 1))
    data = s.to_json()
    old = [item[:18] for item in data["entries"] if item[0] == "device"]
    state = WindowState.from_json({**data, "entries": old}, s.config)
    (agg,) = state.flush()
    assert (agg.readings, agg.flagged, agg.count, agg.expected, agg.coverage) == (
        1,
        0,
        1,
        None,
        None,
    )


# -- the property: stream == recomputation ---------------------------------------------------

DEVICES = ("d1", "d2", "d3", "d4")
INTERVALS = {"d1": 30, "d2": 60, "d3": None, "d4": 900}


@st.composite
def scenarios(draw):
    config = draw(
        st.sampled_from(
            [
                WindowConfig(sizes=(60, 900), grace=60, max_future=None, exclude_flagged=True),
                WindowConfig(sizes=(60, 900), grace=60, max_future=None),
                WindowConfig(sizes=(7, 60), grace=5, max_future=None, exclude_flagged=True),
                WindowConfig(
                    sizes=(300,),
                    grace=120,
                    groupings=("area",),
                    exclude_flagged=True,
                    roster_seconds=600,
                    max_future=None,
                ),
            ]
        )
    )
    n = draw(st.integers(1, 50))
    unique = []
    for i in range(n):
        device = draw(st.sampled_from(DEVICES))
        unique.append(
            Point(
                f"e{i:03d}",
                device,
                draw(st.sampled_from(["north", "south", None])),
                "temperature",
                draw(st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.just("text"))),
                "Cel",
                T0 + draw(st.integers(0, 2 * 3600 * US)),
                draw(st.sampled_from(["city", "port"])),
                None,
                draw(st.booleans()),
                INTERVALS[device],
            )
        )
    copies = draw(st.lists(st.sampled_from(unique), max_size=5))
    arrivals = unique + copies
    grace_us = config.grace * US
    delays = [draw(st.integers(0, max(grace_us - 1, 0))) for _ in arrivals]
    order = sorted(range(len(arrivals)), key=lambda i: (arrivals[i].observed_us + delays[i], i))
    restarts = draw(st.lists(st.integers(0, len(order)), max_size=3))
    return config, unique, [arrivals[i] for i in order], set(restarts)


def run(config, arrivals, restarts):
    state = WindowState(config)
    out = []
    for i, p in enumerate(arrivals):
        if i in restarts:
            state = WindowState.from_json(json.loads(json.dumps(state.to_json())), config)
        out += state.add(p)
    return out + state.flush()


def without_area_expectation(a):
    if a.grouping == "area":
        return dataclasses.replace(a, revision=0, expected=None, coverage=None)
    return dataclasses.replace(a, revision=0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_readings_flags_and_statistics_equal_the_recomputation_across_restarts(scenario):
    config, unique, arrivals, restarts = scenario
    plain = run(config, arrivals, set())
    assert run(config, arrivals, restarts) == plain  # restarts change nothing
    last = last_by_id(plain)
    oracle = {a.aggregate_id: a for a in recompute(unique, config)}
    assert set(last) == set(oracle)
    for aid, a in last.items():
        o = oracle[aid]
        assert without_area_expectation(a).to_json() == without_area_expectation(o).to_json()
        assert a.readings == a.count + (a.flagged if config.exclude_flagged else 0)
        assert errors("aggregate", a.to_dict()) == []
        if a.coverage is not None:
            assert 0 < a.coverage <= 1
        if a.grouping == "area":
            # The roster at the last emission knew at most what the whole input shows, and at
            # least the devices with readings in the window.
            assert (a.expected or 0) <= (o.expected or 0) + 1e-9
            end = epoch_us(a.window_end)
            start = epoch_us(a.window_start)
            present = {
                p.device_id
                for p in unique
                if p.area == a.key
                and p.tenant == a.tenant
                and start <= p.observed_us < end
                and not isinstance(p.value, str)
            }
            floor = math.fsum(a.window_size / INTERVALS[d] for d in sorted(present) if INTERVALS[d])
            assert (a.expected or 0) >= floor - 1e-9


def test_area_expected_sums_the_devices_on_the_roster_in_a_fixed_order():
    roster = {"b": [0, 10 * US, 60], "a": [0, 10 * US, 30], "c": [0, 10 * US, None]}
    assert area_expected(roster, 60, 60 * US, 0) == 3.0
    assert area_expected({"c": [0, 0, None]}, 60, 60 * US, 0) is None
    # Last seen more than the roster period (at least the window) before the end: not counted.
    assert area_expected(roster, 60, 200 * US, 0) is None
    assert area_expected(roster, 60, 200 * US, 3600) == 3.0


def test_point_from_observation_reads_the_quality_flags_and_takes_the_interval():
    doc = {
        "event_id": "e",
        "device_id": "d",
        "quantity": "temperature",
        "value": 1.0,
        "observed_at": "2026-11-29T10:00:00Z",
        "quality": ["spike"],
    }
    assert Point.from_observation(doc, 60)[-2:] == (True, 60)
    assert Point.from_observation({**doc, "quality": []})[-2:] == (False, None)
    del doc["quality"]  # written before quality flags existed
    assert Point.from_observation(orjson.loads(orjson.dumps(doc)))[-2:] == (False, None)


# -- the agents, as the runtime drives them ----------------------------------------------------


def test_the_agents_ask_the_registry_for_intervals_and_read_the_flags() -> None:
    from dataclasses import dataclass, field

    from cityhub.schemas.settings import Settings
    from cityhub.streams.aggregation.agent import AggregatorAgent

    settings = Settings.model_validate({"aggregation": {"exclude_flagged": True}})
    prefix = settings.kafka.topic_prefix

    @dataclass(frozen=True)
    class Rec:
        offset: int
        value: bytes | None
        partition: int = 0
        topic: str = f"{prefix}.observations"
        key: bytes | None = b"d1"
        timestamp: int = 0
        headers: list[tuple[str, bytes]] = field(default_factory=list)

    asked = []

    def interval_of(tenant, device_id):
        asked.append((tenant, device_id))
        return 20

    def observation(i, value, quality, at=None):
        return orjson.dumps(
            {
                "event_id": f"e{i}",
                "device_id": "d1",
                "quantity": "temperature",
                "value": value,
                "unit": "Cel",
                "observed_at": at or f"2026-11-29T10:00:{i * 10:02d}Z",
                "tenant": "city",
                "area": "centrum",
                "quality": quality,
            }
        )

    agent = AggregatorAgent(settings, "device", interval_of=interval_of)
    agent.assign(0, [])
    batch = [Rec(i, observation(i, 20.0 + i, ["spike"] if i == 2 else [])) for i in range(4)]
    batch.append(Rec(4, observation(4, 0.0, [], at="2026-11-29T10:01:05Z")))
    writes = agent.step(0, batch, now=T0 / US + 3600)
    (minute,) = [
        orjson.loads(w.value or b"")
        for w in writes
        if w.topic == f"{prefix}.aggregates" and orjson.loads(w.value or b"")["window_size"] == 60
    ]
    assert asked[0] == ("city", "d1")
    assert (minute["readings"], minute["flagged"], minute["count"]) == (4, 1, 3)
    assert minute["mean"] == (20.0 + 21.0 + 23.0) / 3
    assert (minute["expected"], minute["coverage"]) == (3.0, 1.0)


def test_a_roster_entry_is_written_when_a_device_joins_or_moves_a_step_not_per_reading():
    config = WindowConfig(sizes=(60,), grace=0, groupings=("area",), roster_seconds=24 * 3600)
    s = WindowState(config)
    written = []
    for minute in range(180):  # three hours of a device reporting every minute
        s.add(pt(f"e{minute}", 1.0, minute * 60, area="north", interval=60))
        _, entries = s.take_changes()
        written += [key for key in entries if key.startswith('["roster"')]
    # Joined at 10:00 (last reading rounded up to 10:00), then moved to 11:00, 12:00 and 13:00.
    assert len(written) == 4


# -- where aggregates go: the history store's row, the API's answer -----------------------------


def aggregate_doc(**fields):
    s = WindowState(WindowConfig(sizes=(60,), grace=0, groupings=("device",), exclude_flagged=True))
    s.add(pt("a", 1.0, 1, flagged=True, interval=30))
    (agg,) = s.flush()
    doc = agg.to_dict()
    doc.update(fields)
    return doc


def test_a_history_row_holds_coverage_and_null_statistics_and_old_documents_still_fit():
    from cityhub.streams.history.rows import AGGREGATE_COLUMNS, aggregate_row

    doc = aggregate_doc()
    columns = dict(zip(AGGREGATE_COLUMNS, aggregate_row(orjson.dumps(doc)).values, strict=True))
    assert (columns["count"], columns["min"], columns["mean"]) == (0, None, None)
    assert (columns["readings"], columns["flagged"], columns["expected"]) == (1, 1, 2.0)
    assert columns["coverage"] == 0.5
    old = {k: v for k, v in doc.items() if k not in ("readings", "flagged", "expected", "coverage")}
    old.update(count=1, min=1.0, max=1.0, sum=1.0, mean=1.0, version=2)
    columns = dict(zip(AGGREGATE_COLUMNS, aggregate_row(orjson.dumps(old)).values, strict=True))
    assert (columns["readings"], columns["coverage"], columns["mean"]) == (None, None, 1.0)
    assert errors("aggregate", old) == []


def test_a_history_row_refuses_missing_statistics_when_something_was_counted():
    import pytest

    from cityhub.schemas.errors import SchemaMismatch
    from cityhub.streams.history.rows import aggregate_row

    with pytest.raises(SchemaMismatch):
        aggregate_row(orjson.dumps(aggregate_doc(count=1)))


def test_the_api_answers_old_windows_with_every_reading_counted_and_no_coverage():
    from cityhub.streams.api.aggregates import _out

    old = aggregate_doc(count=3, min=1.0, max=2.0, sum=4.5, mean=1.5, version=2)
    for name in ("readings", "flagged", "expected", "coverage"):
        del old[name]
    out = _out(old)
    assert (out["readings"], out["flagged"], out["expected"], out["coverage"]) == (3, 0, None, None)
    new = _out(aggregate_doc())
    assert (new["readings"], new["flagged"], new["count"], new["mean"]) == (1, 1, 0, None)


def test_a_device_silent_for_longer_than_the_roster_period_is_forgotten_and_its_entry_deleted():
    config = WindowConfig(sizes=(60,), grace=0, groupings=("area",), roster_seconds=600)
    s = WindowState(config)
    s.add(pt("a", 1.0, 0, device="quiet", area="north", interval=60))
    s.add(pt("b", 1.0, 1, device="busy", area="north", interval=60))
    s.take_changes()
    for minute in range(1, 30):  # busy goes on for half an hour, quiet says nothing
        s.add(pt(f"b{minute}", 1.0, minute * 60, device="busy", area="north", interval=60))
    _, entries = s.take_changes()
    (roster,) = [value for key, value in entries.items() if key.startswith('["roster"')]
    assert [device for device, *_ in roster[0][-1]] == ["busy"]
    s.advance(T0 / US + 2 * 3600)  # and then busy too
    _, entries = s.take_changes()
    assert [value for key, value in entries.items() if key.startswith('["roster"')] == [None]
    assert "roster" not in orjson.dumps(s.to_json()).decode()
