"""Cayenne LPP (Low Power Payload): decoder and encoder.

A payload is a sequence of ``channel (1 byte) | type (1 byte) | data (big-endian)`` items.

Field names are those of The Things Stack's built-in "CayenneLPP" payload formatter
(``lorawan-stack/pkg/messageprocessors/cayennelpp``): ``<key>_<channel>``, e.g.
``temperature_1``, ``relative_humidity_2``, ``barometric_pressure_3``, ``luminosity_4``,
``analog_in_5``; the three-axis types and GPS are objects (``accelerometer_7: {x, y, z}``,
``gps_8: {latitude, longitude, altitude}``). A device decoded by us or by TTS therefore reaches
the normaliser with the same field names.

TTS's formatter knows the LPP v1 types only. For the extended types (generic sensor, voltage,
current, ... switch) sizes and resolutions follow the ElectronicCats ``CayenneLPP`` library, the
one most firmware links, and the names follow TTS's style (snake case, ``_<channel>``).
Note: TheThingsNetwork/go-cayenne-lib encodes voltage, current, frequency and energy differently
(2 bytes / 0.01 each, energy 3 bytes); a device built against that library will decode wrongly
here for those four types. Colour (135) decodes to ``{r, g, b}``.

Values are rounded to the resolution of their type (TTS emits float32 noise such as
``22.100000381469727``; we emit ``22.1``); integer-resolution types decode to ``int``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cityhub.schemas.errors import UndecodablePayload


@dataclass(frozen=True, slots=True)
class _Part:
    """One big-endian number inside an item's data."""

    key: str | None
    """Sub-field name for object-valued types (``x``, ``latitude``); None for scalar types."""
    size: int
    divisor: int
    signed: bool
    decimals: int
    """Digits after the point once divided (0: the value is an int)."""


@dataclass(frozen=True, slots=True)
class _LppType:
    code: int
    key: str
    parts: tuple[_Part, ...]
    size: int


def _decimals(divisor: int) -> int:
    """Digits after the point of the type's resolution: 1/2 -> 1, 1/1000 -> 3."""
    return 0 if divisor == 1 else len(repr(1 / divisor).split(".")[1])


def _scalar(code: int, key: str, size: int, divisor: int, signed: bool) -> _LppType:
    return _LppType(code, key, (_Part(None, size, divisor, signed, _decimals(divisor)),), size)


def _vector(code: int, key: str, parts: tuple[tuple[str, int, int, bool], ...]) -> _LppType:
    built = tuple(_Part(k, s, d, sg, _decimals(d)) for k, s, d, sg in parts)
    return _LppType(code, key, built, sum(p.size for p in built))


_XYZ_MILLI: Final = (("x", 2, 1000, True), ("y", 2, 1000, True), ("z", 2, 1000, True))
_XYZ_CENTI: Final = (("x", 2, 100, True), ("y", 2, 100, True), ("z", 2, 100, True))

_TYPES: Final[tuple[_LppType, ...]] = (
    # LPP v1 (IPSO object id - 3200), names as TTS's formatter gives them.
    _scalar(0, "digital_in", 1, 1, False),
    _scalar(1, "digital_out", 1, 1, False),
    _scalar(2, "analog_in", 2, 100, True),
    _scalar(3, "analog_out", 2, 100, True),
    _scalar(101, "luminosity", 2, 1, False),
    _scalar(102, "presence", 1, 1, False),
    _scalar(103, "temperature", 2, 10, True),
    _scalar(104, "relative_humidity", 1, 2, False),
    _vector(113, "accelerometer", _XYZ_MILLI),
    _scalar(115, "barometric_pressure", 2, 10, False),
    _vector(134, "gyrometer", _XYZ_CENTI),
    _vector(
        136,
        "gps",
        (("latitude", 3, 10000, True), ("longitude", 3, 10000, True), ("altitude", 3, 100, True)),
    ),
    # Extended types (ElectronicCats CayenneLPP).
    _scalar(100, "generic_sensor", 4, 1, False),
    _scalar(116, "voltage", 2, 100, False),
    _scalar(117, "current", 2, 1000, False),
    _scalar(118, "frequency", 4, 1, False),
    _scalar(120, "percentage", 1, 1, False),
    _scalar(121, "altitude", 2, 1, True),
    _scalar(125, "concentration", 2, 1, False),
    _scalar(128, "power", 2, 1, False),
    _scalar(130, "distance", 4, 1000, False),
    _scalar(131, "energy", 4, 1000, False),
    _scalar(132, "direction", 2, 1, False),
    _scalar(133, "unix_time", 4, 1, False),
    _vector(135, "colour", (("r", 1, 1, False), ("g", 1, 1, False), ("b", 1, 1, False))),
    _scalar(142, "switch", 1, 1, False),
)

_BY_CODE: Final[dict[int, _LppType]] = {t.code: t for t in _TYPES}
_BY_KEY: Final[dict[str, _LppType]] = {t.key: t for t in _TYPES}

TYPE_KEYS: Final[tuple[str, ...]] = tuple(t.key for t in _TYPES)
"""Every type name ``encode_lpp`` accepts (field names without the ``_<channel>`` suffix)."""


