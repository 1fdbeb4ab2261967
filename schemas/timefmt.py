"""RFC 3339 timestamps in UTC, the only time format on cityhub's topics, and the one gate that
every time from outside passes through.

Times from outside (payloads, envelopes, API parameters, epoch numbers) are read by
:func:`parse_rfc3339` and :func:`epoch_to_rfc3339`, which take exactly

* RFC 3339 date-times, ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)``, with ASCII digits
  only (``str.isdigit`` and ``int`` also take other Unicode digits, such as ``²``, ``٣`` or
  the fullwidth two ``\\uff12``: never trust them), any number of fractional digits (cut to
  microseconds), ``T``/``t``, ``Z``/``z`` or a numeric offset (hours 00-23, minutes 00-59);
  no leap second (second ``60``: Python's datetime cannot hold it), no other ISO 8601 form;
* instants from :data:`EARLIEST` (1970-01-01T00:00:00Z) up to, not including, :data:`LATEST`
  (2100-01-01T00:00:00Z).

Anything else raises :class:`~cityhub.schemas.errors.InvalidTimestamp` (a ``SchemaMismatch``,
and a ``ValueError``), whose detail shows the value cut short and says what is expected.

Why this range: inside it nothing that cityhub does with a time can overflow. Python's datetime
ends at year 9999, so year 0001 with a positive offset, 9999-12-31T23:59:59 with a negative one,
or a window whose end passes 9999 would raise where nobody expects it; epoch seconds, window
bounds (at most :data:`~cityhub.schemas.aggregate.MAX_WINDOW_SECONDS` past an observation), the
offset arithmetic of a time zone and Kafka's millisecond timestamps all stay far from any limit
between 1970 and 2100. No sensor measures before 1970, and a device whose clock was reset reports
1970 or 2000, which stay valid (they are wrong, but they are times; the aggregator's lateness
rules deal with them). An observation after 2100 is a broken clock.

Formatting (:func:`rfc3339`, :func:`rfc3339_from_datetime`) never raises for an instant inside
the range; it writes UTC with milliseconds and ``Z``, the form every topic carries.
"""

from __future__ import annotations

import math
import re
import reprlib
from datetime import UTC, datetime
from typing import Final

from cityhub.schemas.errors import InvalidTimestamp

EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
"""The first instant cityhub takes (inclusive): the Unix epoch."""
LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)
"""The end of the instants cityhub takes (exclusive). See the module docstring for why."""
EARLIEST_SECONDS: Final = 0
LATEST_SECONDS: Final = 4_102_444_800
""":data:`LATEST` in seconds since the epoch."""
EARLIEST_US: Final = 0
LATEST_US: Final = LATEST_SECONDS * 1_000_000
""":data:`LATEST` in microseconds since the epoch."""

RANGE: Final = "from 1970-01-01T00:00:00Z up to (not including) 2100-01-01T00:00:00Z"
FORM: Final = "an RFC 3339 timestamp"

# ``[0-9]``, never ``\d``: in a str pattern ``\d`` matches every Unicode digit. Linear: no
# nested repetition, so a hostile 64 KiB string costs one pass.
_RFC3339: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_FIRST_YEAR: Final = EARLIEST.year
_END_YEAR: Final = LATEST.year
_SHOWN: Final = 48
"""Characters of a refused value shown in an error (a hostile one may be 64 KiB long)."""


