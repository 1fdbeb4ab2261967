"""The one gate for times from outside (``cityhub.schemas.timefmt``): every string either parses
to an aware UTC instant inside [1970, 2100) that round-trips through the canonical formatter,
or raises InvalidTimestamp (a schema mismatch and a ValueError) with a bounded detail; never
anything else. The same for epoch numbers. Checked with hypothesis over arbitrary text, near-valid
timestamps (mutated, Unicode digits, calendar and range edges) against an independent oracle."""

from __future__ import annotations

import calendar
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from cityhub.connectors.formats.jsondoc import canonical_time, epoch_time
from cityhub.schemas.errors import InvalidTimestamp, MessageError, Reason, SchemaMismatch
from cityhub.schemas.timefmt import (
    EARLIEST,
    LATEST,
    LATEST_SECONDS,
    datetime_from_epoch,
    epoch_to_rfc3339,
    parse_rfc3339,
    rfc3339,
    rfc3339_from_datetime,
    shown,
)

DATE_TIME = Draft202012Validator.FORMAT_CHECKER
MAX_DETAIL = 400
"""No detail grows with the input: a 64 KiB value is shown cut short."""

# Digits that str.isdigit() or int() take and RFC 3339 does not.
FOREIGN_DIGITS = "²³¹٠١٢٣٤٥٦٧٨٩۰۱۲०१२০১൦౧๑໒༣၄០᠑᧐᭒᮳᱄꘠꣐０１２３４５６７８９𝟎𝟏𝟐𝟘𝟙"


def assert_refused(exc: InvalidTimestamp, *, prefix: str = "") -> None:
    assert exc.detail.startswith(prefix)
    assert isinstance(exc, SchemaMismatch)
    assert isinstance(exc, ValueError)
    assert exc.reason is Reason.SCHEMA_MISMATCH
    assert exc.detail.startswith("expected") or ": expected" in exc.detail
    assert len(exc.detail) <= MAX_DETAIL
    assert len(exc.why) <= MAX_DETAIL


def check_string(text: str) -> datetime | None:
    """The property: a parse inside the range that round-trips, or InvalidTimestamp. canonical_time
    (the formats' hot path) must agree with the parser exactly."""
    try:
        dt = parse_rfc3339(text)
    except InvalidTimestamp as exc:
        assert_refused(exc)
        with pytest.raises(InvalidTimestamp) as info:
            canonical_time(text, "uplink_message.received_at")
        assert info.value.detail.startswith("uplink_message.received_at: ")
        assert len(info.value.detail) <= MAX_DETAIL + 40
        return None
    assert dt.tzinfo is UTC
    assert EARLIEST <= dt < LATEST
    formatted = rfc3339_from_datetime(dt)
    assert DATE_TIME.conforms(formatted, "date-time"), formatted
    assert formatted.endswith("Z")
    assert len(formatted) == 24
    assert parse_rfc3339(formatted) == dt.replace(microsecond=dt.microsecond // 1000 * 1000)
    assert canonical_time(text, "t") == formatted
    return dt


# --- an independent oracle: what an RFC 3339 string means, by integer arithmetic -----------------


def oracle(
    year: int,
    month: int,
    day: int,
    hour: int,
    minute: int,
    second: int,
    micro: int,
    offset_minutes: int,
) -> datetime | None:
    """The UTC instant these fields denote, None if RFC 3339 (as cityhub takes it) has none:
    a date of the calendar, hour 00-23, minute and second 00-59 (no leap second), offset within
    ±23:59, the instant inside [1970, 2100)."""
    if not (1 <= year <= 9999 and 1 <= month <= 12):
        return None
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    if not (hour <= 23 and minute <= 59 and second <= 59 and abs(offset_minutes) < 24 * 60):
        return None
    days = (datetime(year, month, day) - datetime(1970, 1, 1)).days
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_minutes * 60
    if not 0 <= seconds < LATEST_SECONDS:
        return None
    return EARLIEST + timedelta(seconds=seconds, microseconds=micro)


EDGE_YEARS = st.sampled_from([0, 1, 1969, 1970, 1999, 2000, 2024, 2099, 2100, 9999])


@st.composite
def fields(draw: st.DrawFn) -> dict[str, Any]:
    """Fields of a timestamp around every edge: year 0000/0001/9999, months 0 and 13, day 0 and
    32 (Feb 29 of common years among them), hour 24, second 60, offsets up to ±23:59 and past."""
    year = draw(st.one_of(EDGE_YEARS, st.integers(0, 9999)))
    month = draw(st.one_of(st.sampled_from([0, 1, 2, 12, 13]), st.integers(1, 12)))
    day = draw(st.one_of(st.sampled_from([0, 1, 28, 29, 30, 31, 32]), st.integers(1, 28)))
    hour = draw(st.one_of(st.sampled_from([0, 23, 24]), st.integers(0, 23)))
    minute = draw(st.one_of(st.sampled_from([0, 59, 60]), st.integers(0, 59)))
    second = draw(st.one_of(st.sampled_from([0, 59, 60]), st.integers(0, 59)))
    fraction = draw(
        st.one_of(
            st.just(""),
            st.text("0123456789", min_size=1, max_size=12),
            st.integers(1, 5000).map(lambda n: "9" * n),  # absurd fractions
        )
    )
    zone = draw(
        st.one_of(
            st.sampled_from(["Z", "z", "+00:00", "-00:00", "+23:59", "-23:59", "+24:00", "+01:60"]),
            st.tuples(st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)).map(
                lambda t: f"{t[0]}{t[1]:02d}:{t[2]:02d}"
            ),
        )
    )
    return {
        "year": year,
        "month": month,
        "day": day,
        "hour": hour,
        "minute": minute,
        "second": second,
        "fraction": fraction,
        "zone": zone,
        "t": draw(st.sampled_from("Tt")),
    }


