"""A webhook receiver that answers 410 Gone takes no deliveries at all: the delivery holds its
place and asks again every backoff cap, and dead-letters nothing for it. Before, each batch was
dead-lettered at once, and the next one sent: an outside review saw 181 POSTs and 1 025 items
dead-lettered in 45 s, the subscription still ``active``."""

from __future__ import annotations

import random
from collections.abc import Sequence

from cityhub.connectors.sinks import validate_spec
from cityhub.connectors.sinks.base import Item
from cityhub.connectors.sinks.errors import DeliveryFailed, FailureKind
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import SubscriptionState, build_subscription
from cityhub.streams.delivery.task import DeliveryTask

CAP_S = 0.05


class GoneThenBack:
    """Answers 410 the first ``gone`` times, then takes the batch."""

    def __init__(self, gone: int) -> None:
        self.gone = gone
        self.attempts = 0
        self.delivered: list[bytes] = []
        self.states: list[SubscriptionState] = []
        self.task: DeliveryTask | None = None

    async def send(self, items: Sequence[Item], msg_id: str) -> None:
        self.attempts += 1
        assert self.task is not None
        self.states.append(self.task.state)
        if self.attempts <= self.gone:
            raise DeliveryFailed(
                "https://receiver.example answered 410 Gone: the receiver takes no deliveries",
                retriable=True,
                kind=FailureKind.GONE,
                status=410,
            )
        self.delivered.extend(item.value for item in items)


async def test_a_gone_receiver_holds_the_batch_and_dead_letters_nothing() -> None:
    spec = validate_spec(
        {
            "id": "hook",
            "name": "hook",
            "delivery": {"kind": "webhook", "url": "https://receiver.example/h"},
        }
    )
    record, _ = build_subscription(spec, tenant="city", now="2026-12-01T00:00:00Z")
    settings = Settings()
    settings = settings.model_copy(
        update={
            "delivery": settings.delivery.model_copy(
                update={
                    "webhook_max_attempts": 2,  # a retriable failure would be dead-lettered
                    "webhook_min_retry_seconds": 0,
                    "webhook_backoff_base_seconds": CAP_S / 2,
                    "webhook_backoff_cap_seconds": CAP_S,
                }
            )
        }
    )
    dead: list[bytes] = []

    async def dead_letters(value: bytes, key: bytes | None) -> None:
        dead.append(value)

    receiver = GoneThenBack(gone=5)
    task = DeliveryTask(record, receiver, settings, dead_letters=dead_letters, rng=random.Random(7))
    receiver.task = task
    batch = [Item(0, n, 0, b"d-1", f'{{"n":{n}}}'.encode()) for n in range(3)]
    await task._deliver(batch)
    assert dead == []
    assert receiver.attempts == 6  # five 410s (more than webhook_max_attempts), then taken
    assert receiver.delivered == [item.value for item in batch]
    assert receiver.states[1:6] == [SubscriptionState.FAILING] * 5
    assert task.state is SubscriptionState.ACTIVE
