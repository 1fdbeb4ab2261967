"""Ids kept sorted for paging with a cursor (the registry view's listings)."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from itertools import islice


class SortedIds:
    """Ids kept for listing in order with a cursor, without sorting on every request.

    Appends keep the list sorted when ids arrive in order (an import, a replay of a compacted
    topic that was written in order); otherwise the list is marked unsorted and sorted once, on
    the next read (Timsort on a nearly sorted list is close to linear).
    """

    __slots__ = ("_ids", "_sorted")

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._sorted = True

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, item_id: str) -> None:
        """Add an id that is not in the list yet."""
        if self._ids and item_id < self._ids[-1]:
            self._sorted = False
        self._ids.append(item_id)

    def remove(self, item_id: str) -> None:
        """Remove an id if present."""
        ids = self.ordered()
        i = bisect_left(ids, item_id)
        if i < len(ids) and ids[i] == item_id:
            del ids[i]

    def ordered(self) -> list[str]:
        """The ids in order (the live list: do not modify)."""
        if not self._sorted:
            self._ids.sort()
            self._sorted = True
        return self._ids

    def after(self, cursor: str | None) -> Iterator[str]:
        """The ids greater than ``cursor`` (all of them if None), in order."""
        ids = self.ordered()
        start = 0 if cursor is None else bisect_right(ids, cursor)
        return islice(ids, start, None)
