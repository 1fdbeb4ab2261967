"""The contract of a delivery sink (``cityhub.connectors.sinks``): one suite that every delivery
kind a task serves passes, against the in-memory double (``tests/unit/test_sink_contract.py``)
and against the real backends on the local stack, a webhook receiver on loopback and Mosquitto
(``tests/integration/test_sink_contract_backends.py``); each test module gives the suite its
``harness`` fixture (the pattern of faststream's ``tests/brokers/base/``).

A sink built by its kind from a subscription record and the settings:

- delivers a batch, every item in order, as the receiver reads it back;
- refuses what its receiver refuses with the failure kind and retriability the receiver's
  answer means (``DeliveryFailed``), and is still usable afterwards;
- stops cleanly: idempotent, ``send`` refused afterwards, no task, connection or broker
  session left behind;
- never shows a secret (the delivery's own, a broker password from the settings) in a
  ``repr``, the record's public form, an error message or a log line.

``SPEC_SAMPLES`` holds a delivery object of each kind no task serves, for the checks every kind
passes (``tests/unit/test_sink_kinds.py``)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import pytest

from cityhub.connectors.sinks import get_sink, validate_spec
from cityhub.connectors.sinks.base import Item, Sink
from cityhub.connectors.sinks.errors import DeliveryFailed, FailureKind
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import Subscription, build_subscription

NOW = "2026-12-01T10:00:00.000Z"
TENANT = "acme"

SPEC_SAMPLES: dict[str, dict[str, Any]] = {
    "kafka": {"kind": "kafka"},
    "sse": {"kind": "sse"},
}
"""A delivery object of each kind that no task serves (it has no sink to run)."""


@dataclass(frozen=True)
class Refusal:
    """A delivery and items its receiver refuses, and what the sink must say about it."""

    delivery: dict[str, Any]
    items: list[Item]
    kind: FailureKind
    retriable: bool


class Harness(Protocol):
    """A kind's sink against one backend."""

    kind: str
    settings: Settings
    secrets: tuple[str, ...]
    """Every secret of the delivery or the settings that must never show."""

    def delivery(self) -> dict[str, Any]:
        """A delivery object the backend accepts (with its secrets)."""
        ...

    async def refusal(self) -> Refusal:
        """Arrange a refusal and say what it must look like."""
        ...

    async def received(self, count: int) -> list[Any]:
        """The JSON of the items the backend received for ``delivery()``, once it has
        ``count`` of them (fewer after a few seconds: what it has)."""
        ...

    async def leftovers(self) -> list[str]:
        """What a stopped sink left behind on the backend (a broker session...), described."""
        ...


def items(count: int, start: int = 0) -> list[Item]:
    """Observations as the worker writes them to a subscription's topic."""
    return [
        Item(
            0,
            n,
            1_764_000_000_000 + n,
            b"dev-1",
            orjson.dumps({"event_id": f"e{n}", "device_id": "dev-1", "value": n / 10}),
        )
        for n in range(start, start + count)
    ]


def record_of(delivery: dict[str, Any], subscription_id: str = "contract") -> Subscription:
    spec = validate_spec({"id": subscription_id, "name": "Contract", "delivery": delivery})
    return build_subscription(spec, tenant=TENANT, now=NOW)[0]


def sink_of(harness: Harness, delivery: dict[str, Any] | None = None) -> Sink:
    record = record_of(harness.delivery() if delivery is None else delivery)
    return get_sink(harness.kind).build(record, harness.settings)


def _shown(texts: Sequence[str], secrets: Sequence[str]) -> list[str]:
    return [s for s in secrets if any(s in text for text in texts)]


class SinkContract:
    """The suite. A subclass named ``Test...`` gives it a ``harness`` fixture."""

    async def test_delivers_a_batch_in_order(self, harness: Harness) -> None:
        sink = sink_of(harness)
        batch = items(7)
        await sink.start()
        try:
            await sink.send(batch, "msg_contract_1")
            await sink.send(items(3, start=7), "msg_contract_2")
        finally:
            await sink.stop()
        got = await harness.received(10)
        assert [i["event_id"] for i in got] == [f"e{n}" for n in range(10)]
        assert got[:7] == [json.loads(i.value) for i in batch]

    async def test_refuses_with_the_failure_kind_of_the_receivers_answer(
        self, harness: Harness
    ) -> None:
        refusal = await harness.refusal()
        sink = sink_of(harness, refusal.delivery)
        await sink.start()
        try:
            with pytest.raises(DeliveryFailed) as caught:
                await sink.send(refusal.items, "msg_refused")
            assert caught.value.kind is refusal.kind
            assert caught.value.retriable is refusal.retriable
            assert not _shown([str(caught.value), repr(caught.value)], harness.secrets)
        finally:
            await sink.stop()

    async def test_a_refusal_leaves_the_sink_usable(self, harness: Harness) -> None:
        refusal = await harness.refusal()
        if refusal.delivery != harness.delivery():
            pytest.fail("a harness refuses through the items, so one sink can do both")
        sink = sink_of(harness)
        await sink.start()
        try:
            with pytest.raises(DeliveryFailed):
                await sink.send(refusal.items, "msg_refused")
            await sink.send(items(2), "msg_after")
        finally:
            await sink.stop()
        assert [i["event_id"] for i in await harness.received(2)] == ["e0", "e1"]

    async def test_stops_cleanly(self, harness: Harness) -> None:
        before = asyncio.all_tasks()
        sink = sink_of(harness)
        await sink.start()
        await sink.send(items(1), "msg_stop")
        await sink.stop()
        await sink.stop()  # idempotent
        with pytest.raises(RuntimeError):
            await sink.send(items(1), "msg_after_stop")
        await asyncio.sleep(0.05)  # a connection's close callbacks
        left = {t for t in asyncio.all_tasks() - before if not t.done()}
        assert left == set(), [t.get_coro() for t in left]
        assert await harness.leftovers() == []

    async def test_never_shows_a_secret(
        self, harness: Harness, caplog: pytest.LogCaptureFixture
    ) -> None:
        assert harness.secrets, "a harness names the secrets it holds"
        caplog.set_level(logging.DEBUG)
        record = record_of(harness.delivery())
        stored = record.model_dump_json()
        shown = [repr(record), str(record), json.dumps(record.public()), repr(record.delivery)]
        sink = get_sink(harness.kind).build(record, harness.settings)
        shown.append(repr(sink))
        await sink.start()
        try:
            await sink.send(items(1), "msg_secret")
            refusal = await harness.refusal()
            with pytest.raises(DeliveryFailed) as caught:
                await sink.send(refusal.items, "msg_secret_refused")
            shown += [str(caught.value), repr(caught.value)]
        finally:
            await sink.stop()
        shown += [r.getMessage() for r in caplog.records]
        assert not _shown(shown, harness.secrets)
        # The storage form keeps the delivery's own secrets: its sink needs them after a restart.
        assert all(s in stored for s in record.delivery.secrets())
        public = get_sink(harness.kind).public_model.model_validate(record.delivery.public())
        assert public.model_dump()["kind"] == harness.kind
