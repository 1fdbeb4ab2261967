"""The bounded queue in front of one subscription's sink.

Pure (asyncio primitives only, no I/O). The fetcher puts items read from Kafka; the sender takes
batches. When the queue is full, the subscription's ``on_full`` decides:

- ``pause`` (the default): the fetcher stops reading from Kafka until there is room again
  (``space()`` is 0, it waits on ``wait_for_space``); nothing is lost, the subscription's lag
  grows in Kafka, which is the buffer;
- ``drop_oldest``: ``put`` drops the oldest queued item to make room and returns it, so the
  caller can count it (and commit past it: dropped items are older than everything delivered
  after them).

A batch is bounded by items and, optionally, by bytes (``batch_length``): a webhook POST body
never exceeds the subscription's ``max_batch_bytes`` except for a single larger item, sent alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable

from cityhub.connectors.sinks.base import BatchLimits, Item

__all__ = ["BatchLimits", "DeliveryQueue", "Item", "batch_length"]


class DeliveryQueue:
    """A FIFO of at most ``capacity`` items."""

    def __init__(self, capacity: int, *, drop_oldest: bool = False) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.drop_oldest = drop_oldest
        self._items: deque[Item] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    def __len__(self) -> int:
        return len(self._items)

    def space(self) -> int:
        return self.capacity - len(self._items)

    def fetch_limit(self, most: int) -> int:
        """How many records to fetch now: ``most`` when full is dealt with by dropping, else
        no more than there is room for (0: wait for space)."""
        return most if self.drop_oldest else min(self.space(), most)

    def oldest(self) -> Item | None:
        return self._items[0] if self._items else None

    def put(self, item: Item) -> Item | None:
        """Queue ``item``; return the item dropped to make room (``drop_oldest``), else None.
        With ``pause``, putting into a full queue is the caller's bug: ValueError."""
        dropped: Item | None = None
        if len(self._items) >= self.capacity:
            if not self.drop_oldest:
                raise ValueError("the queue is full; wait_for_space() first")
            dropped = self._items.popleft()
        self._items.append(item)
        self._readable.set()
        if len(self._items) >= self.capacity:
            self._writable.clear()
        return dropped

    def clear(self) -> int:
        """Drop everything (a replay or a lost partition); return how many items."""
        n = len(self._items)
        self._items.clear()
        self._readable.clear()
        self._writable.set()
        return n

    async def wait_for_space(self, timeout: float) -> bool:
        """Wait until an item can be put without dropping; False on timeout."""
        if self.space() > 0:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._writable.wait(), timeout)
        return self.space() > 0

    async def take(
        self,
        max_items: int,
        *,
        max_bytes: int | None = None,
        item_overhead: int = 0,
        linger: float = 0.0,
        item_size: Callable[[Item], int] | None = None,
    ) -> list[Item]:
        """The next batch, oldest first: waits for at least one item, then up to ``linger``
        seconds for a full batch (returns early once it has one).

        A batch has at most ``max_items`` items and, with ``max_bytes``, its items' sizes
        (``len(value) + item_overhead`` each, or ``item_size(item)``) add up to at most
        ``max_bytes``, except a first item that alone is larger, which comes alone (see
        ``batch_length``)."""
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        while not self._items:
            self._readable.clear()
            await self._readable.wait()
        n, full = batch_length(self._items, max_items, max_bytes, item_overhead, item_size)
        if linger > 0 and not full:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + linger
            while not full:
                left = deadline - loop.time()
                if left <= 0:
                    break
                self._readable.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._readable.wait(), left)
                if not self._items:  # cleared while lingering
                    return await self.take(
                        max_items,
                        max_bytes=max_bytes,
                        item_overhead=item_overhead,
                        linger=linger,
                        item_size=item_size,
                    )
                n, full = batch_length(self._items, max_items, max_bytes, item_overhead, item_size)
        batch = [self._items.popleft() for _ in range(n)]
        if not self._items:
            self._readable.clear()
        self._writable.set()
        return batch


def batch_length(
    items: Iterable[Item],
    max_items: int,
    max_bytes: int | None = None,
    item_overhead: int = 0,
    item_size: Callable[[Item], int] | None = None,
) -> tuple[int, bool]:
    """How many of the first ``items`` make the next batch, and whether that batch is full.

    The batch is the longest prefix of at most ``max_items`` items whose sizes (``len(value) +
    item_overhead`` each, or ``item_size(item)`` when given) add up to at most ``max_bytes`` (no
    byte bound when None), and never empty: a first item larger than ``max_bytes`` on its own is a
    batch of one. It is full, so that waiting for more items cannot make it larger, when it has
    ``max_items`` items, when the next item is there and does not fit, or, when no next item is
    queued yet, when not even an item of one byte would fit any more."""
    n = 0
    used = 0
    for item in items:
        if n == max_items:
            return n, True
        size = len(item.value) + item_overhead if item_size is None else item_size(item)
        if max_bytes is not None and n > 0 and used + size > max_bytes:
            return n, True
        n += 1
        used += size
    # Nothing more queued: full if no item, not even of one byte, could still join.
    return n, n == max_items or (max_bytes is not None and used + item_overhead + 1 > max_bytes)
