"""Items under an agreement on a subscription's topic: how they are marked, and the check a
delivery makes again just before it sends them (issue 13).

Pure: the grants and the time are passed in. The worker's router writes another tenant's item
to a subscription's topic only under an agreement that covers it (``router.py``), and marks that
copy with the agreement's id in the ``cityhub-agreement`` header. A delivery (a task, a live
stream) sends a marked item only while that agreement is still approved, still within its
period, and held by the subscription's tenant (``AgreementCheck.screen``); an item queued before
the agreement ended or was revoked is dropped, never sent. The terms of an approved agreement
never change (they are copied into it), so the router's decision that the terms cover the item
stands; only the agreement's state and the clock can take it back.

An item of another tenant that is neither ``public`` nor marked cannot be on a subscription's
topic: only the worker writes there (the ACLs), and its router marks every such copy.

Subscriptions read directly from their Kafka topic (``kafka_topic``) cannot be checked again,
nor counted: the router never writes agreement items to them (``router.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from cityhub.connectors.sinks.base import Item
from cityhub.schemas.subscription import Subscription
from cityhub.streams.sharing.grants import Grant, Grants

AGREEMENT_HEADER = "cityhub-agreement"
"""The header of an item routed to a subscription under an agreement: the agreement's id."""


class Ended(StrEnum):
    """Why a queued item under an agreement was not delivered (the metric's ``reason``)."""

    ENDED = "ended"
    """The agreement is no longer approved (revoked), or its period is over (or not begun)."""
    OTHER_CONSUMER = "other_consumer"
    """The agreement is not one the subscription's tenant holds."""


def agreement_of(headers: object) -> str | None:
    """The agreement id an item's headers carry, or None."""
    if not headers:
        return None
    for name, value in headers:  # type: ignore[attr-defined]
        if name == AGREEMENT_HEADER and isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
    return None


def agreement_header(grant: Grant) -> tuple[str, bytes]:
    """The header that marks a copy routed under ``grant``."""
    return AGREEMENT_HEADER, grant.agreement_id.encode()


def grant_in_force(
    grants: Grants, agreement_id: str, consumer: str, when: datetime
) -> Grant | None:
    """The grant of ``agreement_id`` when ``consumer`` holds it and it is active at ``when``."""
    grant = grants.get(agreement_id)
    if grant is None or grant.consumer != consumer or not grant.active_at(when):
        return None
    return grant


@dataclass(slots=True)
class AgreementScreened:
    """A batch after the agreement check."""

    send: list[Item] = field(default_factory=list)
    """The items that may go, in the batch's order."""
    agreements: dict[str, int] = field(default_factory=dict)
    """How many of ``send`` go under each agreement (what to count once they are delivered)."""
    dropped: dict[Ended, int] = field(default_factory=dict)


def screen_agreements(
    grants: Grants, subscription: Subscription, items: Sequence[Item], when: datetime
) -> AgreementScreened:
    """The items of a batch that ``subscription`` may still receive at ``when``: unmarked items
    of its own tenant (or public ones) as they are, marked ones only under an agreement in force.
    Reads headers only, never an item's JSON."""
    out: AgreementScreened = AgreementScreened()
    tenant = subscription.tenant
    for item in items:
        agreement = agreement_of(item.headers)
        if agreement is None:
            out.send.append(item)
            continue
        grant = grants.get(agreement)
        if grant is None or grant.consumer != tenant:
            reason = Ended.ENDED if grant is None else Ended.OTHER_CONSUMER
            out.dropped[reason] = out.dropped.get(reason, 0) + 1
            continue
        if not grant.active_at(when):
            out.dropped[Ended.ENDED] = out.dropped.get(Ended.ENDED, 0) + 1
            continue
        out.send.append(item)
        out.agreements[agreement] = out.agreements.get(agreement, 0) + 1
    return out
