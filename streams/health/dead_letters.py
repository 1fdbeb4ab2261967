"""One device's dead letters as the health stage keeps them: per reason, how many in each hour
of the last day it had dead letters, and the time of the last.

``DeadLetterState.add`` takes one dead letter (the decoded JSON of ``cityhub.deadletter``) and
says whether a reason appeared that the device had not had in the last day (a reader should
learn that at once); ``record`` makes the ``DeviceDeadLetters`` the topic carries. As for the
activity (``activity.py``): keyed by the dead letters' own times, the input offset kept, so that
a replay writes the same record and counts nothing twice; and digests of the device's last
``RECENT_LETTERS`` dead letters' identities (the failed record's place in Kafka, else its
payload's hash and receiving time), so that a dead letter a crashed stage wrote again counts
once.

``device_of_dead_letter`` finds which registered device a dead letter concerns: its ``device``
names it (a device id, or a DevEUI, as the connector saw it), when known.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cityhub.schemas.device_health import TREND_HOURS, DeviceDeadLetters, ReasonCount
from cityhub.streams.health.activity import HOUR, Change, epoch_of

Locate = Callable[[str], tuple[str, str] | None]
"""A device id or DevEUI as a dead letter names it -> (tenant, device id) of the registered
device, or None."""

MAX_REASON_CHARS = 64
RECENT_LETTERS = 32


def letter_digest(doc: dict[str, Any]) -> int:
    """A 32-bit digest of what a dead letter is about: the same for the dead letter a stage
    writes again after a crash (its input record's place in Kafka; a bridge's, which has none:
    the payload's hash and when it was received)."""
    where = (doc.get("kafka_topic"), doc.get("kafka_partition"), doc.get("kafka_offset"))
    if where[0] is None:
        where = (doc.get("stage"), doc.get("sha256"), doc.get("received_at"))
    return zlib.crc32(repr(where).encode())


def device_of_dead_letter(doc: dict[str, Any], locate: Locate) -> tuple[str, str] | None:
    """(tenant, device id) of the registered device a dead letter names; None when it names
    none (a message without a device, an unknown one)."""
    named = doc.get("device")
    if not isinstance(named, str) or not named or len(named) > 256:
        return None
    return locate(named)


@dataclass(slots=True)
class DeadLetterState:
    """One device's dead letters (see the module docstring)."""

    tenant: str
    device: str
    offset: int = -1
    hours: dict[str, dict[int, int]] = field(default_factory=dict)
    """Reason -> hour (since the epoch) -> dead letters."""
    last_at: dict[str, str] = field(default_factory=dict)
    """Reason -> ``failed_at`` of its last dead letter."""
    newest: int = 0
    """The newest hour with a dead letter: the day kept ends with it."""
    written: bool = False
    recent: list[int] = field(default_factory=list)
    """Digests of the last ``RECENT_LETTERS`` dead letters counted (``letter_digest``)."""

    def add(self, doc: dict[str, Any], offset: int) -> Change | None:
        """Count one dead letter; ``Change.NEW_FLAG`` when its reason is new within the day.
        One at or before ``offset`` was counted already and is skipped (None)."""
        if offset <= self.offset:
            return None
        reason = doc.get("reason")
        failed = doc.get("failed_at")
        failed_at = epoch_of(failed)
        if not isinstance(reason, str) or not isinstance(failed, str) or failed_at is None:
            return None
        reason = reason[:MAX_REASON_CHARS]
        self.offset = offset
        digest = letter_digest(doc)
        if digest in self.recent:
            return None  # written again by a stage that crashed
        self.recent.append(digest)
        if len(self.recent) > RECENT_LETTERS:
            del self.recent[0]
        hour = int(failed_at // HOUR)
        if hour > self.newest:
            self.newest = hour
            self._trim()
        if hour <= self.newest - TREND_HOURS:
            return None  # older than the day kept
        counts = self.hours.get(reason)
        change = None if counts else Change.NEW_FLAG
        if counts is None:
            counts = self.hours[reason] = {}
        counts[hour] = counts.get(hour, 0) + 1
        if failed > self.last_at.get(reason, ""):
            self.last_at[reason] = failed
        return change

    def _trim(self) -> None:
        for reason in list(self.hours):
            counts = self.hours[reason]
            for old in [h for h in counts if h <= self.newest - TREND_HOURS]:
                del counts[old]
            if not counts:
                del self.hours[reason]
                self.last_at.pop(reason, None)

    def record(self, partition: int = 0) -> DeviceDeadLetters:
        """The ``DeviceDeadLetters`` of this state, reasons by name."""
        return DeviceDeadLetters(
            tenant=self.tenant,
            device=self.device,
            partition=partition,
            reasons=[
                ReasonCount(reason=r, count=sum(self.hours[r].values()), last_at=self.last_at[r])
                for r in sorted(self.hours)
            ],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.tenant,
            "d": self.device,
            "o": self.offset,
            "h": {r: {str(k): n for k, n in c.items()} for r, c in self.hours.items()},
            "l": self.last_at,
            "nw": self.newest,
            "w": self.written,
            "r": self.recent,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> DeadLetterState:
        """The state a changelog entry holds; KeyError, TypeError or ValueError otherwise."""
        return cls(
            tenant=str(doc["t"]),
            device=str(doc["d"]),
            offset=int(doc["o"]),
            hours={str(r): {int(k): int(n) for k, n in c.items()} for r, c in doc["h"].items()},
            last_at={str(r): str(t) for r, t in doc["l"].items()},
            newest=int(doc["nw"]),
            written=bool(doc.get("w")),
            recent=[int(d) for d in doc.get("r") or []],
        )
