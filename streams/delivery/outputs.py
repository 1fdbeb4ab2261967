"""Where a delivery task's items go: the subscription's sink (``Target``) and, for a batch that
cannot be delivered, the dead-letter writer (``DeadLetterWriter``).

``cityhub.streams.delivery.targets`` builds a subscription's ``Target`` from its delivery kind;
the task (``cityhub.streams.delivery.task``) owns retries, dead letters and metrics around it.
Pure: types only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from cityhub.streams.delivery.queue import BatchLimits, Item


class Target(Protocol):
    """A subscription's sink as the task uses it: one attempt per ``send``, of batches cut by
    its ``batch_limits``."""

    batch_limits: BatchLimits

    async def start(self) -> None: ...

    async def send(self, items: Sequence[Item], msg_id: str) -> None:
        """Deliver the batch or raise ``DeliveryFailed``."""
        ...

    async def stop(self) -> None: ...


DeadLetterWriter = Callable[[bytes, bytes | None, list[tuple[str, bytes]]], Awaitable[None]]
"""``(dead letter JSON, key, headers)``: returns once Kafka confirmed the write."""
