"""How often a device promises to report: its expected reporting interval.

A device type may name ``expected_interval_seconds``, a device may override it; when neither
does, a setting gives the default (``health.default_expected_interval_seconds``). The
aggregator counts a window's coverage against it (readings arrived / readings promised) and
device health calls a device silent once it has been quiet for longer than a grace factor times
it. One pure accessor, ``expected_interval``, decides which value applies, so that both read
the same number.

Pure: constants, a type and a function; no I/O.
"""

from __future__ import annotations

import functools
from typing import Annotated, Protocol

from pydantic import Field

MIN_EXPECTED_INTERVAL_SECONDS = 1
MAX_EXPECTED_INTERVAL_SECONDS = 31 * 86_400
"""A month: a waste bin or a water-level sensor may report once a day, none less than monthly."""
DEFAULT_EXPECTED_INTERVAL_SECONDS = 900
"""Fifteen minutes: what most LoRaWAN city sensors report at (the setting's default)."""

ExpectedIntervalSeconds = Annotated[
    int,
    Field(
        ge=MIN_EXPECTED_INTERVAL_SECONDS,
        le=MAX_EXPECTED_INTERVAL_SECONDS,
        strict=True,
        description=(
            "How often the device reports, in whole seconds (1 to 2678400, a month); "
            "null: its type's, else the hub's default"
        ),
    ),
]
"""The field's type on specs: whole seconds within the bounds (``strict``: no ``"60"``, no 1.5,
no ``true``)."""

ExpectedIntervalSetting = Annotated[
    int, Field(ge=MIN_EXPECTED_INTERVAL_SECONDS, le=MAX_EXPECTED_INTERVAL_SECONDS)
]
"""The same bounds for a setting, which comes from an environment variable's text (strict, it
refused every value, ``900`` included)."""


class HasExpectedInterval(Protocol):
    """Anything that may name an expected interval: a device record or view entry, a type."""

    @property
    def expected_interval_seconds(self) -> int | None: ...


def expected_interval(
    device: HasExpectedInterval | None,
    device_type: HasExpectedInterval | None,
    default: int,
) -> int:
    """The device's expected reporting interval in seconds: the device's own override, else its
    type's, else ``default``. Either may be None (an unregistered device, a type deleted under
    its device): the next one in line applies."""
    if device is not None and device.expected_interval_seconds is not None:
        return device.expected_interval_seconds
    if device_type is not None and device_type.expected_interval_seconds is not None:
        return device_type.expected_interval_seconds
    return default


def shared_interval(value: object) -> int | None:
    """A stored record's interval (None, or whole seconds within the bounds) as one shared int
    object per distinct value, so that 100 000 devices with the same override cost a pointer
    each (Python shares only ints up to 256); ValueError if it is neither."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected_interval_seconds must be a whole number or null")
    if not MIN_EXPECTED_INTERVAL_SECONDS <= value <= MAX_EXPECTED_INTERVAL_SECONDS:
        raise ValueError("expected_interval_seconds is out of bounds")
    return _shared(value)


@functools.lru_cache(maxsize=1024)
def _shared(value: int) -> int:
    # Bounded: hostile records cannot grow it without end.
    return value


def parse_expected_interval(text: str) -> int | None:
    """An interval as an operator writes it in a CSV cell or a CLI option: whole seconds
    (``900``), or with a unit ``s``, ``m``, ``h`` or ``d`` (``15m``, ``1h``, ``2d``); ``-`` or an
    empty text is None (no override). ValueError saying what is wrong otherwise (the bounds are
    the field's to check)."""
    value = text.strip().lower()
    if value in ("", "-"):
        return None
    unit = 1
    if value[-1:] in _UNITS:
        unit = _UNITS[value[-1]]
        value = value[:-1].strip()
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise ValueError(
            f"must be whole seconds or a number with s, m, h or d (900, 15m, 1h), got {text!r}"
        )
    return int(value) * unit


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