def text_of(f: dict[str, Any]) -> str:
    frac = f".{f['fraction']}" if f["fraction"] else ""
    return (
        f"{f['year']:04d}-{f['month']:02d}-{f['day']:02d}{f['t']}"
        f"{f['hour']:02d}:{f['minute']:02d}:{f['second']:02d}{frac}{f['zone']}"
    )


def offset_of(zone: str) -> int | None:
    """Minutes east of UTC, None for an offset RFC 3339 does not allow."""
    if zone in "Zz":
        return 0
    hours, minutes = int(zone[1:3]), int(zone[4:6])
    if hours > 23 or minutes > 59:
        return None
    return (hours * 60 + minutes) * (1 if zone[0] == "+" else -1)


@settings(max_examples=500, deadline=None)
@given(fields())
@example(
    {"year": 1, "month": 1, "day": 1, "hour": 0, "minute": 0, "second": 0, "fraction": ""}
    | {"zone": "+01:00", "t": "T"}
)
@example(
    {"year": 9999, "month": 12, "day": 31, "hour": 23, "minute": 59, "second": 59}
    | {"fraction": "999", "zone": "-01:00", "t": "T"}
)
@example(
    {"year": 2023, "month": 2, "day": 29, "hour": 0, "minute": 0, "second": 0, "fraction": ""}
    | {"zone": "Z", "t": "T"}
)
@example(
    {"year": 2016, "month": 12, "day": 31, "hour": 23, "minute": 59, "second": 60}
    | {"fraction": "", "zone": "Z", "t": "T"}
)
@example(
    {"year": 1969, "month": 12, "day": 31, "hour": 23, "minute": 0, "second": 0, "fraction": ""}
    | {"zone": "-01:00", "t": "T"}
)
def test_well_formed_fields_parse_exactly_as_the_oracle_says(f: dict[str, Any]) -> None:
    text = text_of(f)
    offset = offset_of(f["zone"])
    micro = int(f["fraction"][:6].ljust(6, "0")) if f["fraction"] else 0
    expected = (
        None
        if offset is None
        else oracle(
            f["year"], f["month"], f["day"], f["hour"], f["minute"], f["second"], micro, offset
        )
    )
    got = check_string(text)
    assert got == expected, text[:80]


@st.composite
def near_valid(draw: st.DrawFn) -> str:
    """A timestamp of ``fields`` with mutations: characters replaced by others (Unicode digits
    among them), inserted or deleted; every digit fullwidth; a huge year."""
    text = text_of(draw(fields()))
    alphabet = st.one_of(
        st.sampled_from(FOREIGN_DIGITS),
        st.sampled_from("0123456789-:.TtZz+ ,_\x00\n"),
        st.characters(),
    )
    how = draw(st.sampled_from(["replace", "insert", "delete", "fullwidth", "year", "none"]))
    if how == "fullwidth":
        return text.translate({0x30 + d: 0xFF10 + d for d in range(10)})
    if how == "year":
        return draw(st.sampled_from(["10000", "99999", "+2024", "-2024", "0000"])) + text[4:]
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, max(len(text) - 1, 0)))
        if how == "replace" and text:
            text = text[:i] + draw(alphabet) + text[i + 1 :]
        elif how == "insert":
            text = text[:i] + draw(alphabet) + text[i:]
        elif how == "delete" and text:
            text = text[:i] + text[i + 1 :]
    return text


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), near_valid()))
@example("2026-11-29T01:00:00.123456789Z")
@example("2026-11-29T01:00:00.5+01:00")
@example("\uff12\uff10\uff12\uff16-11-29T01:00:00Z")
@example("2026-11-29T01:00:0²Z")
@example("2026-11-29T01:00:00." + "9" * 65_536 + "Z")
@example("2026-11-29T01:00:00Z" + "x" * 65_536)
@example("1970-01-01T00:00:00Z")
@example("2099-12-31T23:59:59.999999999Z")
@example("2100-01-01T00:00:00Z")
@example("1970-01-01T01:00:00+01:00")
@example("1970-01-01T00:59:59.999+01:00")
def test_any_string_parses_inside_the_range_and_round_trips_or_is_refused(text: str) -> None:
    check_string(text)


