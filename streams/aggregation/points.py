"""What windowing needs of one observation, and the microsecond time it is windowed in.

Event times are integer microseconds since 1970-01-01T00:00:00Z (UTC), exact (no float
rounding), inside the range of :mod:`cityhub.schemas.timefmt`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from cityhub.schemas.observation import Observation
from cityhub.schemas.timefmt import parse_rfc3339

US = 1_000_000
"""Microseconds per second: event times are integer microseconds since the epoch."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


class Point(NamedTuple):
    """What windowing needs of one observation; ``observed_us`` is µs since the epoch (UTC)."""

    event_id: str
    device_id: str
    area: str | None
    quantity: str
    value: Any
    unit: str | None
    observed_us: int
    """Inside the range of ``cityhub.schemas.timefmt`` (``from_observation`` sees to it)."""
    tenant: str | None = None
    """The device's tenant (None: unregistered)."""
    classification: str | None = None
    flagged: bool = False
    """The observation carries at least one quality flag (``Observation.quality``)."""
    interval_s: int | None = None
    """The device's expected reporting interval in seconds (None: no expectation), as the
    registry gave it when the observation was aggregated: what coverage is measured against."""

    @classmethod
    def from_observation(
        cls, obs: Observation | Mapping[str, Any], interval_s: int | None = None
    ) -> Point:
        """The point of a canonical observation, given as the dataclass or as its decoded JSON,
        with the device's expected interval ``interval_s`` (the observation does not carry it).
        Raises ``InvalidTimestamp`` (a ValueError) when ``observed_at`` is not an RFC 3339 time
        inside the range of ``cityhub.schemas.timefmt`` (1970 up to 2100): every point is
        inside it, so every window's bounds can be formatted."""
        if isinstance(obs, Observation):
            return cls(
                obs.event_id,
                obs.device_id,
                obs.area,
                obs.quantity,
                obs.value,
                obs.unit,
                epoch_us(obs.observed_at),
                obs.tenant,
                obs.classification,
                bool(obs.quality),
                interval_s,
            )
        return cls(
            obs["event_id"],
            obs["device_id"],
            obs.get("area"),
            obs["quantity"],
            obs["value"],
            obs.get("unit"),
            epoch_us(obs["observed_at"]),
            obs.get("tenant"),
            obs.get("classification"),
            bool(obs.get("quality")),
            interval_s,
        )


def epoch_us(text: str) -> int:
    """Microseconds since the epoch of an RFC 3339 time (exact: no float rounding); raises
    ``InvalidTimestamp`` (a ValueError) for anything that ``parse_rfc3339`` refuses."""
    return (parse_rfc3339(text) - _EPOCH) // _ONE_US


def format_us(us: int) -> str:
    """RFC 3339 UTC of µs since the epoch: milliseconds, or microseconds when it has them.
    Never raises for an instant of the range or a window end (at most ``MAX_WINDOW_SECONDS``
    past it)."""
    dt = _EPOCH + timedelta(microseconds=us)
    spec = "milliseconds" if us % 1000 == 0 else "microseconds"
    return dt.isoformat(timespec=spec).replace("+00:00", "Z")
