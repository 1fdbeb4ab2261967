"""Where subscriptions live: the compacted ``<prefix>.subscriptions`` topic.

The registry's machinery (``streams/compacted.py``) with the subscriptions' topic, view and key:
``SubscriptionStore`` tails the topic into a ``SubscriptionView`` and returns from writes once
the view shows them; ``InMemorySubscriptionStore`` is its double for tests without Kafka.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter, Gauge

from cityhub.connectors.sinks import validate_record
from cityhub.schemas.subscription import Subscription, record_key
from cityhub.streams.compacted_stores import InMemorySpecStore, SpecStore, TopicSpec, gauges
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


SUBSCRIPTIONS_TOPIC: TopicSpec[SubscriptionView, Subscription] = TopicSpec(
    topic=lambda topics: topics.subscriptions,
    new_view=lambda: SubscriptionView(read_record=validate_record),
    key_of=record_key,
    what="subscriptions",
    client_id="cityhub-subscriptions",
    on_applied=gauges(MALFORMED, (SUBSCRIPTIONS, SubscriptionView.count)),
    describe=lambda view: f"{view.count()} subscription(s)",
)


class SubscriptionStore(SpecStore[SubscriptionView, Subscription]):
    """The subscriptions on Kafka."""

    spec = SUBSCRIPTIONS_TOPIC


class InMemorySubscriptionStore(InMemorySpecStore[SubscriptionView, Subscription]):
    """A ``SubscriptionRecordStore`` without Kafka, for tests of the service and the API."""

    spec = SUBSCRIPTIONS_TOPIC


__all__ = ["InMemorySubscriptionStore", "SubscriptionRecordStore", "SubscriptionStore"]
