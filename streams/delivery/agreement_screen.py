"""A delivery's agreement check, in time: items under an agreement go only while it is in force,
and what goes is counted per agreement (issue 13).

A delivery task and a live stream call ``DeliverySharing.screen`` just before they send (before
the privacy screen): an item the router marked with an agreement (``cityhub-agreement``, see
``cityhub.streams.subscriptions.agreements``) whose agreement was revoked or has ended since is
dropped and settled, never sent, however long it waited in the queue. While this process's view
of the agreements is stale (``stale``), a batch with marked items waits, as personal items wait
for the privacy views: a stale view could miss a revocation. Once a batch is delivered,
``delivered`` counts its marked items per agreement (``Channel.DELIVERED``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Counter

from cityhub.connectors.sinks.base import Item
from cityhub.schemas.subscription import Subscription
from cityhub.streams.sharing.grants import GrantsSource
from cityhub.streams.sharing.usage import Channel, UsageCounts
from cityhub.streams.subscriptions.agreements import agreement_of, screen_agreements

log = logging.getLogger("cityhub.sharing")

NOT_DELIVERED = Counter(
    "cityhub_agreement_items_not_delivered_total",
    "Items queued under an agreement that a delivery dropped before sending, by reason: ended "
    "(revoked, expired), other_consumer (not the subscription tenant's agreement).",
    ["reason"],
)
HELD = Counter(
    "cityhub_agreement_items_held_total",
    "Times a delivery waited (0.2 s each) before deciding on items under an agreement: this "
    "process's view of the agreements was behind its topic.",
)

HOLD_POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class DeliverySharing:
    """What a delivery needs of the agreements: the current grants, whether they can be
    trusted, where uses are counted, and the clock."""

    grants: GrantsSource
    usage: UsageCounts | None = None
    stale: Callable[[], bool] = lambda: False
    """Whether the view behind ``grants`` may miss a revocation (behind its topic)."""
    clock: Callable[[], float] = time.time

    async def screen(self, subscription: Subscription, items: Sequence[Item]) -> list[Item]:
        """The items of a batch that may still be sent (each dropped one counted); waits while
        the agreements' view is stale and the batch holds marked items."""
        warned = False
        while self.stale() and any(agreement_of(item.headers) for item in items):
            if not warned:
                log.warning(
                    "the agreements' view of this process is behind its topic: items under "
                    "agreements for %s/%s wait until it catches up",
                    subscription.tenant,
                    subscription.id,
                )
                warned = True
            HELD.inc()
            await asyncio.sleep(HOLD_POLL_S)
        when = datetime.fromtimestamp(self.clock(), UTC)
        screened = screen_agreements(self.grants(), subscription, items, when)
        for reason, n in screened.dropped.items():
            NOT_DELIVERED.labels(reason.value).inc(n)
        return screened.send

    def delivered(self, items: Sequence[Item]) -> None:
        """Count the delivered items under each agreement they carry."""
        if self.usage is None:
            return
        counts: dict[str, int] = {}
        for item in items:
            agreement = agreement_of(item.headers)
            if agreement is not None:
                counts[agreement] = counts.get(agreement, 0) + 1
        for agreement, n in counts.items():
            self.usage.count(agreement, Channel.DELIVERED, n)
