"""Counting what is used under each agreement (issue 13: "every use under an agreement is
counted per agreement, and visible to both parties").

Pure: ``UsageCounts`` accumulates counts in memory; the process that owns it drains them into
the ``agreement-usage`` topic (``cityhub.streams.sharing`` I/O side) every few seconds as
cumulative totals per counting process, and the API sums the processes. Counting never blocks
and never fails the data path it counts.
"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    """How data was used under an agreement."""

    DELIVERED = "delivered"
    """Items a consumer's subscription delivered (webhook, MQTT, live stream, Kafka topic)."""
    READ = "read"
    """Items a consumer's read returned (API aggregates, history, SensorThings, NGSI-LD)."""


class UsageCounts:
    """Counts per ``(agreement id, channel)`` since the process started (cumulative: drained
    totals are not reset, so a lost write is repaired by the next one)."""

    __slots__ = ("_dirty", "_totals")

    def __init__(self) -> None:
        self._totals: dict[tuple[str, Channel], int] = {}
        self._dirty = False

    def count(self, agreement_id: str, channel: Channel, n: int = 1) -> None:
        """Add ``n`` uses (``n`` < 1 is ignored)."""
        if n < 1:
            return
        key = (agreement_id, channel)
        self._totals[key] = self._totals.get(key, 0) + n
        self._dirty = True

    def totals(self) -> dict[tuple[str, Channel], int]:
        """A copy of the cumulative totals."""
        return dict(self._totals)

    def take_changed(self) -> dict[tuple[str, Channel], int] | None:
        """The totals if anything was counted since the last call, else None."""
        if not self._dirty:
            return None
        self._dirty = False
        return dict(self._totals)
