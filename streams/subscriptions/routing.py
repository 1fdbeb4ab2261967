"""Keeps a worker's ``SubscriptionRouter`` in step with the subscriptions topic.

Runs in every worker process beside the agents that route (the normaliser, the aggregator). It
creates a new subscription's topic before routing to it, and deletes the topic of a deleted
subscription ``delete_grace`` seconds after it disappeared from the view (by then every worker
has stopped routing to it; one that had not would recreate it, since the broker auto-creates
topics, and the next grace period deletes it again).

The agents wait for ``ready`` before their first record: after a restart, no observation may
pass before the existing subscriptions are routed, or their subscribers would miss it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from aiokafka.errors import KafkaError

from cityhub.schemas.errors import CityhubError
from cityhub.streams import metrics
from cityhub.streams.subscriptions.router import SubscriptionRouter
from cityhub.streams.subscriptions.store import SubscriptionRecordStore

log = logging.getLogger("cityhub.subscriptions.routing")

POLL_INTERVAL_S = 0.2
DEFAULT_DELETE_GRACE_S = 60.0


class TopicAdmin(Protocol):
    """What the loop needs of ``SubscriptionTopics``."""

    known: set[str]

    async def ensure(self, topic: str) -> bool | None:
        """Create ``topic`` unless it exists (whether it did: ignored here)."""
        ...

    async def delete(self, topic: str) -> None: ...

    async def close(self) -> None: ...


class Routing:
    """The router of one worker process and the loop that refreshes it."""

    def __init__(
        self,
        store: SubscriptionRecordStore,
        router: SubscriptionRouter,
        topics: TopicAdmin,
        *,
        delete_grace: float = DEFAULT_DELETE_GRACE_S,
    ) -> None:
        self.store = store
        self.router = router
        self._topics = topics
        self._delete_grace = delete_grace
        self._seen_applied = -1
        self._gone: dict[str, float] = {}
        """Topics of subscriptions no longer in the view, and since when."""
        self._missing = 0
        """Subscriptions whose topic could not be created yet (retried every poll)."""
        self.ready = False
        """True once the router reflects the whole subscriptions topic as it was at start."""

    async def sync(self) -> None:
        """Create missing topics, refresh the router, and delete topics gone long enough."""
        view = self.store.view
        applied = view.applied
        records = view.all()
        missing = 0
        for record in records:
            topic = self.router.topic_of(record)
            if topic not in self._topics.known:
                try:
                    await self._topics.ensure(topic)
                except (TimeoutError, CityhubError, KafkaError, OSError) as exc:
                    missing += 1
                    log.warning("cannot create %s yet (%s); not routed until it exists", topic, exc)
        self._missing = missing
        before = self.router.topics
        if self.router.refresh(records, ready_topics=self._topics.known):
            log.info("routing to %d subscription(s)", len(self.router))
            metrics.ROUTED_SUBSCRIPTIONS.set(len(self.router))
        now = time.monotonic()
        current = self.router.topics
        for topic in before - current:
            self._gone.setdefault(topic, now)
        for topic in list(self._gone):
            if topic in current:
                del self._gone[topic]
            elif now - self._gone[topic] >= self._delete_grace:
                del self._gone[topic]
                try:
                    await self._topics.delete(topic)
                except (TimeoutError, CityhubError, KafkaError, OSError) as exc:
                    log.warning("cannot delete %s (%s)", topic, exc)
        self._seen_applied = applied

    async def run(self) -> None:
        """Refresh whenever the view changed, until cancelled."""
        while not self.store.ready:  # noqa: ASYNC110 - the store offers readiness as a flag
            await asyncio.sleep(0.05)
        try:
            while True:
                offset = self.store.view.offset
                if self.store.view.applied != self._seen_applied or self._gone or self._missing:
                    await self.sync()
                    self.ready = True
                # Woken by the next record the view applies (a new subscription is routed at
                # once); every POLL_INTERVAL_S otherwise, for the retries and the grace.
                await self.store.wait_beyond(offset, POLL_INTERVAL_S)
        finally:
            await self._topics.close()
