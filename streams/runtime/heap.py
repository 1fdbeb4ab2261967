"""Keeping Python's garbage collector out of the latency of a long-running process.

A full collection walks every object the process holds: in a worker, the registry's view of
every device and its restored duplicate and window state, hundreds of thousands of objects
that live as long as the process. Measured in ``cityhub run`` at 2 000 messages/s
(2026-12-03, 2 cores): full collections paused a worker for 40 to 150 ms at a time. So at
start-up, once the process is ready (stores loaded, serving) and then every few minutes, the
heap is settled: one full collection frees what is garbage, and ``gc.freeze`` moves everything
that survived out of the collector's sight. Later collections walk only what is younger.
Objects frozen and then dropped are still freed by reference counting; only a reference cycle
built before a freeze and dropped after it stays (such cycles are rare here: records and
states are trees).

The youngest generation is also collected less often (every ``YOUNG_THRESHOLD`` allocations
instead of 700): a worker allocates tens of thousands of short-lived objects per batch, which
then cost a few young collections instead of dozens. Measured over a 60 s run at 1 500
messages/s: the workers' collections paused them 254 ms in all against 675 ms without.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
from collections.abc import Callable

from cityhub.streams.runtime.host import Part

log = logging.getLogger("cityhub")

YOUNG_THRESHOLD = 10_000
SETTLE_EVERY_S = 300.0
SETTLE_JITTER = 0.2
"""Each process settles at its own times (±20 %): the processes of one hub must not all pause
at once (measured: five processes settling together 20 s after start stalled the pipeline for
a second)."""
READY_POLL_S = 0.5


def settle() -> float:
    """Collect everything once, then freeze the survivors; returns the seconds it took."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - started


def heap_part(ready: Callable[[], bool], every: float = SETTLE_EVERY_S) -> Part:
    """Settles the heap at once (what start-up imported and built), again once ``ready`` says
    the process has loaded its stores and state and serves (before the traffic it takes, not
    in its midst), and then about every ``every`` seconds."""

    async def run() -> None:
        _, middle, oldest = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
        settle()
        while not ready():  # noqa: ASYNC110 - readiness is a set of flags
            await asyncio.sleep(READY_POLL_S)
        while True:
            took = settle()
            log.debug("heap settled in %.3f s: %d objects frozen", took, gc.get_freeze_count())
            jitter = random.uniform(1 - SETTLE_JITTER, 1 + SETTLE_JITTER)  # noqa: S311
            await asyncio.sleep(every * jitter)

    return Part("heap", run)