def test_the_date_time_format_checker_is_active() -> None:
    # Without rfc3339-validator the checker would pass anything and the property would be hollow.
    assert not DATE_TIME.conforms("2026-11-29 01:00", "date-time")
    assert DATE_TIME.conforms("2026-11-29T01:00:00.000Z", "date-time")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-29T01:00:00Z", "2026-11-29T01:00:00.000Z"),
        ("2026-11-29t01:00:00z", "2026-11-29T01:00:00.000Z"),
        ("2026-11-29T02:00:00.5+01:00", "2026-11-29T01:00:00.500Z"),
        ("2026-11-29T01:00:00.123456789-00:00", "2026-11-29T01:00:00.123Z"),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"),
        ("1969-12-31T23:00:00-01:00", "1970-01-01T00:00:00.000Z"),
        ("2000-01-01T00:00:00Z", "2000-01-01T00:00:00.000Z"),  # a reset clock: still a time
        ("2099-12-31T23:59:59.9999Z", "2099-12-31T23:59:59.999Z"),
        ("2100-01-01T00:59:59.999+01:00", "2099-12-31T23:59:59.999Z"),
    ],
)
def test_times_inside_the_range(text: str, expected: str) -> None:
    assert rfc3339_from_datetime(parse_rfc3339(text)) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0001-01-01T00:00:00+01:00", "expected a time from 1970-01-01T00:00:00Z up to"),
        ("9999-12-31T23:59:59-01:00", "outside the times cityhub takes"),
        ("9999-12-31T23:59:59Z", "outside the times cityhub takes"),
        ("2100-01-01T00:00:00Z", "outside the times cityhub takes"),
        ("1969-12-31T23:59:59.999Z", "outside the times cityhub takes"),
        ("1970-01-01T00:30:00+01:00", "outside the times cityhub takes"),
        ("0000-01-01T00:00:00Z", "there is no year 0000"),
        ("2023-02-29T00:00:00Z", "a day of that month"),
        ("2016-12-31T23:59:60Z", "a leap second"),
        ("2026-11-29T24:00:00Z", "hour 00-23"),
        ("2026-11-29T01:00:00+24:00", "ASCII digits only"),
        ("2026-11-29T01:00:00+01:60", "ASCII digits only"),
        ("2026-11-29T01:00:00", "then Z or an offset"),  # no offset: not an instant
        ("2026-11-29", "expected an RFC 3339 timestamp"),
        ("2026-11-29 01:00:00Z", "expected an RFC 3339 timestamp"),
        ("20261129T010000Z", "expected an RFC 3339 timestamp"),
        ("2026-11-29T01:00Z", "expected an RFC 3339 timestamp"),
        ("2026-11-29T01:00:00.Z", "expected an RFC 3339 timestamp"),
        ("2026-11-29T01:00:00,5Z", "expected an RFC 3339 timestamp"),
        ("2026-11-29T01:00:00+0100", "expected an RFC 3339 timestamp"),
        (" 2026-11-29T01:00:00Z", "expected an RFC 3339 timestamp"),
        ("\uff12\uff10\uff12\uff16-11-29T01:00:00Z", "\\uff12\\uff10\\uff12\\uff16-11-29"),
        ("٢٠٢٦-11-29T01:00:00Z", "\\u0662\\u0660"),
        ("2026-11-29T01:00:0²Z", "\\xb2"),
        ("\uff12\uff10\uff12\uff16-11-29T01:00:00Z", "ASCII digits only"),
        ("2026-11-29T01:00:0²Z", "ASCII digits only"),
        ("2026-11-\u0662\u0669T01:00:00Z", "ASCII digits only"),
        ("10000-01-01T00:00:00Z", "expected an RFC 3339 timestamp"),
    ],
)
def test_refusals_say_what_was_given_and_what_is_expected(text: str, says: str) -> None:
    with pytest.raises(InvalidTimestamp) as info:
        parse_rfc3339(text)
    assert_refused(info.value)
    assert says in info.value.detail
    assert shown(text) not in info.value.why  # for answers that must not echo input


