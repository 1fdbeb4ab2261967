"""``Settings.health``: device health, and the expected reporting interval a device without its
own (nor its type's) is held to (a section of ``cityhub.schemas.settings``, in a module of its
own; ``docs/health.md``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cityhub.schemas.expected_interval import (
    DEFAULT_EXPECTED_INTERVAL_SECONDS,
    ExpectedIntervalSetting,
)


class HealthSettings(BaseModel):
    """How device health is kept and judged (``cityhub.streams.health``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default_expected_interval_seconds: ExpectedIntervalSetting = DEFAULT_EXPECTED_INTERVAL_SECONDS
    """The expected reporting interval of a device whose type names none and that overrides
    none; the aggregator's coverage and device health both use it."""
    silent_grace: float = Field(default=3.0, ge=1.0, le=100.0)
    """A device is silent once it has not been seen for longer than this many times its
    expected interval (LoRaWAN loses single uplinks: one missed reading is not silence)."""
    enabled: bool = True
    """Whether ``cityhub run`` (and ``cityhub worker``) runs the health stage, and the API serves
    device health."""
    write_interval_seconds: float = Field(default=60.0, ge=1.0, le=3600.0)
    """A device's health record is written at most this often, unless its state changed (first
    seen, back after a silence, a new quality flag or dead-letter reason): then at once."""
