"""The pure quality checks: range, spike and flat line of one value against its series, and
the property the normaliser's restart-safety rests on (a replayed record gets the same flags)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cityhub.streams.quality.checks import (
    MIN_SPIKE_SECONDS,
    SERIES_POINTS,
    Limits,
    Series,
    check_value,
    is_series,
)

TEMPERATURE = Limits(low=-40, high=60, rate=0.05, flat=6 * 3600)


def run(limits: Limits, points: list[tuple[float, float]], series: Series | None = None):
    """Flags of each (at, value) in turn, and the series at the end."""
    out = []
    for at, value in points:
        flags, stored = check_value(limits, series, value, at)
        if stored is not None:
            series = stored
        out.append(flags)
    return out, series


def test_the_range_includes_its_bounds() -> None:
    for value, expected in [
        (-40.0, []),
        (60.0, []),
        (-40.1, ["out_of_range"]),
        (61, ["out_of_range"]),
    ]:
        assert check_value(Limits(low=-40, high=60), None, value, 0.0) == (expected, None)


def test_a_check_switched_off_flags_nothing() -> None:
    assert check_value(Limits(), None, -1e300, 0.0) == ([], None)
    assert run(Limits(high=5), [(0, 1), (60, 1e6)])[0] == [[], ["out_of_range"]]


def test_a_jump_faster_than_the_rate_is_a_spike_and_not_kept_as_reference() -> None:
    flags, _ = run(TEMPERATURE, [(0, 10.0), (600, 12.0), (900, 40.0), (1200, 12.5)])
    # 28 degC in 5 minutes is a spike; the next value is judged against 12.0, not 40.
    assert flags == [[], [], ["spike"], []]


def test_a_change_over_seconds_is_measured_over_at_least_a_minute() -> None:
    allowed = TEMPERATURE.rate * MIN_SPIKE_SECONDS  # 3 degC
    flags, _ = run(
        TEMPERATURE, [(0, 10.0), (1, 10.0 + allowed - 0.01), (2, 10.0 + 2 * allowed + 1)]
    )
    assert flags == [[], [], ["spike"]]


def test_a_value_stuck_longer_than_the_flat_line_time_is_flagged_until_it_moves() -> None:
    limits = Limits(flat=3600)
    points = [(t * 900.0, 7.0) for t in range(7)] + [(6300.0, 7.1), (7200.0, 7.1)]
    flags, _ = run(limits, points)
    # 7.0 since 0: 3600 s is not longer, 4500 s is.
    assert flags == [[], [], [], [], [], ["flat_line"], ["flat_line"], [], []]


def test_an_out_of_range_value_is_not_a_reference_either() -> None:
    flags, series = run(TEMPERATURE, [(0, 10.0), (60, -999.0), (120, 10.5)])
    assert flags == [[], ["out_of_range", "spike"], []]
    assert series is not None
    assert series[1::3] == [10.0, 10.5]


def test_the_series_keeps_the_newest_points_in_time_order() -> None:
    _, series = run(TEMPERATURE, [(t * 60.0, 10.0 + t * 0.1) for t in range(10)])
    assert series is not None
    assert is_series(series)
    assert series[0::3] == [360.0, 420.0, 480.0, 540.0]
    # a late value goes into its place, the oldest goes
    _, later = run(TEMPERATURE, [(450.0, 10.7)], series)
    assert later is not None
    assert later[0::3] == [420.0, 450.0, 480.0, 540.0]


def test_stored_shapes_are_recognised() -> None:
    assert is_series([1.0, 2.0, 1.0])
    assert not is_series([1.0, 2.0])
    assert not is_series("1,2,3")
    assert not is_series([1.0, True, 1.0])
    assert not is_series([0.0] * (3 * SERIES_POINTS + 3))


values = st.one_of(
    st.floats(-100, 200, allow_nan=False), st.sampled_from([5.0, 5.0, 5.0, -999.0, 1e9])
)
steps = st.lists(st.tuples(st.floats(1, 20_000), values), min_size=1, max_size=40)
limits = st.builds(
    Limits,
    low=st.sampled_from([None, -40.0]),
    high=st.sampled_from([None, 60.0]),
    rate=st.sampled_from([None, 0.01, 0.05, 1.0]),
    flat=st.sampled_from([None, 600.0, 7200.0]),
)


@settings(max_examples=300, deadline=None)
@given(limits=limits, steps=steps, replayed=st.integers(1, SERIES_POINTS - 1))
def test_a_replayed_tail_gets_the_same_flags_and_leaves_the_same_series(
    limits: Limits, steps: list[tuple[float, float]], replayed: int
) -> None:
    """A crash after the state was stored replays the last records of the batch against a
    series that already holds them: each gets the flags it got the first time."""
    at, points = 1_700_000_000.0, []
    for gap, value in steps:
        at += gap
        points.append((at, value))
    first, series = run(limits, points)
    again, series_again = run(limits, points[-replayed:], series)
    assert again == first[-replayed:]
    assert series_again == series
    if series is not None:
        assert is_series(series)


@settings(max_examples=200, deadline=None)
@given(steps=steps)
def test_flags_are_a_function_of_the_checks_that_are_on(steps: list[tuple[float, float]]) -> None:
    at, points = 0.0, []
    for gap, value in steps:
        at += gap
        points.append((at, value))
    flags, _ = run(Limits(low=-40, high=60), points)
    assert flags == [["out_of_range"] if not -40 <= v <= 60 else [] for _, v in points]