def test_a_huge_value_is_shown_cut_short() -> None:
    text = "9" * 65_536
    with pytest.raises(InvalidTimestamp) as info:
        parse_rfc3339(text)
    assert_refused(info.value)
    assert "(65536 characters)" in info.value.detail
    assert len(shown("\uff12" * 60)) < 120
    assert shown(2**5000).startswith("an integer of 5001 bits")  # repr() would raise
    assert shown(1e300) == "1e+300"


@pytest.mark.parametrize("value", [None, 1714557600, 17.5, b"2026-11-29T01:00:00Z", ["x"]])
def test_only_strings_are_parsed(value: Any) -> None:
    with pytest.raises(InvalidTimestamp) as info:
        parse_rfc3339(value)
    assert_refused(info.value)


def test_the_error_is_a_schema_mismatch_and_a_value_error_that_names_its_field() -> None:
    err = InvalidTimestamp("expected x, got 'y'", why="expected x")
    assert isinstance(err, MessageError)
    assert isinstance(err, ValueError)
    placed = err.at("uplink_message.received_at")
    assert placed.detail == "uplink_message.received_at: expected x, got 'y'"
    assert placed.why == "expected x"
    assert placed.reason is Reason.SCHEMA_MISMATCH


# --- epoch numbers -------------------------------------------------------------------------------

EPOCH_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e12, max_value=5e12),
    st.integers(),
    st.integers(min_value=2**63 - 10, max_value=2**70),
    st.integers(min_value=-(2**70), max_value=-1),
    st.sampled_from([0, -0.0, LATEST_SECONDS, LATEST_SECONDS - 1e-7, 1e11, 1e11 + 1]),
    st.sampled_from([LATEST_SECONDS * 1000, LATEST_SECONDS * 1000 - 0.4, 2**64 - 1]),
)


def check_epoch_text(text: str, instant: datetime) -> None:
    assert DATE_TIME.conforms(text, "date-time"), text
    parsed = parse_rfc3339(text)
    assert EARLIEST <= parsed < LATEST
    assert parsed == instant.replace(microsecond=instant.microsecond // 1000 * 1000)


@settings(max_examples=500, deadline=None)
@given(EPOCH_NUMBERS)
def test_any_epoch_number_is_a_time_inside_the_range_or_refused(value: float) -> None:
    try:
        instant = datetime_from_epoch(value)
    except InvalidTimestamp as exc:
        assert_refused(exc)
        assert not (isinstance(value, float) and math.isfinite(value) and 0 <= value < 4e9)
    else:
        assert EARLIEST <= instant < LATEST
        assert abs(instant.timestamp() - value) < 1e-6 * max(1.0, abs(value) / 1e9) + 1e-6
        check_epoch_text(epoch_to_rfc3339(value), instant)
    # The formats' reading: seconds, or milliseconds above 1e11.
    try:
        text = epoch_time(value, "ts")
    except InvalidTimestamp as exc:
        assert_refused(exc, prefix="ts: expected seconds (or, above 1e11, milliseconds)")
    else:
        seconds = value / 1000 if value > 1e11 else value
        check_epoch_text(text, datetime_from_epoch(seconds))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1714557600, "2024-05-01T10:00:00.000Z"),
        (1714557600123, "2024-05-01T10:00:00.123Z"),
        (LATEST_SECONDS - 0.001, "2099-12-31T23:59:59.999Z"),
        (LATEST_SECONDS * 1000 - 1, "2099-12-31T23:59:59.999Z"),
    ],
)
def test_epoch_numbers_inside_the_range(value: float, expected: str) -> None:
    assert epoch_time(value, "ts") == expected


@pytest.mark.parametrize(
    "value",
    [
        *(-1, -0.001, LATEST_SECONDS, 1e11 - 1, LATEST_SECONDS * 1000),
        *(2**63, 2**64 - 1, 2**200, math.nan, math.inf, -math.inf, 1e308, True),
    ],
)
def test_epoch_numbers_outside_the_range_are_refused(value: Any) -> None:
    with pytest.raises(InvalidTimestamp) as info:
        epoch_time(value, "ts")
    assert_refused(info.value)
    assert info.value.detail.startswith("ts: expected seconds")


def test_a_float_rounded_up_to_the_end_is_refused() -> None:
    # The float just below the end rounds to the microsecond 2100-01-01T00:00:00: outside.
    below = math.nextafter(LATEST_SECONDS, 0)
    assert below < LATEST_SECONDS
    with pytest.raises(InvalidTimestamp):
        datetime_from_epoch(below)


def test_formatting_never_raises_inside_the_range() -> None:
    for instant in (EARLIEST, LATEST - timedelta(microseconds=1)):
        assert parse_rfc3339(rfc3339_from_datetime(instant)) <= instant
        assert rfc3339(instant.timestamp())
    naive = datetime(2026, 11, 29, 1)
    assert rfc3339_from_datetime(naive) == "2026-11-29T01:00:00.000Z"
