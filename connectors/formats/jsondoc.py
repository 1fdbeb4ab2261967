"""Strict reading of JSON messages: typed field access whose errors name the field path.

Every ingest format reads network-server JSON the same way: liberal about absent optional
fields and unknown extra fields, strict about the types of the fields it uses. A wrong type
raises ``SchemaMismatch`` with the path and what was expected, e.g.
``uplink_message.f_port: expected an integer, got 'abc'``.
"""

from __future__ import annotations

import binascii
import math
import re
from datetime import datetime
from typing import Any, Final

import orjson

from cityhub.schemas.errors import InvalidTimestamp, MalformedJSON, SchemaMismatch
from cityhub.schemas.timefmt import (
    LATEST_SECONDS,
    RANGE,
    bounded_repr,
    epoch_to_rfc3339,
    parse_rfc3339,
    rfc3339_from_datetime,
)
from cityhub.schemas.timefmt import shown as shown_time

_HEX: Final = frozenset("0123456789abcdefABCDEF")
_SHOWN: Final = 40
# Epoch seconds above this are taken to be milliseconds (1e11 s is in the year 5138).
_MILLIS_ABOVE: Final = 1e11
_EPOCH_EXPECTED: Final = f"seconds (or, above 1e11, milliseconds) since the epoch of a time {RANGE}"


def shown(value: Any) -> str:
    """A short repr of a bad value for an error message (never the whole hostile blob)."""
    text = bounded_repr(value)  # repr of a value nested 1 000 deep raised RecursionError
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def mismatch(path: str, expected: str, value: Any) -> SchemaMismatch:
    """The ``SchemaMismatch`` for ``path`` holding ``value`` where ``expected`` was wanted."""
    return SchemaMismatch(f"{path}: expected {expected}, got {shown(value)}")


