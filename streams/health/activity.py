"""One device's activity as the health stage keeps it: readings per hour of the last day, the
flagged ones, battery and signal sums, last seen and last observed.

``ActivityState.add`` takes one observation (the decoded JSON of ``cityhub.observations``) and
says whether the device's state changed in a way a reader should learn at once (first seen,
back after a silence, a quality flag it had not raised in the last day); ``record`` makes the
``DeviceActivity`` the topic carries. Everything is keyed by the hub's receiving time, never the
wall clock, so the same observations make the same record, byte for byte, after a replay.
Nothing is counted twice: the input offset of the last observation taken is kept (a replay of
this stage's input), and so are the digests of the device's last ``RECENT_IDS`` event ids (the
observations topic is at least once: a normaliser that crashed writes an uplink's observations
again, with the same event ids, at new offsets).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from cityhub.schemas.device_health import TREND_HOURS, DeviceActivity, Trend
from cityhub.schemas.timefmt import rfc3339

BATTERY_QUANTITIES = {"battery": 0, "battery_voltage": 1}
"""Battery quantities, the preferred first: a device that reports both is shown by its charge."""
HOUR = 3600
RECENT_IDS = 64
"""Event ids remembered per device (32-bit digests): 21 uplinks of three quantities, more than a
normaliser's replay after a crash writes again."""


class Change(StrEnum):
    """Why a device's record is written at once rather than within the minute."""

    FIRST_SEEN = "first_seen"
    BACK = "back"
    """Seen again after more than its silence threshold."""
    NEW_FLAG = "new_flag"
    """A quality flag it had not raised in the last day."""


