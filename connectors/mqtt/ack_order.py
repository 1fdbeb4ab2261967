"""Acknowledge MQTT messages in the order they arrived, once each is safe elsewhere.

MQTT (3.1.1 section 4.6, 5.0 section 4.6) asks a receiver to send PUBACKs in the order the
PUBLISH packets arrived, while Kafka confirms writes to different partitions in any order. This
sequencer releases an acknowledgement only when it and every message before it are confirmed.
Pure: no sockets, no clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class Pending:
    """One message received and not yet acknowledged."""

    mid: int
    qos: int
    confirmed: bool = False


class AckSequencer:
    """Keeps received messages in arrival order and releases their acks in that order."""

    __slots__ = ("_queue",)

    def __init__(self) -> None:
        self._queue: deque[Pending] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def received(self, mid: int, qos: int) -> Pending:
        """Record a message as received; confirm it later with :meth:`confirm`."""
        pending = Pending(mid, qos)
        self._queue.append(pending)
        return pending

    def confirm(self, pending: Pending) -> list[Pending]:
        """Mark a message safe; return every message whose ack may now be sent, in order."""
        pending.confirmed = True
        queue = self._queue
        ready: list[Pending] = []
        while queue and queue[0].confirmed:
            ready.append(queue.popleft())
        return ready
