"""The privacy gate: the purpose check (``purpose.py``) against the live views, where personal
items move: when the worker routes them, and when a delivery (a task, a live stream) is about to
send them.

Every process that routes or delivers holds the views it needs (the register of processing
activities, the consents, the data subjects' keys), each following its compacted topic; the gate
reads them at every decision and caches nothing, so a withdrawal, an erasure or the end of an
activity is seen by the next decision after the view applied it.

At delivery the gate also opens what passed: a personal item of a subject-linked device is
sealed on every topic (``value``, ``location`` and ``extra`` under the subject's key, see
``sealing.py``); ``screen`` gives the items to send with those fields back in place (and
``data_subject`` and ``sealed`` gone), or refuses the item as ``erased`` when the key is gone.
For what it delivered, ``log_records`` makes the processing-log records: one per data subject
and per trace (one uplink's observations share a trace) of the batch.

Another tenant's personal item, routed under an agreement (issue 13), is checked against the
provider's activity that the agreement's offer names (``purpose.py``): at routing with the grant
the router chose it under, at delivery with the agreement its ``cityhub-agreement`` header names,
looked up in the current grants (``grants``, set by the wiring; none: such items are refused as
``other_tenant``). Its processing-log record names the provider's tenant and activity.

Counted: ``cityhub_personal_items_total{stage, outcome}`` with outcome ``passed`` or the
refusal's reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

import orjson
from prometheus_client import Counter

from cityhub.connectors.sinks.base import Item
from cityhub.schemas.errors import KeyErased, SealingError
from cityhub.schemas.processing_log import Action, ProcessingLogRecord, processing_record
from cityhub.schemas.subscription import Subscription
from cityhub.schemas.trace_context import TRACEPARENT, parse_traceparent
from cityhub.streams.privacy.purpose import (
    Activities,
    ConsentLookup,
    PersonalMark,
    Refusal,
    check,
    check_activity,
    granted_activity,
    mark_of,
)
from cityhub.streams.privacy.sealing import SubjectKey, open_sealed
from cityhub.streams.sharing.grants import EMPTY, Grant, GrantsSource
from cityhub.streams.subscriptions.agreements import agreement_of

log = logging.getLogger("cityhub.privacy")

ROUTE = "route"
DELIVER = "deliver"
READ = "read"
PASSED = "passed"
MAX_STALENESS_S = 2.0
"""How old the privacy views may be when a delivery decides on a personal item: with the
views' own fetch wait (0.1 s) and a delivery's poll, well inside the 5-second revocation
bound."""

PERSONAL_ITEMS = Counter(
    "cityhub_personal_items_total",
    "Personal items checked against the processing activity they are for, by stage (route, "
    "deliver, read) and outcome (passed, or the reason it was refused).",
    ["stage", "outcome"],
)


class KeyLookup(Protocol):
    """The data subjects' keys (``keys_view.SubjectKeyView``)."""

    def by_id(self, key_id: str) -> SubjectKey | None: ...

    def current(self, tenant: str, subject: str) -> SubjectKey | None: ...


@dataclass(slots=True)
class Screened:
    """A batch after the gate: what to send, and which of it is personal (for the log)."""

    send: list[Item] = field(default_factory=list)
    """The items to deliver, personal ones opened, in the batch's order."""
    passed: list[Item] = field(default_factory=list)
    """The same items as read from the topic (personal ones still sealed): what a dead letter
    may keep."""
    personal: list[tuple[Item, PersonalMark]] = field(default_factory=list)
    """The personal items among ``send`` (as read from the topic, with their marks)."""
    refused: int = 0
    held: bool = False
    """The batch must wait: a key it needs may not have reached this process's view yet.
    Screen it again shortly; nothing of it is settled."""


