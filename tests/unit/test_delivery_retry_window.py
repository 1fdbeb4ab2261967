"""A webhook receiver down for a short while loses nothing: a failing batch is given up only
once its attempts and its least time (``webhook_min_retry_seconds``) are both spent. An outside
review saw eight attempts drawn by full jitter span 14 s, and a receiver that answered 500 for
15 s lost two items for good, ``/healthz`` ok and no alert."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

from cityhub.connectors.sinks import validate_spec
from cityhub.connectors.sinks.base import Item
from cityhub.connectors.sinks.errors import DeliveryFailed, FailureKind
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import build_subscription
from cityhub.streams.delivery.task import DeliveryTask


class DownFor:
    """Answers 500 for ``seconds`` from its first request, then takes every batch."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.first: float | None = None
        self.attempts = 0
        self.delivered: list[bytes] = []

    async def send(self, items: Sequence[Item], msg_id: str) -> None:
        self.attempts += 1
        now = time.monotonic()
        self.first = self.first or now
        if now - self.first < self.seconds:
            raise DeliveryFailed(
                "https://receiver.example answered 500",
                retriable=True,
                kind=FailureKind.HTTP_STATUS,
                status=500,
            )
        self.delivered.extend(item.value for item in items)


def _task(
    receiver: DownFor, min_retry: float, dead: list[bytes], sub_id: str = "hook"
) -> DeliveryTask:
    spec = validate_spec(
        {"id": sub_id, "name": "hook", "delivery": {"kind": "webhook", "url": "https://r.example"}}
    )
    record, _ = build_subscription(spec, tenant="city", now="2026-12-01T00:00:00Z")
    settings = Settings()
    delivery = settings.delivery.model_copy(
        update={
            "webhook_max_attempts": 3,
            "webhook_min_retry_seconds": min_retry,
            "webhook_backoff_base_seconds": 0.01,
            "webhook_backoff_cap_seconds": 0.05,
        }
    )

    async def dead_letters(
        value: bytes, key: bytes | None, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        dead.append(value)

    return DeliveryTask(
        record,
        receiver,  # type: ignore[arg-type]
        settings.model_copy(update={"delivery": delivery}),
        dead_letters=dead_letters,
        rng=random.Random(7),
    )


BATCH = [Item(0, n, 0, b"d-1", f'{{"n":{n}}}'.encode()) for n in range(2)]


async def test_an_outage_shorter_than_the_least_time_is_ridden_out() -> None:
    dead: list[bytes] = []
    receiver = DownFor(0.4)
    await asyncio.wait_for(_task(receiver, 1.0, dead)._deliver(BATCH), 10)
    assert dead == []
    assert receiver.attempts > 3  # more than webhook_max_attempts, while the time lasted
    assert receiver.delivered == [item.value for item in BATCH]


async def test_past_both_the_batch_is_given_up() -> None:
    dead: list[bytes] = []
    receiver = DownFor(60.0)
    started = time.monotonic()
    await asyncio.wait_for(_task(receiver, 0.3, dead)._deliver(BATCH), 10)
    assert time.monotonic() - started >= 0.3
    assert len(dead) == len(BATCH)
    assert receiver.delivered == []


def test_its_counters_start_at_zero_so_the_first_give_up_alerts() -> None:
    from prometheus_client import REGISTRY

    _task(DownFor(0.0), 0.0, [], sub_id="fresh-counters")  # made, not run
    labels = {"tenant": "city", "subscription": "fresh-counters"}
    for name in ("deadlettered", "failed", "retried", "delivered", "dropped"):
        value = REGISTRY.get_sample_value(f"cityhub_subscription_{name}_total", labels)
        assert value is not None, name  # the series exists before anything happened
