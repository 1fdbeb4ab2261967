"""Writing the uses counted under agreements to the ``agreement-usage`` topic, and reading them
back (the API's ``UsageStore``).

Every process that enforces agreements (routing, delivery, the API's reads) owns one
``UsageCounts`` (pure, ``cityhub.streams.sharing.usage``) that its enforcement points count
into, and one ``UsagePublisher`` that writes the changed cumulative totals every ~2 s, keyed
``usage/<agreement id>/<process>``: ``process`` is unique per process start, so a restart adds a
record instead of overwriting one and the sum over the records stays right. A failed write is
retried with the next round (the totals are cumulative: nothing is lost but time). Counting
never waits for Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge

from cityhub.connectors.kafka import create_producer
from cityhub.schemas.settings import Settings
from cityhub.schemas.sharing import AgreementUsage
from cityhub.schemas.timefmt import rfc3339
from cityhub.schemas.topics import Topics
from cityhub.streams.compacted_stores import InMemorySpecStore, SpecStore, TopicSpec, gauges
from cityhub.streams.sharing.usage import Channel, UsageCounts
from cityhub.streams.sharing.usage_view import UsageView

log = logging.getLogger("cityhub.sharing.usage")

USES = Counter(
    "cityhub_agreement_uses_total",
    "Items used under agreements by this process (delivered to a consumer's subscription, or "
    "returned by a consumer's read), counted as they are written to the agreement-usage topic.",
    ["channel"],
)
USAGE_RECORDS = Gauge("cityhub_agreement_usage_records", "Usage records in the API's view.")

DEFAULT_INTERVAL = 2.0

Send = Callable[[str, bytes], Awaitable[None]]
"""Writes one record (key, value) and returns once Kafka confirmed it."""


def new_process_id() -> str:
    """A counting process's name, unique per process start: host, pid and a random suffix."""
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())[:64]
    return f"{host or 'host'}-{os.getpid()}-{secrets.token_hex(4)}"


class UsagePublisher:
    """Drains a ``UsageCounts`` into the usage topic every ``interval`` seconds."""

    def __init__(
        self,
        counts: UsageCounts,
        *,
        process: str | None = None,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counts = counts
        self.process = process or new_process_id()
        self._interval = interval
        self._clock = clock
        self._written: dict[str, tuple[int, int]] = {}
        self._retry = False
        self.ready = False

    def _due(self) -> dict[str, tuple[int, int]]:
        """Each agreement's (delivered, read) totals that differ from what was written."""
        totals = self.counts.take_changed()
        if totals is None and self._retry:
            totals = self.counts.totals()
        if totals is None:
            return {}
        by_agreement: dict[str, tuple[int, int]] = {}
        for (agreement, channel), n in totals.items():
            delivered, read = by_agreement.get(agreement, (0, 0))
            if channel is Channel.DELIVERED:
                delivered = n
            else:
                read = n
            by_agreement[agreement] = (delivered, read)
        return {a: t for a, t in by_agreement.items() if self._written.get(a) != t}

    async def publish(self, send: Send) -> int:
        """Write the changed totals once; how many records were written. A failure is logged
        and leaves them due for the next call."""
        due = self._due()
        if not due:
            return 0
        at = rfc3339(self._clock())
        try:
            for agreement, (delivered, read) in sorted(due.items()):
                record = AgreementUsage(
                    agreement=agreement,
                    process=self.process,
                    delivered=delivered,
                    read=read,
                    at=at,
                )
                await send(record.key, record.model_dump_json().encode())
                before = self._written.get(agreement, (0, 0))
                self._written[agreement] = (delivered, read)
                USES.labels(Channel.DELIVERED.value).inc(max(0, delivered - before[0]))
                USES.labels(Channel.READ.value).inc(max(0, read - before[1]))
        except Exception:
            self._retry = True
            log.warning("writing agreement usage failed; retrying in %.0f s", self._interval)
            return 0
        self._retry = False
        return len(due)

    async def run_with(self, send: Send) -> None:
        """Publish every ``interval`` seconds until cancelled, and once more when cancelled."""
        self.ready = True
        try:
            while True:
                await asyncio.sleep(self._interval)
                await self.publish(send)
        finally:
            self.ready = False
            with contextlib.suppress(Exception):
                await self.publish(send)

    async def run(self, settings: Settings) -> None:
        """Publish on Kafka (a producer of its own) until cancelled."""
        topic = Topics.for_prefix(settings.kafka.topic_prefix).agreement_usage
        producer = create_producer(settings.kafka, client_id="cityhub-agreement-usage")
        await producer.start()

        async def send(key: str, value: bytes) -> None:
            await producer.send_and_wait(topic, value=value, key=key.encode(), partition=0)

        try:
            await self.run_with(send)
        finally:
            await producer.stop()


def _usage_key(record: AgreementUsage) -> str:
    return record.key


USAGE_TOPIC: TopicSpec[UsageView, AgreementUsage] = TopicSpec(
    topic=lambda topics: topics.agreement_usage,
    new_view=UsageView,
    key_of=_usage_key,
    what="agreement usage",
    client_id="cityhub-agreement-usage",
    on_applied=gauges(None, (USAGE_RECORDS, UsageView.count)),
    describe=lambda view: f"{view.count()} usage record(s)",
)


class UsageStore(SpecStore[UsageView, AgreementUsage]):
    """The usage topic followed into a ``UsageView`` (the API's; it writes nothing here)."""

    spec = USAGE_TOPIC


class InMemoryUsageStore(InMemorySpecStore[UsageView, AgreementUsage]):
    """The usage topic without Kafka: ``send`` is a publisher's ``Send``."""

    spec = USAGE_TOPIC

    async def send(self, key: str, value: bytes) -> None:
        self.append(key, value)


__all__ = [
    "InMemoryUsageStore",
    "UsagePublisher",
    "UsageStore",
    "new_process_id",
]
