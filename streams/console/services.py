"""The services the console's pages call, in process, with the signed-in principal: the same
objects the API's handlers call, so every authorisation rule is the API's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cityhub.streams.console.live import LiveObservations
    from cityhub.streams.console.signouts import SignOutRecords
    from cityhub.streams.deadletters.reader import DeadLetterReader
    from cityhub.streams.delivery.status_view import SubscriptionStatusView
    from cityhub.streams.registry.import_jobs import ImportJobs
    from cityhub.streams.registry.service import Registry
    from cityhub.streams.subscriptions.service import Subscriptions


@dataclass(frozen=True, slots=True)
class ConsoleServices:
    """What the console's pages reach; None: that part is not served by this process (its
    pages say so)."""

    registry: Registry
    signouts: SignOutRecords
    """The sign-outs every API process shares (``cityhub.streams.console.signouts``)."""
    subscriptions: Subscriptions | None = None
    live: LiveObservations | None = None
    # The subscriptions', dead-letter and import pages (cityhub.streams.console.ops).
    subscription_status: SubscriptionStatusView | None = None
    dead_letters: DeadLetterReader | None = None
    imports: ImportJobs | None = None
