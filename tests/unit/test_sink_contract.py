"""The sink contract (``tests/contracts/sink.py``) against the in-memory double
(``cityhub.connectors.sinks.memory``), which is held to the same suite as the real sinks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from cityhub.connectors.sinks.errors import DeliveryFailed, FailureKind
from cityhub.connectors.sinks.memory import MemoryKind, registered
from cityhub.schemas.settings import Settings
from tests.contracts.sink import Refusal, SinkContract, items, record_of

TOKEN = "memory-token-6f1d2c"


class MemoryHarness:
    kind = "memory"
    secrets = (TOKEN,)

    def __init__(self, sinks: MemoryKind) -> None:
        self.sinks = sinks
        self.settings = Settings.model_construct()
        self.box = sinks.mailbox("contract")

    def delivery(self) -> dict[str, Any]:
        return {"kind": "memory", "mailbox": "contract", "token": TOKEN}

    async def refusal(self) -> Refusal:
        self.box.fail_next(kind=FailureKind.HTTP_STATUS, retriable=False)
        return Refusal(self.delivery(), items(1, start=100), FailureKind.HTTP_STATUS, False)

    async def received(self, count: int) -> list[Any]:
        return [json.loads(v) for v in self.box.values()]

    async def leftovers(self) -> list[str]:
        return [f"{s!r} not stopped" for s in self.sinks.sinks if not s.stopped]


@pytest.fixture
def harness() -> Iterator[MemoryHarness]:
    kind = MemoryKind()
    with registered(kind):
        yield MemoryHarness(kind)


class TestMemorySink(SinkContract):
    pass


async def test_the_double_reports_failures_in_the_order_it_was_told(
    harness: MemoryHarness,
) -> None:
    harness.box.fail_next(2, kind=FailureKind.TIMEOUT)
    harness.box.fail_next(kind=FailureKind.REFUSED, retriable=False)
    sink = harness.sinks.build(record_of(harness.delivery()), harness.settings)
    kinds = []
    for _ in range(3):
        with pytest.raises(DeliveryFailed) as caught:
            await sink.send(items(1), "m")
        kinds.append((caught.value.kind, caught.value.retriable))
    await sink.send(items(1), "m")
    assert kinds == [
        (FailureKind.TIMEOUT, True),
        (FailureKind.TIMEOUT, True),
        (FailureKind.REFUSED, False),
    ]
    assert harness.box.attempts == 4
    assert len(harness.box.values()) == 1
