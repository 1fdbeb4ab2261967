"""A delivery's agreement check (issue 13, streams/delivery/agreement_screen.py and the privacy
gate): an item queued under an agreement is sent only while the agreement is in force, is counted
per agreement once delivered, waits while the agreements' view is stale, and another tenant's
personal item under a personal offer is screened and logged under the provider's tenant and
activity. Pure: no broker."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import orjson

from cityhub.connectors.sinks.base import Item
from cityhub.schemas.processing import LegalBasis
from cityhub.schemas.processing_log import PROCESSING_ACTIVITY_ID, TENANT
from cityhub.schemas.sharing import AgreementState, ItemKind, Selection
from cityhub.schemas.trace_context import TRACEPARENT, new_trace
from cityhub.streams.delivery import agreement_screen
from cityhub.streams.delivery.agreement_screen import DeliverySharing
from cityhub.streams.delivery.privacy_screen import screen_when_current
from cityhub.streams.privacy.gate import PrivacyGate
from cityhub.streams.privacy.purpose import PersonalMark
from cityhub.streams.sharing.grants import Grants
from cityhub.streams.sharing.usage import Channel, UsageCounts
from cityhub.streams.subscriptions.agreements import AGREEMENT_HEADER, Ended, screen_agreements

from .test_purpose import ConsentsOf, Register, activity, subscription
from .test_purpose_agreements import REGISTER
from .test_router_agreements import NOW, Clock, agreement

AIR = Selection(device_types=["airq"])
ENDS = NOW + timedelta(minutes=1)
GRANTS = Grants.from_agreements(
    [
        agreement(AIR, provider="port", consumer="city", agreement_id="agr-1", ends=ENDS),
        agreement(AIR, provider="port", consumer="school", agreement_id="agr-2"),
    ]
)
CITY_HOOK = subscription(None, tenant="city")


def item(
    offset: int, *, tenant: str = "port", agreement_id: str | None = "agr-1", **more: Any
) -> Item:
    headers: list[tuple[str, bytes]] = [(TRACEPARENT, new_trace().header())]
    if agreement_id is not None:
        headers.append((AGREEMENT_HEADER, agreement_id.encode()))
    headers.extend(more.pop("headers", ()))
    doc = {"event_id": f"e{offset}", "tenant": tenant, "classification": "internal", **more}
    return Item(0, offset, 0, b"k", orjson.dumps(doc), tuple(headers))


def test_marked_items_go_only_while_their_agreement_is_in_force() -> None:
    batch = [item(0), item(1, tenant="city", agreement_id=None), item(2)]
    live = screen_agreements(GRANTS, CITY_HOOK, batch, NOW)
    assert [i.offset for i in live.send] == [0, 1, 2]
    assert live.agreements == {"agr-1": 2}
    ended = screen_agreements(GRANTS, CITY_HOOK, batch, ENDS)
    assert [i.offset for i in ended.send] == [1]
    assert ended.dropped == {Ended.ENDED: 2}


def test_a_revoked_agreement_stops_what_is_queued() -> None:
    revoked = Grants.from_agreements(
        [agreement(AIR, consumer="city", state=AgreementState.REVOKED)]
    )
    screened = screen_agreements(revoked, CITY_HOOK, [item(0), item(1)], NOW)
    assert screened.send == []
    assert screened.dropped == {Ended.ENDED: 2}


def test_another_tenants_agreement_does_not_count() -> None:
    screened = screen_agreements(GRANTS, CITY_HOOK, [item(0, agreement_id="agr-2")], NOW)
    assert screened.send == []
    assert screened.dropped == {Ended.OTHER_CONSUMER: 1}


def test_delivered_items_are_counted_per_agreement() -> None:
    usage = UsageCounts()
    sharing = DeliverySharing(lambda: GRANTS, usage, clock=Clock())
    sent = asyncio.run(sharing.screen(CITY_HOOK, [item(0), item(1), item(2, agreement_id=None)]))
    sharing.delivered(sent)
    assert usage.totals() == {("agr-1", Channel.DELIVERED): 2}


def test_without_sharing_marked_items_are_never_sent() -> None:
    screened = asyncio.run(
        screen_when_current(None, CITY_HOOK, [item(0), item(1, agreement_id=None)])
    )
    assert [i.offset for i in screened.send] == [1]


def test_the_check_uses_the_current_grants_and_clock() -> None:
    clock = Clock()
    current = {"grants": GRANTS}
    sharing = DeliverySharing(lambda: current["grants"], clock=clock)
    assert len(asyncio.run(screen_when_current(None, CITY_HOOK, [item(0)], sharing)).send) == 1
    clock.at = ENDS
    assert asyncio.run(screen_when_current(None, CITY_HOOK, [item(0)], sharing)).send == []
    clock.at = NOW
    current["grants"] = Grants()
    assert asyncio.run(screen_when_current(None, CITY_HOOK, [item(0)], sharing)).send == []


def test_a_stale_view_holds_marked_items_until_it_catches_up(monkeypatch: Any) -> None:
    monkeypatch.setattr(agreement_screen, "HOLD_POLL_S", 0.01)
    checks = iter([True, True, False])
    sharing = DeliverySharing(lambda: GRANTS, stale=lambda: next(checks), clock=Clock())
    sent = asyncio.run(sharing.screen(CITY_HOOK, [item(0)]))
    assert [i.offset for i in sent] == [0]
    # Unmarked items never wait.
    never = DeliverySharing(lambda: GRANTS, stale=lambda: True, clock=Clock())
    assert len(asyncio.run(never.screen(CITY_HOOK, [item(1, agreement_id=None)]))) == 1


# --- personal items under a personal offer -----------------------------------------------------


class NoKeys:
    def by_id(self, key_id: str) -> None:
        return None

    def current(self, tenant: str, subject: str) -> None:
        return None


PERSONAL = Grants.from_agreements(
    [
        agreement(
            Selection(device_types=["climate"]),
            provider="acme",
            consumer="city",
            classification="personal",
            activity="care",
            kinds=(ItemKind.OBSERVATIONS,),
            ends=ENDS,
        )
    ]
)


def personal_item(offset: int, subject: str | None = None) -> Item:
    mark = PersonalMark("acme", subject, "indoor climate")
    return item(offset, tenant="acme", classification="personal", headers=[mark.header()])


def gate(grants: Grants, clock: Clock, register: Register = REGISTER) -> PrivacyGate:
    found = PrivacyGate(register, ConsentsOf(), NoKeys(), clock=clock)
    found.grants = lambda: grants
    return found


def test_a_personal_item_goes_under_the_providers_activity_and_is_logged_under_it() -> None:
    clock = Clock()
    the_gate = gate(PERSONAL, clock)
    screened = the_gate.screen(CITY_HOOK, [personal_item(0), personal_item(1)])
    assert len(screened.send) == 2
    records = the_gate.log_records(CITY_HOOK, screened.personal, started=1.0, ended=2.0)
    # One record per trace (each item is its own uplink here), both the provider's.
    assert [(r.attributes[TENANT], r.attributes[PROCESSING_ACTIVITY_ID]) for r in records] == [
        ("acme", "urn:x:acme:care")
    ] * 2


def test_a_personal_item_is_refused_once_its_agreement_ended_or_without_the_activity() -> None:
    clock = Clock(ENDS)
    assert gate(PERSONAL, clock).screen(CITY_HOOK, [personal_item(0)]).send == []
    without = Register(activity("care", LegalBasis.PUBLIC_TASK, tenant="city"))
    assert gate(PERSONAL, Clock(), without).screen(CITY_HOOK, [personal_item(0)]).send == []


def test_a_read_under_a_personal_offer_is_checked_against_the_providers_activity() -> None:
    the_gate = gate(PERSONAL, Clock())
    grant = PERSONAL.get("agr-1")
    mark = PersonalMark("acme", None, "indoor climate")
    assert the_gate.admit_read("city", None, mark, grant) is None
    assert the_gate.admit_read("city", None, mark) is not None
    assert gate(PERSONAL, Clock(ENDS)).admit_read("city", None, mark, grant) is not None
