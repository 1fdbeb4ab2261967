"""The reference subscription router: every subscription's compiled predicate on every item.

Pure: no I/O. Its cost grows with every tenant's subscriptions, so the worker never runs it: it
runs the indexed ``SubscriptionRouter`` (``router.py``), which must route exactly as this does.
``tests/unit/test_router_index.py`` and ``tests/unit/test_router_agreements.py`` check the two
agree on random subscriptions and items, and ``bench.routing`` compares their costs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime

from cityhub.schemas.subscription import Source, Subscription, subscription_topic
from cityhub.streams.sharing.grants import DeviceFacts, GrantsSource, facts_of
from cityhub.streams.subscriptions.agreement_routing import KIND_OF_SOURCE, takes_agreement_items
from cityhub.streams.subscriptions.filter import (
    PUBLIC,
    DeviceTypeOf,
    Item,
    Predicate,
    compile_filter,
)
from cityhub.streams.subscriptions.route_index import Key


class LinearSubscriptionRouter:
    """The reference router: every subscription's compiled predicate on every item, so its cost
    grows with every tenant's subscriptions. ``SubscriptionRouter`` must route exactly as this
    does; tests and ``bench.routing`` compare the two. With ``grants``, a subscription not read
    from its Kafka topic also takes another tenant's non-public item when its tenant's
    agreement in force covers it and the filter without the tenant rule takes it."""

    def __init__(
        self,
        topic_prefix: str,
        device_type_of: DeviceTypeOf | None = None,
        *,
        grants: GrantsSource | None = None,
        device_of: DeviceFacts | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._prefix = topic_prefix
        self._device_type_of = device_type_of
        self._grants = grants
        self._device_of = device_of
        self._clock = clock
        self._routes: dict[Source, tuple[_LinearRoute, ...]] = dict.fromkeys(Source, ())

    def refresh(
        self, subscriptions: Iterable[Subscription], ready_topics: Collection[str] | None = None
    ) -> None:
        """Compile every filter of ``subscriptions`` (those whose topic is ready) anew."""
        routes: dict[Source, list[_LinearRoute]] = {source: [] for source in Source}
        by_key: dict[Key, Subscription] = {}
        for record in subscriptions:
            by_key[(record.tenant, record.id)] = record  # the last version of a key wins
        for record in by_key.values():
            topic = subscription_topic(self._prefix, record.tenant, record.id)
            if ready_topics is None or topic in ready_topics:
                matches = compile_filter(
                    record.filter, tenant=record.tenant, device_type_of=self._device_type_of
                )
                shared = (
                    compile_filter(
                        record.filter,
                        tenant=record.tenant,
                        device_type_of=self._device_type_of,
                        shared=True,
                    )
                    if takes_agreement_items(record)
                    else None
                )
                routes[record.source].append((topic, record.tenant, matches, shared))
        self._routes = {source: tuple(found) for source, found in routes.items()}

    def route(self, item: Item, source: Source = Source.OBSERVATIONS) -> list[str]:
        """The topics of the subscriptions whose compiled filter takes ``item`` (or, under an
        agreement in force, whose filter without the tenant rule does)."""
        grants = self._grants() if self._grants is not None else None
        facts = None
        when = datetime.fromtimestamp(self._clock(), UTC)
        out = []
        for topic, tenant, matches, shared in self._routes[source]:
            if matches(item):
                out.append(topic)
            elif grants is not None and shared is not None:
                if facts is None:
                    facts = facts_of(item, KIND_OF_SOURCE[source], self._device_of)
                if (
                    facts.classification != PUBLIC
                    and grants.grant_for(tenant, facts, when) is not None
                    and shared(item)
                ):
                    out.append(topic)
        return out


_LinearRoute = tuple[str, str, Predicate, "Predicate | None"]
