"""The subscriptions' delivery statuses, as the API process reads them from the
``subscription-status`` topic (``cityhub.schemas.subscription_status``). Pure: no I/O.

``apply`` never raises: a malformed record is skipped and counted. A status is only as fresh as
its ``at``; ``subscription_row`` joins a subscription's record with its status, and the status's
age, as the console and the API show them (a Kafka-topic or live-stream subscription has no
task, so no delivery process ever reports it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from cityhub.schemas.subscription import Serving, Subscription, SubscriptionState
from cityhub.schemas.subscription_status import SubscriptionStatus
from cityhub.streams.compacted_view import CompactedView

log = logging.getLogger("cityhub.delivery.status")


class SubscriptionStatusView(CompactedView):
    """The latest status record of each subscription."""

    def __init__(self) -> None:
        super().__init__(log, "status record")
        self._statuses: dict[tuple[str, str], SubscriptionStatus] = {}

    def count(self) -> int:
        return len(self._statuses)

    def _apply(self, key: str, value: bytes | None) -> None:
        """A tombstone forgets the subscription's status."""
        kind, _, rest = key.partition("/")
        tenant, _, subscription = rest.partition("/")
        if kind != "status" or not tenant or not subscription:
            raise ValueError("not a status key")
        if value is None:
            self._statuses.pop((tenant, subscription), None)
            return
        record = SubscriptionStatus.model_validate(json.loads(value))
        if record.key != key:
            raise ValueError(f"key does not match the record's ({record.key})")
        self._statuses[(tenant, subscription)] = record

    def of(self, tenant: str, subscription: str) -> SubscriptionStatus | None:
        """The subscription's latest status, if a delivery process wrote one."""
        return self._statuses.get((tenant, subscription))


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    """One subscription as the page shows it."""

    tenant: str
    id: str
    name: str
    kind: str
    state: str
    """``active``, ``paused`` or ``failing``."""
    paused: bool
    by_client: bool
    """A Kafka-topic or live-stream subscription: no delivery process reports it."""
    replayable: bool
    status: SubscriptionStatus | None
    age_seconds: int | None
    """How old the status is."""


def _age(status: SubscriptionStatus, now: float) -> int | None:
    try:
        at = datetime.fromisoformat(status.at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    return max(0, round(now - at))


def subscription_row(
    record: Subscription, status: SubscriptionStatus | None, now: float
) -> SubscriptionRow:
    """The row of ``record`` with its latest ``status`` (None: none reported). The record's
    pause wins over a status written before it; ``failing`` comes from the status only."""
    serving = record.delivery.serving
    paused = record.state is SubscriptionState.PAUSED
    by_client = serving is not Serving.TASK
    if by_client:
        status = None
    state = SubscriptionState.PAUSED.value if paused else SubscriptionState.ACTIVE.value
    if not paused and status is not None and status.state is SubscriptionState.FAILING:
        state = SubscriptionState.FAILING.value
    return SubscriptionRow(
        tenant=record.tenant,
        id=record.id,
        name=record.name,
        kind=record.delivery.kind,
        state=state,
        paused=paused,
        by_client=by_client,
        replayable=serving is Serving.TASK,
        status=status,
        age_seconds=_age(status, now) if status is not None else None,
    )


__all__ = ["SubscriptionRow", "SubscriptionStatusView", "subscription_row"]
