"""Quality flags of a canonical observation.

An observation is never dropped for its quality: the normaliser writes it with the flags its
checks raised in ``Observation.quality`` (a JSON array of these names, empty when none), and
consumers decide. Read it as ``doc.get("quality") or []``: records written before the field
existed have none. How each flag is computed: ``docs/quality.md``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class QualityFlag(StrEnum):
    """Why an observation is suspect (its value is kept as the device sent it)."""

    OUT_OF_RANGE = "out_of_range"
    """Outside the physically plausible range of its quantity (catalogue, setting or type)."""
    SPIKE = "spike"
    """Changed faster than its quantity plausibly can since the device's previous value."""
    FLAT_LINE = "flat_line"
    """The same value for longer than its quantity plausibly stays unchanged."""
    DEVICE_FAULT = "device_fault"
    """The device itself reported a fault in the same uplink."""


QUALITY_FLAGS: Final[tuple[str, ...]] = tuple(flag.value for flag in QualityFlag)
"""Every flag name, in the enum's order (the order flags appear in an observation)."""


def ordered_flags(flags: set[str] | frozenset[str]) -> tuple[str, ...]:
    """``flags`` as a tuple in the canonical order (the same set always encodes the same way,
    so a replayed record is byte-identical)."""
    return tuple(name for name in QUALITY_FLAGS if name in flags)
