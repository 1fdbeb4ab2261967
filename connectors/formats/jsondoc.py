"""Strict reading of JSON messages: typed field access whose errors name the field path.

Every ingest format reads network-server JSON the same way: liberal about absent optional
fields and unknown extra fields, strict about the types of the fields it uses. A wrong type
raises ``SchemaMismatch`` with the path and what was expected, e.g.
``uplink_message.f_port: expected an integer, got 'abc'``.
"""

from __future__ import annotations

import binascii
import math
from datetime import datetime
from typing import Any, Final

import orjson

from cityhub.schemas.errors import MalformedJSON, SchemaMismatch
from cityhub.schemas.timefmt import parse_rfc3339, rfc3339, rfc3339_from_datetime

_HEX: Final = frozenset("0123456789abcdefABCDEF")
_SHOWN: Final = 40
# Epoch seconds above this are taken to be milliseconds (1e11 s is in the year 5138).
_MILLIS_ABOVE: Final = 1e11
_MAX_EPOCH: Final = 253402300799.0  # 9999-12-31T23:59:59Z


def shown(value: Any) -> str:
    """A short repr of a bad value for an error message (never the whole hostile blob)."""
    text = repr(value)
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


def opt_base64(doc: dict[str, Any], key: str, path: str) -> bytes | None:
    """``doc[key]`` decoded from base64, None if absent or empty."""
    value = opt_str(doc, key, path)
    if value is None:
        return None
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise mismatch(path, "base64", value) from None


def canonical_time(text: str, path: str) -> str:
    """An RFC 3339 timestamp as cityhub writes them (UTC, milliseconds, ``Z``).

    Network servers send UTC with up to nanoseconds; that common case is reformatted without
    building a datetime twice. Raises ``SchemaMismatch`` for anything that is not RFC 3339.
    """
    n = len(text)
    if (
        n >= 20
        and text[10] == "T"
        and text[19] in ".Z+"
        and text[4] == text[7] == "-"
        and text[13] == text[16] == ":"
    ):
        # ``YYYY-MM-DDTHH:MM:SS[.fff...](Z|+00:00)``: validate the fixed part, slice the rest.
        if text[-1] == "Z":
            end = n - 1
        elif text.endswith("+00:00"):
            end = n - 6
        else:
            end = -1
        if end >= 19 and (end == 19 or (text[19] == "." and text[20:end].isdigit())):
            try:
                datetime.fromisoformat(text[:19])
            except ValueError:
                raise mismatch(path, "an RFC 3339 timestamp", text) from None
            millis = text[20:end][:3].ljust(3, "0") if end > 19 else "000"
            return f"{text[:19]}.{millis}Z"
    try:
        return rfc3339_from_datetime(parse_rfc3339(text))
    except ValueError:
        raise mismatch(path, "an RFC 3339 timestamp", text) from None


def opt_time(doc: dict[str, Any], key: str, path: str) -> str | None:
    """``doc[key]`` as a canonical RFC 3339 string, None if absent or empty."""
    value = opt_str(doc, key, path)
    return None if value is None else canonical_time(value, path)


def epoch_time(value: float, path: str) -> str:
    """Seconds (or, above 1e11, milliseconds) since the epoch as canonical RFC 3339."""
    if not math.isfinite(value):
        raise mismatch(path, "a finite time", value)
    if value > _MILLIS_ABOVE:
        value /= 1000.0
    if not 0 <= value <= _MAX_EPOCH:
        raise mismatch(path, "a time between 1970 and 9999", value)
    return rfc3339(value)
