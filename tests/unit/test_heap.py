"""Settling the heap: survivors frozen out of the collector's sight, young collections rarer."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import Iterator

import pytest

from cityhub.streams.runtime.heap import YOUNG_THRESHOLD, heap_part, settle


@pytest.fixture(autouse=True)
def collector_as_it_was() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    me: Node


def test_settle_frees_garbage_and_freezes_the_survivors() -> None:
    gc.unfreeze()
    cycle = Node()
    cycle.me = cycle  # garbage that only a collection frees
    gone = weakref.ref(cycle)
    survivor = {"kept": [1, 2, 3]}
    del cycle
    settle()
    assert gone() is None, "the cycle was frozen instead of freed"
    assert gc.get_freeze_count() > 0
    assert all(obj is not survivor for obj in gc.get_objects()), "a survivor is still watched"


async def test_the_part_raises_the_young_threshold_then_settles_on_its_schedule() -> None:
    gc.unfreeze()
    task = asyncio.create_task(heap_part(first=0.05, every=3600).run())
    try:
        await asyncio.sleep(0.01)
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() == 0, "settled before its time"
        await asyncio.sleep(0.2)
        assert gc.get_freeze_count() > 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