def load_json(payload: bytes, what: str) -> Any:
    """Parse ``payload``; raises ``MalformedJSON`` (invalid JSON or UTF-8) naming ``what``."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"{what} is not valid JSON: {exc}") from None


def load_object(payload: bytes, what: str) -> dict[str, Any]:
    """Parse ``payload`` as a JSON object; ``MalformedJSON`` or ``SchemaMismatch`` otherwise."""
    doc = load_json(payload, what)
    if type(doc) is not dict:
        raise SchemaMismatch(f"{what}: expected a JSON object, got {type(doc).__name__}")
    return doc


def opt_object(doc: dict[str, Any], key: str, path: str) -> dict[str, Any] | None:
    """``doc[key]`` if it is an object, None if absent or null; ``SchemaMismatch`` otherwise."""
    value = doc.get(key)
    if value is None or type(value) is dict:
        return value
    raise mismatch(path, "an object", value)


def opt_list(doc: dict[str, Any], key: str, path: str) -> list[Any]:
    """``doc[key]`` if it is an array, ``[]`` if absent or null; ``SchemaMismatch`` otherwise."""
    value = doc.get(key)
    if value is None:
        return []
    if type(value) is list:
        return value
    raise mismatch(path, "an array", value)


def opt_str(doc: dict[str, Any], key: str, path: str) -> str | None:
    """``doc[key]`` if a non-empty string, None if absent, null or empty."""
    value = doc.get(key)
    if value is None or value == "":
        return None
    if type(value) is str:
        return value
    raise mismatch(path, "a string", value)


def opt_int(doc: dict[str, Any], key: str, path: str, lo: int, hi: int) -> int | None:
    """``doc[key]`` if an integer in ``lo..hi``, None if absent or null."""
    value = doc.get(key)
    if value is None:
        return None
    if type(value) is not int:
        raise mismatch(path, "an integer", value)
    if not lo <= value <= hi:
        raise mismatch(path, f"an integer in {lo}..{hi}", value)
    return value


def opt_number(doc: dict[str, Any], key: str, path: str) -> float | None:
    """``doc[key]`` if a finite number, None if absent or null (booleans are not numbers)."""
    value = doc.get(key)
    if value is None:
        return None
    kind = type(value)
    if kind is int:
        return float(value)
    if kind is float and math.isfinite(value):
        return value  # type: ignore[no-any-return]
    raise mismatch(path, "a number", value)


def opt_eui(doc: dict[str, Any], key: str, path: str) -> str | None:
    """``doc[key]`` as a lower-case 16-digit hex EUI, None if absent or empty."""
    value = opt_str(doc, key, path)
    if value is None:
        return None
    if len(value) != 16 or not _HEX.issuperset(value):
        raise mismatch(path, "an EUI of 16 hex digits", value)
    return value.lower()


def opt_dev_addr(doc: dict[str, Any], key: str, path: str) -> str | None:
    """``doc[key]`` as a lower-case 8-digit hex LoRaWAN DevAddr, None if absent or empty."""
    value = opt_str(doc, key, path)
    if value is None:
        return None
    if len(value) != 8 or not _HEX.issuperset(value):
        raise mismatch(path, "a DevAddr of 8 hex digits", value)
    return value.lower()


def opt_base64(doc: dict[str, Any], key: str, path: str) -> bytes | None:
    """``doc[key]`` decoded from base64, None if absent or empty."""
    value = opt_str(doc, key, path)
    if value is None:
        return None
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise mismatch(path, "base64", value) from None


_CANONICAL_UTC: Final = re.compile(
    r"(?:19[7-9][0-9]|20[0-9][0-9])-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.([0-9]+))?"
    r"(?:Z|\+00:00)"
)
"""What network servers send: UTC with up to nanoseconds, in a year of the accepted range
(1970-2099; a ``Z`` time's year is its UTC year). ``[0-9]``: ASCII digits only."""


def canonical_time(text: str, path: str) -> str:
    """An RFC 3339 timestamp as cityhub writes them (UTC, milliseconds, ``Z``).

    Raises ``InvalidTimestamp`` (a ``SchemaMismatch``) naming ``path`` for anything that
    :func:`cityhub.schemas.timefmt.parse_rfc3339` refuses: another format, a non-ASCII digit,
    an instant outside 1970-01-01T00:00:00Z up to 2100. The common case, UTC in a year of the
    range, is reformatted by slicing, with the C parser checking the calendar only.
    """
    match = _CANONICAL_UTC.fullmatch(text)
    if match is not None:
        try:
            datetime.fromisoformat(text[:19])  # February 30, month 13, hour 24, second 60
        except ValueError:
            pass  # parse_rfc3339 below says what is wrong
        else:
            fraction = match.group(1)
            millis = fraction[:3].ljust(3, "0") if fraction else "000"
            return f"{text[:19]}.{millis}Z"
    try:
        return rfc3339_from_datetime(parse_rfc3339(text))
    except InvalidTimestamp as exc:
        raise exc.at(path) from None


def opt_time(doc: dict[str, Any], key: str, path: str) -> str | None:
    """``doc[key]`` as a canonical RFC 3339 string, None if absent or empty; a value that is no
    string is a ``SchemaMismatch``, one that is no time an ``InvalidTimestamp``."""
    value = opt_str(doc, key, path)
    return None if value is None else canonical_time(value, path)


def epoch_time(value: float, path: str) -> str:
    """Seconds (or, above 1e11, milliseconds) since the epoch as canonical RFC 3339.

    Raises ``InvalidTimestamp`` naming ``path`` for NaN, infinities, negatives and anything at
    or after 2100-01-01T00:00:00Z (in seconds, or in milliseconds above 1e11); ints of any size
    are compared before any conversion, so none overflows."""
    is_millis = _MILLIS_ABOVE < value < LATEST_SECONDS * 1000  # False for NaN
    try:
        return epoch_to_rfc3339(value / 1000 if is_millis else value)
    except InvalidTimestamp:
        why = f"expected {_EPOCH_EXPECTED}"
        raise InvalidTimestamp(f"{path}: {why}, got {shown_time(value)}", why=why) from None
