"""One compacted topic's two stores, declared once: its ``TopicSpec``.

Most compacted topics of the hub are followed the same way: a store on Kafka
(``CompactedTopicStore``) and its double for tests (``InMemoryCompactedStore``) over the same
view, key and gauges. A topic's module declares those in a ``TopicSpec`` and names its stores
as subclasses of ``SpecStore`` and ``InMemorySpecStore`` that set ``spec``; ``gauges`` makes
the usual ``on_applied`` (count the malformed records, set a gauge or two from the view).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic

from prometheus_client import Counter, Gauge

from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.compacted import (
    DEFAULT_WRITE_TIMEOUT,
    CompactedTopicStore,
    InMemoryCompactedStore,
    InMemoryTopic,
    R,
    V,
)


@dataclass(frozen=True, slots=True)
class TopicSpec(Generic[V, R]):
    """A compacted topic as its stores follow it (``CompactedTopicStore``'s arguments)."""

    topic: Callable[[Topics], str]
    """Its name among the hub's topics (``lambda topics: topics.registry``)."""
    new_view: Callable[[], V]
    """A view for a store that is given none."""
    key_of: Callable[[R], str]
    what: str
    """The store's name in logs and errors."""
    client_id: str
    """The Kafka client id of a store that is given none."""
    on_applied: Callable[[V, int, int], None] | None = None
    describe: Callable[[V], str] | None = None


class SpecStore(CompactedTopicStore[V, R]):
    """A ``CompactedTopicStore`` of the topic its subclass declares in ``spec``."""

    spec: TopicSpec[V, R]

    def __init__(
        self,
        settings: Settings,
        *,
        view: V | None = None,
        client_id: str | None = None,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
    ) -> None:
        spec = self.spec
        super().__init__(
            settings,
            topic=spec.topic(Topics.for_prefix(settings.kafka.topic_prefix)),
            view=spec.new_view() if view is None else view,
            key_of=spec.key_of,
            what=spec.what,
            client_id=spec.client_id if client_id is None else client_id,
            write_timeout=write_timeout,
            on_applied=spec.on_applied,
            describe=spec.describe,
        )


class InMemorySpecStore(InMemoryCompactedStore[V, R]):
    """An ``InMemoryCompactedStore`` of the topic its subclass declares in ``spec``.
    ``topic``: one shared with other stores (other processes: API instances, a worker)."""

    spec: TopicSpec[V, R]

    def __init__(self, *, view: V | None = None, topic: InMemoryTopic | None = None) -> None:
        view = self.spec.new_view() if view is None else view
        super().__init__(view, self.spec.key_of, topic=topic)


def gauges(
    malformed: Counter | None,
    *gauge_reads: tuple[Gauge, Callable[[V], float]],
    label: str | None = None,
) -> Callable[[V, int, int], None]:
    """An ``on_applied``: count a batch's malformed records in ``malformed`` (in its child
    ``label`` if given), then set each gauge to what its function reads off the view."""

    def update(view: V, applied: int, skipped: int) -> None:
        if skipped and malformed is not None:
            (malformed if label is None else malformed.labels(label)).inc(skipped)
        for gauge, read in gauge_reads:
            gauge.set(read(view))

    return update


__all__ = ["InMemorySpecStore", "SpecStore", "TopicSpec", "gauges"]
