"""Which subscription topics an observation or an aggregate goes to.

Pure: no I/O. The worker keeps one ``SubscriptionRouter`` beside each agent that writes
observations (the normaliser) or aggregates (the aggregator), rebuilds it when the
subscriptions view changes (``refresh``), and writes every item to each topic ``route`` names,
before it acknowledges the input: the subscription's own topic ``<prefix>.sub.<tenant>.<id>`` is
then the Kafka-topic delivery itself, and the buffer in front of every other delivery (see
``cityhub.streams.delivery``). Routing at the point where an item is made saves decoding every
observation a second time in a separate router stage.

Paused subscriptions are routed too: pausing stops the delivery, not the routing, so a resumed
subscription catches up from its topic and loses nothing. A subscription is routed only once
its topic exists (``ready_topics``): the worker creates the topic, then routes to it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from cityhub.schemas.subscription import Source, Subscription, subscription_topic
from cityhub.streams.subscriptions.filter import DeviceTypeOf, Item, Predicate, compile_filter


@dataclass(frozen=True, slots=True)
class _Route:
    topic: str
    matches: Predicate
    record: Subscription


class SubscriptionRouter:
    """The compiled filters of every subscription, by source."""

    def __init__(self, topic_prefix: str, device_type_of: DeviceTypeOf | None = None) -> None:
        """``device_type_of`` looks a device's type up (the registry view) for items that do not
        carry one (aggregates), so that a ``device_types`` filter applies to them too."""
        self._prefix = topic_prefix
        self._device_type_of = device_type_of
        self._routes: dict[Source, tuple[_Route, ...]] = dict.fromkeys(Source, ())
        self._by_key: dict[tuple[str, str], _Route] = {}
        self.generation = 0
        """Bumped by every ``refresh`` that changed something (for callers' caches)."""

    def topic_of(self, record: Subscription) -> str:
        return subscription_topic(self._prefix, record.tenant, record.id)

    def refresh(
        self, subscriptions: Iterable[Subscription], ready_topics: Collection[str] | None = None
    ) -> bool:
        """Route to exactly ``subscriptions`` (those whose topic is in ``ready_topics``, when
        given). Filters of unchanged records are kept compiled. Returns whether anything
        changed."""
        by_key: dict[tuple[str, str], _Route] = {}
        for record in subscriptions:
            topic = self.topic_of(record)
            if ready_topics is not None and topic not in ready_topics:
                continue
            key = (record.tenant, record.id)
            old = self._by_key.get(key)
            if old is not None and _same_routing(old.record, record):
                by_key[key] = old
            else:
                matches = compile_filter(
                    record.filter, tenant=record.tenant, device_type_of=self._device_type_of
                )
                by_key[key] = _Route(topic, matches, record)
        if by_key.keys() == self._by_key.keys() and all(
            by_key[k] is self._by_key[k] for k in by_key
        ):
            return False
        self._by_key = by_key
        self._routes = {
            source: tuple(r for r in by_key.values() if r.record.source == source)
            for source in Source
        }
        self.generation += 1
        return True

    def route(self, item: Item, source: Source = Source.OBSERVATIONS) -> list[str]:
        """The topics of the subscriptions that receive ``item``."""
        return [r.topic for r in self._routes[source] if r.matches(item)]

    @property
    def topics(self) -> set[str]:
        """The topics currently routed to."""
        return {r.topic for r in self._by_key.values()}

    def __len__(self) -> int:
        return len(self._by_key)


def _same_routing(a: Subscription, b: Subscription) -> bool:
    """Whether two versions of a subscription route alike (state and delivery do not matter)."""
    return a.filter == b.filter and a.source == b.source
