"""Writing the subscriptions' delivery statuses to the ``subscription-status`` topic, and reading
them back (the API's ``SubscriptionStatusStore``).

Every delivery process runs one ``StatusPublisher`` beside its ``DeliveryManager``: every
``interval`` seconds (5) it reads the delivery metrics of the subscriptions this process delivers
(its tasks that hold their partition) or measures (the paused ones), and writes the records that
changed, or were not written for 30 s (``StatusRounds``), keyed ``status/<tenant>/<id>``; a
subscription deleted gets a tombstone. A failed write is retried next round. The API process
follows the topic whole (one small record per subscription) into a ``SubscriptionStatusView``.
Delivery never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from prometheus_client import Gauge
from prometheus_client.metrics_core import Metric

from cityhub.connectors.kafka import create_producer
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription_status import SubscriptionStatus
from cityhub.schemas.topics import Topics
from cityhub.streams.compacted_stores import InMemorySpecStore, SpecStore, TopicSpec, gauges
from cityhub.streams.delivery import metrics as m
from cityhub.streams.delivery.status import Key, StatusRounds, figures_of
from cityhub.streams.delivery.status_view import SubscriptionStatusView
from cityhub.streams.sharing.usage_publisher import new_process_id

log = logging.getLogger("cityhub.delivery.status")

STATUS_RECORDS = Gauge(
    "cityhub_subscription_status_records", "Subscription status records in the API's view."
)

DEFAULT_INTERVAL = 5.0

Send = Callable[[str, bytes | None], Awaitable[None]]
"""Writes one record (key, value or None for a tombstone); returns once Kafka confirmed it."""


class Reporting(Protocol):
    """What the publisher asks its delivery manager (``DeliveryManager``) each round."""

    def reporting(self) -> set[Key]:
        """The subscriptions this process delivers (a task holding its partition) or measures
        (paused ones)."""
        ...

    def present(self) -> set[Key]:
        """Every subscription in the view."""
        ...


def _families() -> Iterable[Metric]:
    for metric in (
        m.STATE,
        m.LAG_MESSAGES,
        m.LAG_SECONDS,
        m.DELIVERED,
        m.FAILED,
        m.DEADLETTERED,
        m.DROPPED,
    ):
        yield from metric.collect()


class StatusPublisher:
    """Writes the statuses of one delivery process's subscriptions every ``interval`` seconds."""

    def __init__(
        self,
        source: Reporting,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.time,
        process: str | None = None,
        families: Callable[[], Iterable[Metric]] = _families,
    ) -> None:
        self._source = source
        self._interval = interval
        self._clock = clock
        self._families = families
        self.rounds = StatusRounds(process=process or new_process_id(), since=clock())

    async def publish(self, send: Send) -> int:
        """One round: write what is due; how many records were written (tombstones too). A
        failure is logged, and what was not written is due again next round."""
        now = self._clock()
        records, gone = self.rounds.round(
            figures_of(self._families()), self._source.reporting(), self._source.present(), now
        )
        written = 0
        for i, record in enumerate(records):
            try:
                await send(record.key, record.model_dump_json().encode())
            except Exception as exc:
                self.rounds.failed(records[i:])
                log.warning("writing subscription statuses failed (%r); retrying", exc)
                return written
            written += 1
        for key in gone:
            with contextlib.suppress(Exception):
                await send(key, None)
                written += 1
        return written

    async def run_with(self, send: Send) -> None:
        """Publish every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self._interval)
            await self.publish(send)

    async def run(self, settings: Settings) -> None:
        """Publish on Kafka (a producer of its own) until cancelled."""
        topic = Topics.for_prefix(settings.kafka.topic_prefix).subscription_status
        producer = create_producer(settings.kafka, client_id="cityhub-subscription-status")
        await producer.start()

        async def send(key: str, value: bytes | None) -> None:
            await producer.send_and_wait(topic, value=value, key=key.encode(), partition=0)

        try:
            await self.run_with(send)
        finally:
            await producer.stop()


def _status_key(record: SubscriptionStatus) -> str:
    return record.key


STATUS_TOPIC: TopicSpec[SubscriptionStatusView, SubscriptionStatus] = TopicSpec(
    topic=lambda topics: topics.subscription_status,
    new_view=SubscriptionStatusView,
    key_of=_status_key,
    what="subscription status",
    client_id="cityhub-subscription-status",
    on_applied=gauges(None, (STATUS_RECORDS, SubscriptionStatusView.count)),
    describe=lambda view: f"{view.count()} subscription status(es)",
)


class SubscriptionStatusStore(SpecStore[SubscriptionStatusView, SubscriptionStatus]):
    """The status topic followed into a ``SubscriptionStatusView`` (the API's; it writes
    nothing here)."""

    spec = STATUS_TOPIC


class InMemorySubscriptionStatusStore(
    InMemorySpecStore[SubscriptionStatusView, SubscriptionStatus]
):
    """The status topic without Kafka: ``send`` is a publisher's ``Send``."""

    spec = STATUS_TOPIC

    async def send(self, key: str, value: bytes | None) -> None:
        self.append(key, value)


__all__ = [
    "InMemorySubscriptionStatusStore",
    "Reporting",
    "StatusPublisher",
    "SubscriptionStatusStore",
]
