"""Keeping Python's garbage collector out of the latency of a long-running process.

A full collection walks every object the process holds: in a worker, the registry's view of
every device and its restored duplicate and window state, hundreds of thousands of objects
that live as long as the process. Measured in ``cityhub run`` at 2 000 messages/s
(2026-12-03, 2 cores): full collections paused a worker for 40 to 150 ms at a time. So, once
the process has started (stores loaded, partitions restored) and then every few minutes, the
heap is settled: one full collection frees what is garbage, and ``gc.freeze`` moves everything
that survived out of the collector's sight. Later collections walk only what is younger.
Objects frozen and then dropped are still freed by reference counting; only a reference cycle
built before a freeze and dropped after it stays (such cycles are rare here: records and
states are trees).

The youngest generation is also collected less often (every ``YOUNG_THRESHOLD`` allocations
instead of 700): a worker allocates tens of thousands of short-lived objects per batch, and a
young collection each 700 of them is overhead without a return.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from cityhub.streams.runtime.host import Part

log = logging.getLogger("cityhub")

YOUNG_THRESHOLD = 10_000
FIRST_SETTLE_S = 20.0
"""After start-up: long enough for the stores to load and a worker's partitions to restore."""
SETTLE_EVERY_S = 300.0


def settle() -> float:
    """Collect everything once, then freeze the survivors; returns the seconds it took."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - started


def heap_part(first: float = FIRST_SETTLE_S, every: float = SETTLE_EVERY_S) -> Part:
    """Settles the heap ``first`` seconds after start and then every ``every`` seconds."""

    async def run() -> None:
        _, middle, oldest = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
        await asyncio.sleep(first)
        while True:
            took = settle()
            log.debug("heap settled in %.3f s: %d objects frozen", took, gc.get_freeze_count())
            await asyncio.sleep(every)

    return Part("heap", run)
