"""Device health: the records of the compacted ``<prefix>.device-health`` topic, and how a
reader judges a device from them.

Two kinds of record per device, each written by one agent of the health stage
(``cityhub.streams.health``), so that each key has one writer however the stage scales:

* ``device/<tenant>/<id>``, a ``DeviceActivity``: what its observations say (last seen and
  last observed, readings counted, the share of flagged readings, battery and signal trends);
* ``deadletters/<tenant>/<id>/<partition>``, a ``DeviceDeadLetters``: its dead letters per
  reason, from one partition of the dead-letter topic (``dead_letters_key``).

Neither says whether a device is silent: no timer writes "silent". A reader computes it from the
last time the device was seen and its expected interval (``device_state``), so a silent device
costs nothing to keep and every reader agrees on the rule.

Pure: pydantic models and functions, no I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

HEALTH_VERSION = 1
ACTIVITY_PREFIX = "device/"
DEAD_LETTERS_PREFIX = "deadletters/"
TREND_HOURS = 24
"""Hourly means kept for each trend (a day), and the window of the 24-hour counts."""
DEAD_LETTER_WINDOW_SECONDS = 24 * 3600
"""A dead-letter reason is current while its last dead letter is younger than this."""


class HealthState(StrEnum):
    """A device's state as the API shows it."""

    OK = "ok"
    """Seen within its grace times its expected interval."""
    SILENT = "silent"
    """Seen once, but not within its grace times its expected interval."""
    NEVER_SEEN = "never_seen"
    """Registered, but no observation of it was ever counted."""


def activity_key(tenant: str, device: str) -> str:
    return f"{ACTIVITY_PREFIX}{tenant}/{device}"


def dead_letters_key(tenant: str, device: str, partition: int) -> str:
    """A device's dead letters may sit in several partitions of the dead-letter topic (they are
    keyed as the connector saw the device: a DevEUI, an id): one record per partition, each
    with one writer; a reader adds them up."""
    return f"{DEAD_LETTERS_PREFIX}{tenant}/{device}/{partition}"


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Trend(_Record):
    """A quantity's recent course: its last value, its hourly means over the last day the device
    was seen (hours by the time the hub received the readings, UTC) and their least-squares
    slope per day (None with fewer than two hours). Compact, as every API process holds one per
    device: the means are a list from ``hours_from`` on, one per hour, null for an hour
    without a reading."""

    quantity: str
    unit: str | None = None
    last: float
    last_at: str
    hours_from: str | None = None
    """The start of the first hour of ``hourly`` (RFC 3339); None: no hour has a mean."""
    hourly: list[float | None]
    slope_per_day: float | None = None


class DeviceActivity(_Record):
    """``device/<tenant>/<id>``: what the device's observations say."""

    v: int = HEALTH_VERSION
    kind: Literal["device"] = "device"
    tenant: str
    device: str
    device_type: str | None = None
    first_seen: str
    last_seen: str
    """When the hub received its latest reading (``received_at``)."""
    last_observed: str
    """The latest measurement time its readings carried (``observed_at``)."""
    readings: int
    """Readings (observations) counted since the hub first saw it."""
    readings_24h: int
    flagged_24h: int
    """Readings with at least one quality flag, in the last 24 hours it was seen."""
    flags_24h: dict[str, int]
    """Readings per quality flag in the same hours."""
    battery: Trend | None = None
    """``battery`` (%) where the device reports it, else ``battery_voltage`` (V)."""
    rssi: Trend | None = None
    """The best gateway's RSSI (dBm) per uplink."""
    snr: Trend | None = None
    """The best gateway's SNR (dB) per uplink."""

    @property
    def flagged_share_24h(self) -> float | None:
        """Flagged readings / readings in the last 24 hours it was seen (None: none)."""
        return None if self.readings_24h == 0 else self.flagged_24h / self.readings_24h


class ReasonCount(_Record):
    reason: str
    count: int
    """Dead letters of this reason within the 24 hours before ``last_at`` of the device's last
    dead letter."""
    last_at: str


class DeviceDeadLetters(_Record):
    """``deadletters/<tenant>/<id>/<partition>``: the device's dead letters of the last day in
    one partition of the dead-letter topic, per reason."""

    v: int = HEALTH_VERSION
    kind: Literal["deadletters"] = "deadletters"
    tenant: str
    device: str
    partition: int = 0
    reasons: list[ReasonCount]


def silent_after_seconds(interval_seconds: int, grace: float) -> float:
    """How long a device may stay quiet before it counts as silent."""
    return interval_seconds * grace


def device_state(
    last_seen_epoch: float | None, now: float, interval_seconds: int, grace: float
) -> HealthState:
    """``never_seen`` without a last-seen time; ``silent`` once ``now`` is more than ``grace``
    times the expected interval past it; ``ok`` otherwise (a clock that reads a last-seen time
    in the future is ``ok``)."""
    if last_seen_epoch is None:
        return HealthState.NEVER_SEEN
    if now - last_seen_epoch > silent_after_seconds(interval_seconds, grace):
        return HealthState.SILENT
    return HealthState.OK