class _Bounded(reprlib.Repr):
    """``repr`` of a refused value, bounded in depth and width: a value parsed from outside may
    nest a thousand levels (``repr`` then raises RecursionError) or hold a megabyte."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = self.maxother = self.maxlong = _SHOWN
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 4

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 64:  # repr raises past 4 300 digits
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_BOUNDED: Final = _Bounded()


def bounded_repr(value: object) -> str:
    """``repr(value)`` cut to a few levels and items (``[[[...]]]``, ``[1, 2, 3, 4, ...]``);
    never an exception, whatever the value."""
    return _BOUNDED.repr(value)


def shown(value: object) -> str:
    """A short, printable form of a refused value for an error detail: ASCII escapes for any
    other character (so a fullwidth two shows as ``\\uff12``), cut to a few dozen characters
    with the full length said; never the whole hostile string, never an exception."""
    if isinstance(value, str):
        text = ascii(value[:_SHOWN])
        if len(value) <= _SHOWN and len(text) <= 2 * _SHOWN:
            return text
        # Cut: by length, or by escapes (ten characters each) that make a short string long.
        return f"{text[: 2 * _SHOWN]}... ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"  # repr would raise past 4300 digits
    text = bounded_repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _refuse(value: object, expected: str, note: str) -> InvalidTimestamp:
    """``expected ..., got <value> (note)``, the form of every field error of cityhub; ``why``
    without the value."""
    return InvalidTimestamp(
        f"expected {expected}, got {shown(value)} ({note})", why=f"expected {expected} ({note})"
    )


_SHAPE: Final = (
    "YYYY-MM-DDTHH:MM:SS, a fraction if any, then Z or an offset of hours 00-23 and minutes "
    "00-59, ASCII digits only; e.g. 2024-05-01T10:00:00.123Z or 2024-05-01T12:00:00+02:00"
)
_CALENDAR: Final = (
    "not a day and time of the calendar: month 01-12, a day of that month, hour 00-23, minute "
    "and second 00-59; there is no year 0000"
)
_LEAP: Final = "a leap second, second 60, which Python's datetime and so cityhub do not take"
_IN_RANGE: Final = f"a time {RANGE}"
_BEYOND: Final = "outside the times cityhub takes"
_EPOCH_EXPECTED: Final = f"seconds since the epoch of {_IN_RANGE}"
_LAST_SECOND: Final = LATEST_SECONDS - 1


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp from outside into an aware UTC datetime inside the range.

    Raises InvalidTimestamp for anything else (see the module docstring): a value that is not a
    string, another format, a non-ASCII digit, a date that the calendar does not have (February
    29 of a common year, month 13, hour 24, year 0000, second 60), an instant outside
    ``EARLIEST <= t < LATEST``. Never another exception.
    """
    if type(text) is not str:
        raise _refuse(text, FORM, f"a {type(text).__name__}, not a string")
    if _RFC3339.fullmatch(text) is None:
        raise _refuse(text, FORM, _SHAPE)
    try:
        # The C parser, now that the shape is known to be RFC 3339 (it takes ``t`` but not ``z``).
        dt = datetime.fromisoformat(text if text[-1] != "z" else text[:-1] + "Z")
    except ValueError:
        raise _refuse(text, FORM, _LEAP if text[17:19] == "60" else _CALENDAR) from None
    year = dt.year
    if dt.tzinfo is UTC:
        if not _FIRST_YEAR <= year < _END_YEAR:
            raise _refuse(text, _IN_RANGE, _BEYOND)
        return dt
    # Refuse far years before any offset arithmetic: 0001 with +01:00 or 9999 with -01:00 would
    # overflow datetime inside astimezone. One year each side leaves room for a day of offset.
    if not _FIRST_YEAR - 1 <= year <= _END_YEAR:
        raise _refuse(text, _IN_RANGE, _BEYOND)
    dt = dt.astimezone(UTC)
    if not EARLIEST <= dt < LATEST:
        raise _refuse(text, _IN_RANGE, _BEYOND)
    return dt


def datetime_from_epoch(seconds: float) -> datetime:
    """The aware UTC datetime of seconds since the epoch from outside (an ``int`` or a
    ``float``), rounded to microseconds; InvalidTimestamp unless it is a finite number inside
    the range (NaN, infinities, negatives, ints of any size: never another exception)."""
    kind = type(seconds)
    if kind is not int and kind is not float:  # a bool is no time
        raise _refuse(seconds, _EPOCH_EXPECTED, f"a {kind.__name__}, not a number")
    # Compared before any conversion: exact for ints of any size, which float() cannot take;
    # False for NaN.
    if not EARLIEST_SECONDS <= seconds < LATEST_SECONDS:
        finite = kind is int or math.isfinite(seconds)
        raise _refuse(seconds, _EPOCH_EXPECTED, _BEYOND if finite else "not a finite number")
    dt = datetime.fromtimestamp(seconds, UTC)
    if seconds > _LAST_SECOND and dt >= LATEST:  # a float a hair below the end, rounded up
        raise _refuse(seconds, _EPOCH_EXPECTED, _BEYOND)
    return dt


def epoch_to_rfc3339(seconds: float) -> str:
    """Seconds since the epoch from outside as canonical RFC 3339 (see
    :func:`datetime_from_epoch` for what is refused, with InvalidTimestamp)."""
    return _format(datetime_from_epoch(seconds))


def rfc3339(ts: float) -> str:
    """Format seconds since the epoch as RFC 3339 UTC with millisecond precision (``...Z``).

    For cityhub's own clock readings; never raises inside the range. Times from outside go
    through :func:`epoch_to_rfc3339`."""
    return _format(datetime.fromtimestamp(ts, UTC))


def rfc3339_from_datetime(dt: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC; a naive one is taken to be UTC already. Never
    raises for an instant inside the range."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    elif dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    return _format(dt)


def _format(dt: datetime) -> str:
    # isoformat cuts (does not round) to milliseconds: the text never moves past the instant.
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
