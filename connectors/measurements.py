"""Decoded fields to Measurements: the one place that decides which values a message carried.

Input is whatever decoded a payload: a TTS ``decoded_payload``, a ChirpStack ``object``, the
Cayenne LPP decoder's output, a generic JSON object. The rules:

* Numbers and booleans are kept, except NaN and infinities; integers beyond 64 bits become
  floats (Kafka consumers and orjson cannot carry them as integers).
* Strings are kept when they are not empty and at most ``MAX_STRING_LENGTH`` characters long
  (a status word, not a blob).
* ``None`` is skipped.
* Nested objects are flattened with dotted field names: ``gps_8: {latitude: ..}`` gives the field
  ``gps_8.latitude``, whose quantity resolves through the catalogue to ``latitude``. Nesting
  deeper than ``MAX_DEPTH`` levels is skipped, so hostile input cannot exhaust the stack.
* An object of the shape ``{"value": <scalar>, "unit": "<symbol>"}`` is one value with an
  explicit unit, which wins over the catalogue's.
* A value under an empty key (``{"": 1}``, ``{"gps": {"": 1}}``) is skipped: it has no name
  to give its field and quantity.
* Lists are skipped: in decoder output they are raw byte arrays or sample series without
  times, neither of which makes a faithful observation.
* A catalogued field gets its canonical quantity, and its unit when the value is a number (a
  text such as ``"23.50"`` or a flag has none); any other keeps its field name as the quantity
  and has no unit.
* At most ``MAX_KEYS_WALKED`` keys (nested ones included) are looked at in one message.
* At most ``MAX_MEASUREMENTS`` values are taken from one message, and none under a field name
  (dotted path) longer than ``MAX_FIELD_NAME_LENGTH`` characters: the name becomes the
  quantity that aggregates, filters and topics carry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from cityhub.connectors.formats.base import (
    MAX_FIELD_NAME_LENGTH,
    MAX_MEASUREMENTS,
    MAX_UNIT_LENGTH,
    Measurement,
)
from cityhub.schemas.observation import Value
from cityhub.schemas.quantities import lookup

MAX_STRING_LENGTH: Final = 256
MAX_DEPTH: Final = 8
MAX_KEYS_WALKED: Final = 4096
"""Keys looked at in one message, nested ones included: a quarter MiB of empty objects nested
eight deep (37 000 keys, no value) took 66 ms to walk."""
_INT64_MIN: Final = -(1 << 63)
_UINT64_MAX: Final = (1 << 64) - 1
# 2**1023 < float max: anything with more bits would overflow float().
_FLOAT_BITS: Final = 1023
_NUMBERS: Final = (int, float)


def scalar_value(value: Any) -> Value | None:
    """``value`` as a measurement value, or None when it is not one (see the module rules)."""
    # Exact types (what JSON parsers produce): cheaper than isinstance chains, and they keep
    # bool apart from int.
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is bool:
        return value  # type: ignore[no-any-return]
    if kind is int:
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value  # type: ignore[no-any-return]
        return float(value) if value.bit_length() <= _FLOAT_BITS else None
    if kind is str:
        return value if 0 < len(value) <= MAX_STRING_LENGTH else None
    return None


def _with_unit(value: Mapping[str, Any]) -> tuple[Value, str | None] | None:
    """The value and unit of ``{"value": .., "unit": ..}``; None if it has another shape."""
    if "value" not in value or len(value) > 2 or (len(value) == 2 and "unit" not in value):
        return None
    scalar = scalar_value(value["value"])
    if scalar is None:
        return None
    unit = value.get("unit")
    if type(unit) is not str or not 0 < len(unit) <= MAX_UNIT_LENGTH:
        unit = None
    return scalar, unit


def _collect(
    fields: Mapping[str, Any],
    prefix: str,
    depth: int,
    observed_at: str | None,
    out: list[Measurement],
    budget: list[int],
) -> None:
    for key, raw in fields.items():
        budget[0] -= 1
        if len(out) >= MAX_MEASUREMENTS or budget[0] < 0:
            return
        if type(key) is not str or not key:
            continue  # an empty key names nothing: no field, no quantity
        name = prefix + key if prefix else key
        if len(name) > MAX_FIELD_NAME_LENGTH:
            continue
        value = scalar_value(raw)
        unit: str | None = None
        if value is None:
            if not isinstance(raw, Mapping):
                continue
            explicit = _with_unit(raw)
            if explicit is None:
                if depth < MAX_DEPTH:
                    _collect(raw, name + ".", depth + 1, observed_at, out, budget)
                continue
            value, unit = explicit
        found = lookup(name)
        if found is None:
            out.append(Measurement(name, name, value, unit, observed_at))
        elif unit is None and type(value) in _NUMBERS:
            out.append(Measurement(name, found[0], value, found[1], observed_at))
        else:
            # A catalogued field that holds text ("23.50", a date) or a flag: the catalogue's
            # unit belongs to its numbers only.
            out.append(Measurement(name, found[0], value, unit, observed_at))


def measurements_from_fields(
    fields: Mapping[str, Any], observed_at: str | None = None
) -> list[Measurement]:
    """Turn decoded fields into Measurements, in the order the fields came, following the rules
    in this module's docstring. ``observed_at`` (RFC 3339) is set on each; None means "the
    uplink's time". Pure, never raises on any JSON-shaped input, and returns ``[]`` when
    nothing could be measured.
    """
    out: list[Measurement] = []
    _collect(fields, "", 1, observed_at, out, [MAX_KEYS_WALKED])
    return out