class PrivacyGate:
    """The purpose check of one process, over its views."""

    def __init__(
        self,
        activities: Activities,
        consents: ConsentLookup,
        keys: KeyLookup,
        *,
        clock: Callable[[], float] = time.time,
        ready: Callable[[], bool] = lambda: True,
        caught_up_at: Callable[[], float] = time.time,
        keys_caught_up_at: Callable[[], float] | None = None,
    ) -> None:
        """``ready``: whether the views have read their topics to the end. A refusal settles an
        item for good (its offset is committed), so nothing may be checked before.
        ``caught_up_at``: when the stalest of the views last held all of its topic (a delivery
        holds personal items while that is more than ``MAX_STALENESS_S`` ago);
        ``keys_caught_up_at``: the same of the keys' view alone (default ``caught_up_at``)."""
        self.activities = activities
        self.consents = consents
        self.keys = keys
        self._clock = clock
        self.ready = ready
        self._caught_up_at = caught_up_at
        self._keys_caught_up_at = keys_caught_up_at or caught_up_at
        self.grants: GrantsSource = lambda: EMPTY
        """The current agreements (the wiring sets the sharing view's): what another tenant's
        personal item is delivered under."""
        self._screened_under: dict[str, Grant] = {}
        """Each agreement a delivery was screened under: its log record names the agreement's
        activity even when the agreement ended between the screening and the log."""

    def stale(self) -> bool:
        """Whether a view has not been seen caught up with its topic for ``MAX_STALENESS_S``:
        a decision on it could miss a withdrawal, so personal items wait."""
        return self._clock() - self._caught_up_at() > MAX_STALENESS_S

    def admit(
        self,
        subscription: Subscription,
        mark: PersonalMark,
        stage: str,
        grant: Grant | None = None,
    ) -> Refusal | None:
        """None when the item may reach ``subscription`` now, else why not; counted. ``grant``:
        the agreement the item goes under, if it is another tenant's."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        refusal = check(
            subscription,
            mark,
            activities=self.activities,
            consents=self.consents,
            now=now,
            grant=grant,
        )
        PERSONAL_ITEMS.labels(stage, refusal.value if refusal is not None else PASSED).inc()
        return refusal

    def admit_read(
        self, tenant: str, slug: str | None, mark: PersonalMark, grant: Grant | None = None
    ) -> Refusal | None:
        """The check for a read through the API by ``tenant`` that names activity ``slug``;
        another tenant's item under ``grant`` (an agreement of a personal offer in force) is
        checked against the provider's activity instead (``purpose.py``)."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        provider = granted_activity(tenant, mark, grant, now)
        if provider is not None:
            tenant, slug = mark.tenant, provider
        refusal = check_activity(
            tenant, slug, mark, activities=self.activities, consents=self.consents, now=now
        )
        PERSONAL_ITEMS.labels(READ, refusal.value if refusal is not None else PASSED).inc()
        return refusal

    def routes(
        self,
        topics: Sequence[str],
        mark: PersonalMark,
        subscription_at: Callable[[str], Subscription | None],
        grant_at: Callable[[str], Grant | None] | None = None,
    ) -> list[str]:
        """Of the topics the router chose for a personal item, those whose subscription it may
        reach (the worker's check, before it writes the item to them). ``grant_at``: the
        agreement the router chose a topic under (``SubscriptionRouter.grant_at``)."""
        allowed = []
        for topic in topics:
            record = subscription_at(topic)
            grant = grant_at(topic) if grant_at is not None else None
            if record is not None and self.admit(record, mark, ROUTE, grant) is None:
                allowed.append(topic)
        return allowed

    def grant_of(self, item: Item, subscription: Subscription) -> Grant | None:
        """The agreement a delivered item is marked with, when the subscription's tenant holds
        it (whether it is in force is the purpose check's question)."""
        agreement = agreement_of(item.headers)
        if agreement is None:
            return None
        grant = self.grants().get(agreement)
        if grant is None or grant.consumer != subscription.tenant:
            return None
        self._screened_under[agreement] = grant
        return grant

    def screen(self, subscription: Subscription, items: Sequence[Item]) -> Screened:
        """The items of a batch that may be delivered to ``subscription`` now, personal ones
        opened (the delivery's check, just before it sends). An item without a mark is not
        personal and passes as it is."""
        screened = Screened()
        for item in items:
            mark = mark_of(item.headers)
            if mark is None:
                screened.send.append(item)
                screened.passed.append(item)
                continue
            if isinstance(mark, Refusal):
                self._refuse(mark)
                screened.refused += 1
                continue
            grant = (
                self.grant_of(item, subscription) if mark.tenant != subscription.tenant else None
            )
            if self.admit(subscription, mark, DELIVER, grant) is not None:
                screened.refused += 1
                continue
            try:
                opened = self.open(item, mark)
            except KeyErased:
                if self._keys_caught_up_at() * 1000 < item.timestamp_ms:
                    # The key may be newer than this view (it was written before the item):
                    # not erased until a view that is younger than the item says so.
                    screened.held = True
                    return screened
                self._refuse(Refusal.ERASED)
                screened.refused += 1
                continue
            except (SealingError, ValueError) as exc:
                log.warning("a personal item of %s/%s does not open: %s", *_labels(item), exc)
                self._refuse(Refusal.UNREADABLE)
                screened.refused += 1
                continue
            screened.send.append(opened)
            screened.passed.append(item)
            screened.personal.append((item, mark))
        return screened

    def open(self, item: Item, mark: PersonalMark) -> Item:
        """``item`` with its sealed fields back in place; as it is when it holds none (a device
        without a data subject). Raises ``KeyErased`` once the subject's keys are shredded,
        ``Unsealable`` (a ``SealingError``) or ValueError when it is not a sealed item."""
        doc = orjson.loads(item.value)
        if not isinstance(doc, dict):
            raise ValueError("a personal item is not a JSON object")
        token = doc.pop("sealed", None)
        subject = doc.pop("data_subject", None)
        if token is None:
            return replace(item, value=orjson.dumps(doc)) if subject is not None else item
        if mark.subject is None or subject != mark.subject or not isinstance(token, str):
            raise ValueError("the item's data subject disagrees with its mark")
        event = doc.get("event_id")
        if not isinstance(event, str):
            raise ValueError("a sealed item without an event id")
        fields = open_sealed(
            token, tenant=mark.tenant, subject=mark.subject, event_id=event, key_of=self.keys.by_id
        )
        for name in ("value", "location", "extra"):
            if name in fields:
                doc[name] = fields[name]
        return replace(item, value=orjson.dumps(doc))

    @staticmethod
    def _refuse(refusal: Refusal) -> None:
        PERSONAL_ITEMS.labels(DELIVER, refusal.value).inc()

    def activity_uri(self, subscription: Subscription) -> str:
        """The id (URI) of the activity ``subscription`` serves, for the processing log."""
        slug = subscription.processing_activity or ""
        activity = self.activities.get(subscription.tenant, slug)
        return activity.id if activity is not None else slug

    def log_records(
        self,
        subscription: Subscription,
        personal: Sequence[tuple[Item, PersonalMark]],
        *,
        started: float,
        ended: float,
        ok: bool = True,
        action: Action = "deliver",
    ) -> list[ProcessingLogRecord]:
        """One record per data subject and per trace of the personal items delivered: the
        activity, the recipient (the subscription and its kind), when, how many items. An item
        of another tenant delivered under an agreement is logged under the provider's tenant
        and the activity the agreement's offer names."""
        groups: dict[tuple[str | None, bytes | None, str, str], int] = {}
        own = (subscription.tenant, self.activity_uri(subscription))
        for item, mark in personal:
            trace = _header(item, TRACEPARENT)
            controller = own
            if mark.tenant != subscription.tenant:
                # Screened under this agreement a moment ago: its offer names the activity.
                agreement = agreement_of(item.headers)
                grant = self._screened_under.get(agreement) if agreement is not None else None
                slug = grant.processing_activity if grant is not None else None
                if slug is not None:
                    activity = self.activities.get(mark.tenant, slug)
                    controller = (mark.tenant, activity.id if activity is not None else slug)
            key = (mark.subject, trace, *controller)
            groups[key] = groups.get(key, 0) + 1
        recipient = (
            f"subscription:{subscription.tenant}/{subscription.id} ({subscription.delivery.kind})"
        )
        return [
            processing_record(
                name=f"cityhub.{action}",
                trace=parse_traceparent(trace),
                parent_span_id=None,
                started=started,
                ended=ended,
                ok=ok,
                activity_id=activity,
                tenant=tenant,
                subject=subject or "",
                recipient=recipient,
                items=count,
                action=action,
            )
            for (subject, trace, tenant, activity), count in groups.items()
        ]


def screen(gate: PrivacyGate | None, subscription: Subscription, items: Sequence[Item]) -> Screened:
    """``gate.screen``; without a gate (nothing to check a purpose against) every personal
    item is refused and only the others pass."""
    if gate is not None:
        return gate.screen(subscription, items)
    screened = Screened()
    for item in items:
        if mark_of(item.headers) is None:
            screened.send.append(item)
            screened.passed.append(item)
        else:
            PERSONAL_ITEMS.labels(DELIVER, Refusal.NO_ACTIVITY.value).inc()
            screened.refused += 1
    return screened


def _header(item: Item, name: str) -> bytes | None:
    for key, value in item.headers:
        if key == name:
            return value
    return None


def _labels(item: Item) -> tuple[str, str]:
    return str(item.partition), str(item.offset)
