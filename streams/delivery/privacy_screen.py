"""A delivery's privacy screen, in time: ``screen`` once the decision can be trusted.

Items under an agreement are screened first (``agreement_screen.py``): one whose agreement ended
is dropped before the privacy screen sees it.

A delivery task and a live stream call ``screen_when_current`` just before they send: while
this process's privacy views are stale, or a key an item needs may not have reached it yet, a
batch with personal items waits, so that no decision is made on a view that could miss a
withdrawal and no item is dropped for a key still on its way (``cityhub.streams.privacy.gate``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from prometheus_client import Counter

from cityhub.connectors.sinks.base import Item
from cityhub.schemas.subscription import Subscription
from cityhub.streams.delivery.agreement_screen import DeliverySharing
from cityhub.streams.privacy.gate import PrivacyGate, Screened, screen
from cityhub.streams.privacy.purpose import mark_of
from cityhub.streams.subscriptions.agreements import agreement_of

log = logging.getLogger("cityhub.privacy")

HELD = Counter(
    "cityhub_personal_items_held_total",
    "Times a delivery waited (0.2 s each) before deciding on personal items: this process's "
    "privacy views were behind their topics, or a key an item needs had not reached it yet.",
)


HOLD_POLL_S = 0.2


async def screen_when_current(
    gate: PrivacyGate | None,
    subscription: Subscription,
    items: Sequence[Item],
    sharing: DeliverySharing | None = None,
) -> Screened:
    """``screen``, once the decision can be trusted: while the privacy views are stale, or a
    key an item needs may not have reached this process yet, a batch with personal items waits
    (nothing of it is settled meanwhile; a stale view could miss a withdrawal). Fails closed:
    it waits for as long as the views cannot catch up. With ``sharing``, items whose agreement
    ended are dropped first; without it, every item under an agreement is (nothing to check
    the agreement against)."""
    if sharing is not None:
        items = await sharing.screen(subscription, items)
    else:
        items = [item for item in items if agreement_of(item.headers) is None]
    warned = False
    while True:
        personal = gate is not None and any(mark_of(item.headers) for item in items)
        if personal and gate is not None and gate.stale():
            if not warned:
                log.warning(
                    "the privacy views of this process are behind their topics: personal items "
                    "of %s/%s wait until they catch up",
                    subscription.tenant,
                    subscription.id,
                )
                warned = True
            HELD.inc()
            await asyncio.sleep(HOLD_POLL_S)
            continue
        screened = screen(gate, subscription, items)
        if not screened.held:
            return screened
        HELD.inc()
        await asyncio.sleep(HOLD_POLL_S)