MAX_LPP_BYTES: Final = 1024
"""The longest payload decoded: four LoRaWAN frames' worth (an uplink of a quarter MiB decoded
to 48 000 items in 84 ms before the cap on measurements dropped nearly all of them)."""


def _read_part(payload: bytes, offset: int, part: _Part) -> int | float:
    raw = int.from_bytes(payload[offset : offset + part.size], "big", signed=part.signed)
    if part.divisor == 1:
        return raw
    return round(raw / part.divisor, part.decimals)


def decode_lpp(payload: bytes) -> dict[str, Any]:
    """Decode a Cayenne LPP payload into TTS-named fields.

    Raises ``UndecodablePayload`` naming the byte offset (and type) when the payload is
    truncated or uses a type code this decoder does not know, and for a payload longer than
    ``MAX_LPP_BYTES``. An empty payload decodes to ``{}``.
    A channel and type repeated in one payload keeps the last value, as TTS does.
    """
    n = len(payload)
    if n > MAX_LPP_BYTES:
        raise UndecodablePayload(
            f"cayenne-lpp: a payload of {n} bytes, at most {MAX_LPP_BYTES} taken (a LoRaWAN "
            "frame carries at most 242)"
        )
    out: dict[str, Any] = {}
    i = 0
    while i < n:
        if i + 2 > n:
            raise UndecodablePayload(
                f"cayenne-lpp: truncated item header at byte {i}: "
                f"need channel and type, {n - i} byte left"
            )
        channel = payload[i]
        code = payload[i + 1]
        lpp = _BY_CODE.get(code)
        if lpp is None:
            raise UndecodablePayload(
                f"cayenne-lpp: unknown type {code} (0x{code:02x}) at byte {i + 1} "
                f"(channel {channel})"
            )
        start = i + 2
        end = start + lpp.size
        if end > n:
            raise UndecodablePayload(
                f"cayenne-lpp: truncated {lpp.key} (type {code}) at byte {start}: "
                f"need {lpp.size} bytes, {n - start} left"
            )
        name = f"{lpp.key}_{channel}"
        if len(lpp.parts) == 1:
            out[name] = _read_part(payload, start, lpp.parts[0])
        else:
            obj: dict[str, int | float] = {}
            offset = start
            for part in lpp.parts:
                obj[part.key or ""] = _read_part(payload, offset, part)
                offset += part.size
            out[name] = obj
        i = end
    return out


def _encode_part(part: _Part, value: Any, where: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where}: {value!r} is not a finite number")
    raw = round(value * part.divisor)
    bits = part.size * 8
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if part.signed else (0, (1 << bits) - 1)
    if not lo <= raw <= hi:
        raise ValueError(
            f"{where}: {value!r} does not fit {part.size} "
            f"{'signed' if part.signed else 'unsigned'} bytes at 1/{part.divisor}"
        )
    return raw.to_bytes(part.size, "big", signed=part.signed)


def encode_lpp(items: Iterable[tuple[int, str, Any]]) -> bytes:
    """Encode ``(channel, type name, value)`` items as a Cayenne LPP payload.

    The type name is a field name without its channel suffix (``temperature``,
    ``relative_humidity``, ``gps``); object-valued types take a mapping with the same keys the
    decoder produces (``{"latitude": .., "longitude": .., "altitude": ..}``, ``{"x", "y", "z"}``,
    ``{"r", "g", "b"}``). Values are rounded to the type's resolution, so
    ``decode_lpp(encode_lpp(items))`` gives them back at that resolution. Raises ``ValueError``
    for an unknown type, a channel outside 0..255 or a value out of the type's range, and
    ``TypeError`` for a value of the wrong kind.
    """
    buf = bytearray()
    for channel, key, value in items:
        lpp = _BY_KEY.get(key)
        if lpp is None:
            raise ValueError(f"unknown Cayenne LPP type {key!r}; known: {', '.join(TYPE_KEYS)}")
        if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel <= 255:
            raise ValueError(f"{key}: channel must be an int in 0..255, got {channel!r}")
        buf.append(channel)
        buf.append(lpp.code)
        where = f"{key}_{channel}"
        if len(lpp.parts) == 1:
            buf += _encode_part(lpp.parts[0], value, where)
            continue
        if not isinstance(value, Mapping):
            keys = ", ".join(p.key or "" for p in lpp.parts)
            raise TypeError(f"{where}: expected a mapping with {keys}, got {value!r}")
        for part in lpp.parts:
            sub = part.key or ""
            if sub not in value:
                raise ValueError(f"{where}: missing {sub!r}")
            buf += _encode_part(part, value[sub], f"{where}.{sub}")
    return bytes(buf)


class CayenneLppDecoder:
    """The ``cayenne-lpp`` payload decoder (any f_port)."""

    name = "cayenne-lpp"

    def decode(self, payload: bytes, f_port: int | None) -> dict[str, Any]:
        """Decode ``payload`` with :func:`decode_lpp`; ``f_port`` is not used by LPP."""
        return decode_lpp(payload)
