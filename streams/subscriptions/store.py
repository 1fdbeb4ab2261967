"""Where subscriptions live: the compacted ``<prefix>.subscriptions`` topic.

The registry's machinery (``streams/compacted.py``) with the subscriptions' topic, view and key:
``SubscriptionStore`` tails the topic into a ``SubscriptionView`` and returns from writes once
the view shows them; ``InMemorySubscriptionStore`` is its double for tests without Kafka.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter, Gauge

from cityhub.connectors.sinks import validate_record
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import Subscription, record_key
from cityhub.schemas.topics import Topics
from cityhub.streams.compacted import (
    DEFAULT_WRITE_TIMEOUT,
    CompactedTopicStore,
    InMemoryCompactedStore,
    InMemoryTopic,
)
from cityhub.streams.subscriptions.view import SubscriptionView

SUBSCRIPTIONS = Gauge("cityhub_subscriptions", "Subscriptions in the in-memory view.")
MALFORMED = Counter(
    "cityhub_subscriptions_malformed",
    "Subscriptions topic records skipped because they were malformed.",
)


class SubscriptionRecordStore(Protocol):
    """What the subscriptions service needs from a store."""

    @property
    def view(self) -> SubscriptionView: ...

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def put(self, record: Subscription) -> int:
        """Write a record; return its offset once the view has applied it."""
        ...

    async def delete(self, key: str) -> int:
        """Write a tombstone for ``key``; return its offset once the view has applied it."""
        ...

    async def wait_beyond(self, offset: int, timeout: float) -> bool:
        """Wait until the view applied a record past ``offset``, at most ``timeout`` seconds;
        whether it did."""
        ...


def _update_gauges(view: SubscriptionView, applied: int, malformed: int) -> None:
    if malformed:
        MALFORMED.inc(malformed)
    SUBSCRIPTIONS.set(view.count())


class SubscriptionStore(CompactedTopicStore[SubscriptionView, Subscription]):
    """The subscriptions on Kafka."""

    def __init__(
        self,
        settings: Settings,
        *,
        client_id: str = "cityhub-subscriptions",
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
    ) -> None:
        super().__init__(
            settings,
            topic=Topics.for_prefix(settings.kafka.topic_prefix).subscriptions,
            view=SubscriptionView(read_record=validate_record),
            key_of=record_key,
            what="subscriptions",
            client_id=client_id,
            write_timeout=write_timeout,
            on_applied=_update_gauges,
            describe=lambda view: f"{view.count()} subscription(s)",
        )


class InMemorySubscriptionStore(InMemoryCompactedStore[SubscriptionView, Subscription]):
    """A ``SubscriptionRecordStore`` without Kafka, for tests of the service and the API."""

    def __init__(self, *, topic: InMemoryTopic | None = None) -> None:
        """``topic``: one shared with other stores (instances of the API, a worker)."""
        super().__init__(SubscriptionView(read_record=validate_record), record_key, topic=topic)


__all__ = ["InMemorySubscriptionStore", "SubscriptionRecordStore", "SubscriptionStore"]