def epoch_of(text: object) -> float | None:
    """Seconds since the epoch of an RFC 3339 time as cityhub writes them; None if it is not."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if number == number and abs(number) != float("inf") else None


@dataclass(slots=True)
class Hour:
    """One hour's sums: readings, flagged readings, per flag, and the trends' sums."""

    readings: int = 0
    flagged: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    battery: list[float] = field(default_factory=lambda: [0.0, 0])
    rssi: list[float] = field(default_factory=lambda: [0.0, 0])
    snr: list[float] = field(default_factory=lambda: [0.0, 0])

    def to_json(self) -> list[Any]:
        return [self.readings, self.flagged, self.flags, self.battery, self.rssi, self.snr]

    @classmethod
    def from_json(cls, doc: list[Any]) -> Hour:
        readings, flagged, flags, battery, rssi, snr = doc
        return cls(int(readings), int(flagged), dict(flags), list(battery), list(rssi), list(snr))


@dataclass(slots=True)
class ActivityState:
    """One device's activity (see the module docstring)."""

    tenant: str
    device: str
    device_type: str | None = None
    offset: int = -1
    """Input offset of the last observation taken (a replay skips up to it)."""
    first_seen: str = ""
    last_seen: str = ""
    last_seen_at: float = 0.0
    last_observed: str = ""
    readings: int = 0
    hours: dict[int, Hour] = field(default_factory=dict)
    battery_quantity: str | None = None
    battery_unit: str | None = None
    battery_last: tuple[float, str] | None = None
    rssi_last: tuple[float, str] | None = None
    snr_last: tuple[float, str] | None = None
    signal_at: str = ""
    """``received_at`` of the uplink the signal was last sampled from (an uplink makes several
    observations; its signal counts once)."""
    written: bool = False
    """Whether the record of this state was written (a restored unwritten one is written soon)."""
    recent: list[int] = field(default_factory=list)
    """Digests of the last ``RECENT_IDS`` event ids counted, oldest first."""

    def add(self, doc: dict[str, Any], offset: int, silent_after: float) -> Change | None:
        """Count one observation; the change a reader should learn at once, if any. An
        observation at or before ``offset`` was counted already and is skipped (None)."""
        if offset <= self.offset:
            return None
        received = doc.get("received_at")
        received_at = epoch_of(received)
        if received_at is None or not isinstance(received, str):
            return None
        self.offset = offset
        event_id = doc.get("event_id")
        if isinstance(event_id, str):
            digest = zlib.crc32(event_id.encode())
            if digest in self.recent:
                return None  # the same observation written again upstream
            self.recent.append(digest)
            if len(self.recent) > RECENT_IDS:
                del self.recent[0]
        change: Change | None = None
        if not self.last_seen:
            change = Change.FIRST_SEEN
            self.first_seen = received
        elif received_at - self.last_seen_at > silent_after:
            change = Change.BACK
        if received_at >= self.last_seen_at:
            self.last_seen, self.last_seen_at = received, received_at
        observed = doc.get("observed_at")
        if isinstance(observed, str) and observed > self.last_observed:
            self.last_observed = observed
        device_type = doc.get("device_type")
        if isinstance(device_type, str):
            self.device_type = device_type
        self.readings += 1
        hour_key = int(received_at // HOUR)
        hour = self.hours.get(hour_key)
        if hour is None:
            hour = self.hours[hour_key] = Hour()
            self._trim(max(self.hours))
        hour.readings += 1
        flags = doc.get("quality") or []
        if isinstance(flags, list) and flags:
            hour.flagged += 1
            for flag in flags:
                if not isinstance(flag, str):
                    continue
                if change is None and not self._raised(flag):
                    change = Change.NEW_FLAG
                hour.flags[flag] = hour.flags.get(flag, 0) + 1
        self._battery(doc, hour, received)
        self._signal(doc.get("network"), hour, received)
        return change

    def _raised(self, flag: str) -> bool:
        return any(flag in hour.flags for hour in self.hours.values())

    def _trim(self, newest: int) -> None:
        for old in [h for h in self.hours if h <= newest - TREND_HOURS]:
            del self.hours[old]

    def _battery(self, doc: dict[str, Any], hour: Hour, received: str) -> None:
        quantity = doc.get("quantity")
        rank = BATTERY_QUANTITIES.get(quantity) if isinstance(quantity, str) else None
        value = _number(doc.get("value"))
        if rank is None or value is None:
            return
        current = BATTERY_QUANTITIES.get(self.battery_quantity or "", len(BATTERY_QUANTITIES))
        if rank > current:
            return  # the device reports its charge too: the trend follows that
        if rank < current:  # a better quantity than the one followed: start its trend
            self.battery_quantity = quantity
            for each in self.hours.values():
                each.battery = [0.0, 0]
        unit = doc.get("unit")
        self.battery_unit = unit if isinstance(unit, str) else None
        self.battery_last = (value, received)
        hour.battery[0] += value
        hour.battery[1] += 1

    def _signal(self, network: object, hour: Hour, received: str) -> None:
        if received == self.signal_at or not isinstance(network, dict):
            return
        gateways = network.get("gateways")
        if not isinstance(gateways, list):
            return
        rssi = [
            v for g in gateways if isinstance(g, dict) and (v := _number(g.get("rssi"))) is not None
        ]
        snr = [
            v for g in gateways if isinstance(g, dict) and (v := _number(g.get("snr"))) is not None
        ]
        self.signal_at = received
        if rssi:
            best = max(rssi)
            self.rssi_last = (best, received)
            hour.rssi[0] += best
            hour.rssi[1] += 1
        if snr:
            best = max(snr)
            self.snr_last = (best, received)
            hour.snr[0] += best
            hour.snr[1] += 1

    # --- the record -------------------------------------------------------------------------
    def record(self) -> DeviceActivity:
        """The ``DeviceActivity`` of this state (a function of the state alone)."""
        ordered = sorted(self.hours.items())
        flags: dict[str, int] = {}
        for _, hour in ordered:
            for flag, count in hour.flags.items():
                flags[flag] = flags.get(flag, 0) + count
        return DeviceActivity(
            tenant=self.tenant,
            device=self.device,
            device_type=self.device_type,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            last_observed=self.last_observed,
            readings=self.readings,
            readings_24h=sum(hour.readings for _, hour in ordered),
            flagged_24h=sum(hour.flagged for _, hour in ordered),
            flags_24h=dict(sorted(flags.items())),
            battery=_trend(
                self.battery_quantity, self.battery_unit, self.battery_last, ordered, "battery"
            ),
            rssi=_trend("rssi", "dBm", self.rssi_last, ordered, "rssi"),
            snr=_trend("snr", "dB", self.snr_last, ordered, "snr"),
        )

    # --- the changelog ----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.tenant, "d": self.device, "ty": self.device_type, "o": self.offset,
            "fs": self.first_seen, "ls": self.last_seen, "lo": self.last_observed,
            "n": self.readings, "h": {str(k): h.to_json() for k, h in self.hours.items()},
            "bq": self.battery_quantity, "bu": self.battery_unit, "bl": self.battery_last,
            "rl": self.rssi_last, "sl": self.snr_last, "sa": self.signal_at, "w": self.written,
            "r": self.recent,
        }  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ActivityState:
        """The state a changelog entry holds; KeyError, TypeError or ValueError if it is not
        one."""
        last_seen = str(doc["ls"])
        return cls(
            tenant=str(doc["t"]),
            device=str(doc["d"]),
            device_type=doc.get("ty"),
            offset=int(doc["o"]),
            first_seen=str(doc["fs"]),
            last_seen=last_seen,
            last_seen_at=epoch_of(last_seen) or 0.0,
            last_observed=str(doc["lo"]),
            readings=int(doc["n"]),
            hours={int(k): Hour.from_json(v) for k, v in doc["h"].items()},
            battery_quantity=doc.get("bq"),
            battery_unit=doc.get("bu"),
            battery_last=_pair(doc.get("bl")),
            rssi_last=_pair(doc.get("rl")),
            snr_last=_pair(doc.get("sl")),
            signal_at=str(doc.get("sa") or ""),
            written=bool(doc.get("w")),
            recent=[int(d) for d in doc.get("r") or []],
        )


def _pair(value: Any) -> tuple[float, str] | None:
    return None if value is None else (float(value[0]), str(value[1]))


def _trend(
    quantity: str | None,
    unit: str | None,
    last: tuple[float, str] | None,
    hours: list[tuple[int, Hour]],
    which: str,
) -> Trend | None:
    if quantity is None or last is None:
        return None
    means: list[tuple[int, float, int]] = []
    for key, hour in hours:
        total, count = getattr(hour, which)
        if count:
            means.append((key, total / count, int(count)))
    hourly: list[float | None] = []
    if means:
        by_hour = {k: round(m, 4) for k, m, _ in means}
        hourly = [by_hour.get(k) for k in range(means[0][0], means[-1][0] + 1)]
    return Trend(
        quantity=quantity,
        unit=unit,
        last=last[0],
        last_at=last[1],
        hours_from=rfc3339(means[0][0] * HOUR) if means else None,
        hourly=hourly,
        slope_per_day=_slope_per_day(means),
    )


def _slope_per_day(means: list[tuple[int, float, int]]) -> float | None:
    """The least-squares slope of the hourly means, per day; None with fewer than two hours."""
    if len(means) < 2:
        return None
    xs = [float(k) for k, _, _ in means]
    ys = [m for _, m, _ in means]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    slope_per_hour = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
    return round(slope_per_hour * 24, 4)
