"""Settling the heap: survivors frozen out of the collector's sight, young collections rarer."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import Iterator

import pytest

from cityhub.streams.runtime import heap
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


async def test_the_part_settles_at_start_and_again_once_the_process_is_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(heap, "READY_POLL_S", 0.01)
    ready = False
    task = asyncio.create_task(heap_part(ready=lambda: ready, every=3600).run())
    try:
        await asyncio.sleep(0.05)
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0, "start-up's objects were not settled"
        gc.unfreeze()
        await asyncio.sleep(0.1)
        assert gc.get_freeze_count() == 0, "settled again before the process was ready"
        ready = True
        await asyncio.sleep(0.1)
        assert gc.get_freeze_count() > 0, "not settled once ready"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
