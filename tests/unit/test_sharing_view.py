"""The offers' and agreements' views (``streams/sharing/view.py``), the grants they build, and
the usage counts' publisher and view: pure or in-memory, no broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from cityhub.schemas.sharing import (
    Agreement,
    AgreementEvent,
    AgreementState,
    AgreementUsage,
    ItemKind,
    Offer,
    OfferSpec,
    Selection,
)
from cityhub.streams.compacted import InMemoryTopic
from cityhub.streams.sharing.grants import ItemFacts
from cityhub.streams.sharing.store import InMemoryAgreementStore, InMemoryOfferStore
from cityhub.streams.sharing.usage import Channel, UsageCounts
from cityhub.streams.sharing.usage_publisher import InMemoryUsageStore, UsagePublisher
from cityhub.streams.sharing.usage_view import UsageView
from cityhub.streams.sharing.view import SharingView

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
AT = "2026-12-03T12:00:00.000Z"


def spec(offer_id: str = "air", *, listed: bool = False) -> OfferSpec:
    return OfferSpec(
        id=offer_id,
        title="Air",
        description="PM of the harbour",
        selection=Selection(device_types=["airq"]),
        kinds=[ItemKind.OBSERVATIONS],
        purposes=["air quality policy"],
        listed=listed,
    )


def offer(offer_id: str = "air", *, listed: bool = False, withdrawn: bool = False) -> Offer:
    return Offer(
        tenant="port",
        spec=spec(offer_id, listed=listed),
        created_at=AT,
        updated_at=AT,
        withdrawn_at=AT if withdrawn else None,
    )


def agreement(
    agreement_id: str = "a1", state: AgreementState = AgreementState.APPROVED
) -> Agreement:
    history = [AgreementEvent(state=AgreementState.REQUESTED, at=AT, by_tenant="city")]
    if state is not AgreementState.REQUESTED:
        history.append(AgreementEvent(state=state, at=AT, by_tenant="port"))
    return Agreement(
        id=agreement_id,
        provider="port",
        consumer="city",
        offer_id="air",
        offer_spec=spec(),
        purpose="air quality policy",
        starts_at=None,
        ends_at="2027-01-01T00:00:00.000Z",
        state=state,
        requested_at=AT,
        history=history,
    )


ITEM = ItemFacts(
    tenant="port",
    kind=ItemKind.OBSERVATIONS,
    quantity="pm2_5",
    classification="internal",
    device_id="d1",
    device_type="airq",
)


def stores() -> tuple[SharingView, InMemoryOfferStore, InMemoryAgreementStore]:
    view = SharingView()
    return (
        view,
        InMemoryOfferStore(view=view.offers),
        InMemoryAgreementStore(view=view.agreements),
    )


async def test_grants_follow_the_agreements_and_are_the_same_object_until_one_changes() -> None:
    view, _, agreements = stores()
    assert len(view.grants()) == 0
    await agreements.put(agreement("a1", AgreementState.REQUESTED))
    assert view.grants().grant_for("city", ITEM, NOW) is None
    await agreements.put(agreement("a1"))
    first = view.grants()
    assert first is view.grants()  # cheap per item: nothing rebuilt
    grant = first.grant_for("city", ITEM, NOW)
    assert grant is not None
    assert grant.agreement_id == "a1"
    await agreements.put(agreement("a1", AgreementState.REVOKED))
    assert view.grants() is not first
    assert view.grants().grant_for("city", ITEM, NOW) is None


async def test_expiry_needs_no_record() -> None:
    view, _, agreements = stores()
    await agreements.put(agreement())
    grants = view.grants()
    assert grants.grant_for("city", ITEM, NOW) is not None
    assert grants.grant_for("city", ITEM, datetime(2027, 1, 1, tzinfo=UTC)) is None


async def test_listed_offers_leave_out_unlisted_and_withdrawn_ones() -> None:
    view, offers, _ = stores()
    await offers.put(offer("a", listed=True))
    await offers.put(offer("b"))
    await offers.put(offer("c", listed=True, withdrawn=True))
    assert [o.id for o in view.listed_offers()] == ["a"]
    assert view.offer("port", "b") is not None
    assert view.offer("port", "zz") is None


async def test_two_processes_share_a_topic() -> None:
    topic = InMemoryTopic()
    here, there = SharingView(), SharingView()
    writer = InMemoryAgreementStore(view=here.agreements, topic=topic)
    InMemoryAgreementStore(view=there.agreements, topic=topic)
    await writer.put(agreement())
    assert there.agreement("a1") is not None
    assert there.grants().grant_for("city", ITEM, NOW) is not None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("agreement/a1", b"not json"),
        ("agreement/a1", b"[]"),
        ("agreement/other", agreement().model_dump_json().encode()),
        ("agreement/a1", json.dumps({"kind": "offer"}).encode()),
        ("subscription/x", None),
    ],
)
def test_a_malformed_record_is_counted_and_skipped(key: str, value: bytes | None) -> None:
    view = SharingView()
    view.agreements.apply(key, value, 7)
    assert view.agreements.malformed == 1
    assert view.agreements.offset == 7
    assert view.agreements.count() == 0


def test_a_tombstone_forgets_an_offer() -> None:
    view = SharingView()
    view.offers.apply("offer/port/air", offer().model_dump_json().encode(), 0)
    view.offers.apply("offer/port/air", None, 1)
    assert view.offer("port", "air") is None
    assert view.offers.malformed == 0


async def test_the_publisher_writes_changed_cumulative_totals_and_the_view_sums_processes() -> None:
    topic = InMemoryTopic()
    store = InMemoryUsageStore(topic=topic)
    one, two = UsageCounts(), UsageCounts()
    first = UsagePublisher(one, process="p1", clock=lambda: 0.0)
    second = UsagePublisher(two, process="p2", clock=lambda: 0.0)
    one.count("a1", Channel.DELIVERED, 3)
    one.count("a1", Channel.READ)
    two.count("a1", Channel.READ, 5)
    two.count("a2", Channel.DELIVERED)
    assert await first.publish(store.send) == 1
    assert await second.publish(store.send) == 2
    assert await first.publish(store.send) == 0  # nothing changed: nothing written
    totals = store.view.of("a1")
    assert (totals.delivered, totals.read) == (3, 6)
    one.count("a1", Channel.DELIVERED)
    one.count("a2", Channel.DELIVERED, 0)  # ignored
    assert await first.publish(store.send) == 1
    assert store.view.of("a1").delivered == 4
    assert store.view.of("a2").delivered == 1
    assert store.view.of("none").public() == {"delivered": 0, "read": 0, "updated_at": None}
    assert [key for key, _ in topic.records] == [
        "usage/a1/p1",
        "usage/a1/p2",
        "usage/a2/p2",
        "usage/a1/p1",
    ]


async def test_a_failed_write_is_retried_with_the_next_round() -> None:
    store = InMemoryUsageStore()
    counts = UsageCounts()
    publisher = UsagePublisher(counts, process="p1")
    counts.count("a1", Channel.READ, 2)

    async def broken(key: str, value: bytes) -> None:
        raise OSError("kafka is away")

    assert await publisher.publish(broken) == 0
    assert await publisher.publish(store.send) == 1
    assert store.view.of("a1").read == 2


def test_the_usage_view_refuses_records_under_another_key() -> None:
    view = UsageView()
    record = AgreementUsage(agreement="a1", process="p1", delivered=1, read=0, at=AT)
    view.apply("usage/a1/p2", record.model_dump_json().encode(), 0)
    view.apply("nonsense", b"{}", 1)
    assert view.malformed == 2
    assert view.of("a1").delivered == 0


async def test_the_uses_counter_grows_by_what_was_written() -> None:
    from prometheus_client import REGISTRY

    def uses(channel: str) -> float:
        value = REGISTRY.get_sample_value("cityhub_agreement_uses_total", {"channel": channel})
        return value or 0.0

    before = uses("delivered"), uses("read")
    store = InMemoryUsageStore()
    counts = UsageCounts()
    publisher = UsagePublisher(counts, process="p1")
    counts.count("a1", Channel.DELIVERED, 4)
    await publisher.publish(store.send)
    counts.count("a1", Channel.DELIVERED, 1)
    counts.count("a1", Channel.READ, 2)
    await publisher.publish(store.send)
    await publisher.publish(store.send)
    assert (uses("delivered") - before[0], uses("read") - before[1]) == (5, 2)
