"""The normaliser acknowledges a raw record only when Kafka confirmed all it wrote for it."""

from __future__ import annotations

import asyncio
from typing import Any

from cityhub.streams.agents.normaliser import ack_when_confirmed


class Event:
    def __init__(self) -> None:
        self.acks = 0

    def ack(self) -> bool:
        self.acks += 1
        return True


async def test_ack_waits_for_every_delivery_and_frees_the_slot() -> None:
    loop = asyncio.get_running_loop()
    event, pending = Event(), asyncio.Semaphore(1)
    await pending.acquire()
    first: asyncio.Future[Any] = loop.create_future()
    second: asyncio.Future[Any] = loop.create_future()
    failures: list[BaseException] = []
    ack_when_confirmed(event, [first, second, first], pending, failures.append)
    first.set_result(None)
    await asyncio.sleep(0)
    assert event.acks == 0
    assert pending.locked()
    second.set_result(None)
    await asyncio.sleep(0)
    assert event.acks == 1
    assert not pending.locked()
    assert failures == []


async def test_nothing_written_is_acknowledged_at_once() -> None:
    event, pending = Event(), asyncio.Semaphore(1)
    await pending.acquire()
    ack_when_confirmed(event, [], pending, lambda exc: None)
    assert event.acks == 1
    assert not pending.locked()


async def test_a_failed_delivery_leaves_the_record_unacknowledged() -> None:
    loop = asyncio.get_running_loop()
    event, pending = Event(), asyncio.Semaphore(1)
    await pending.acquire()
    ok: asyncio.Future[Any] = loop.create_future()
    bad: asyncio.Future[Any] = loop.create_future()
    failures: list[BaseException] = []
    ack_when_confirmed(event, [ok, bad], pending, failures.append)
    bad.set_exception(RuntimeError("NotEnoughReplicas"))
    ok.set_result(None)
    await asyncio.sleep(0)
    assert event.acks == 0
    assert [str(f) for f in failures] == ["NotEnoughReplicas"]
    assert not pending.locked()
