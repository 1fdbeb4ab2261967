"""The device-health topic in memory: what every API process holds of ``<prefix>.device-health``.

Compact on purpose: per device, its last-seen time (for the state, the filters and the silent
count, which look at every device) and the record's bytes as written (decoded only for the few
devices an answer shows); dead letters as their bytes per dead-letter partition. About 1.3 KB
per device with a day of trends; a device deleted from the registry keeps its record until the topic
is compacted with a tombstone (the answers and counts join the registry, so it never shows).

Pure: no I/O. A ``CompactedTopicStore`` feeds it (``store.py``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from cityhub.schemas.device_health import (
    ACTIVITY_PREFIX,
    DEAD_LETTERS_PREFIX,
    DeviceActivity,
    DeviceDeadLetters,
    ReasonCount,
)
from cityhub.streams.malformed import malformed_reason

log = logging.getLogger("cityhub.health.view")


class DeviceHealthView:
    """The latest record of every key of the device-health topic (module docstring)."""

    def __init__(self) -> None:
        self._offset = -1
        self.malformed = 0
        self._seen: dict[str, float] = {}
        """``<tenant>/<device>`` -> last seen, seconds since the epoch."""
        self._activity: dict[str, bytes] = {}
        self._dead: dict[str, dict[int, bytes]] = {}

    @property
    def offset(self) -> int:
        return self._offset

    def apply(self, key: str, value: bytes | None, offset: int) -> None:
        """Apply one record; never raises (a malformed one is counted and logged)."""
        self._offset = offset
        try:
            self._apply(key, value)
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
            self.malformed += 1
            log.warning(
                "skipping malformed device-health record at offset %d: %s",
                offset,
                malformed_reason(exc),
            )

    def _apply(self, key: str, value: bytes | None) -> None:
        if key.startswith(ACTIVITY_PREFIX):
            device = key[len(ACTIVITY_PREFIX) :]
            if value is None:
                self._seen.pop(device, None)
                self._activity.pop(device, None)
                return
            doc: Any = orjson.loads(value)
            if not isinstance(doc, dict) or f"{doc['tenant']}/{doc['device']}" != device:
                raise ValueError("the record does not match its key")
            self._seen[device] = datetime.fromisoformat(doc["last_seen"]).timestamp()
            self._activity[device] = value
        elif key.startswith(DEAD_LETTERS_PREFIX):
            device, _, partition = key[len(DEAD_LETTERS_PREFIX) :].rpartition("/")
            held = self._dead.setdefault(device, {})
            if value is None:
                held.pop(int(partition), None)
            else:
                doc = orjson.loads(value)
                if not isinstance(doc, dict) or f"{doc['tenant']}/{doc['device']}" != device:
                    raise ValueError("the record does not match its key")
                held[int(partition)] = value
            if not held:
                del self._dead[device]
        else:
            raise ValueError(f"unknown kind of key {key[:64]!r}")

    # --- reads ------------------------------------------------------------------------------
    def last_seen(self, tenant: str, device: str) -> float | None:
        """When the device was last seen (seconds since the epoch); None: never."""
        return self._seen.get(f"{tenant}/{device}")

    def activity(self, tenant: str, device: str) -> DeviceActivity | None:
        """The device's activity record, or None (never seen, or unreadable)."""
        raw = self._activity.get(f"{tenant}/{device}")
        if raw is None:
            return None
        try:
            return DeviceActivity.model_validate_json(raw)
        except ValidationError:
            return None

    def dead_letters(self, tenant: str, device: str, since: str) -> list[ReasonCount]:
        """The device's dead-letter reasons whose last dead letter is at or after ``since``
        (RFC 3339), the partitions' counts added up, by reason."""
        merged: dict[str, tuple[int, str]] = {}
        for raw in self._dead.get(f"{tenant}/{device}", {}).values():
            try:
                record = DeviceDeadLetters.model_validate_json(raw)
            except ValidationError:
                continue
            for reason in record.reasons:
                count, last = merged.get(reason.reason, (0, ""))
                merged[reason.reason] = (count + reason.count, max(last, reason.last_at))
        return [
            ReasonCount(reason=reason, count=count, last_at=last)
            for reason, (count, last) in sorted(merged.items())
            if last >= since
        ]

    def devices(self) -> int:
        """Devices with an activity record."""
        return len(self._seen)
