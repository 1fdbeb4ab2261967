"""The console's dead-letter view: attribution to tenants, tenant isolation seen from the other
side, personal payloads, bounds on memory and on what is shown, malformed records."""

from __future__ import annotations

from typing import Any

from cityhub.schemas.deadletter import DeadLetter
from cityhub.schemas.errors import Reason
from cityhub.schemas.registry import Role
from cityhub.schemas.subscription import subscription_topic
from cityhub.streams.deadletters.view import (
    DELIVER,
    DeadLetterView,
    payload_visible,
    preview,
    subscription_of_topic,
)
from cityhub.streams.delivery.dead_letters import STAGE
from cityhub.streams.registry.principals import Principal

from .deadletter_support import TS, registry_view


def _letter(
    device: str | None,
    payload: bytes = b'{"t": 1}',
    *,
    reason: Reason = Reason.SCHEMA_MISMATCH,
    at: str = TS,
) -> bytes:
    return DeadLetter.of(
        stage="normalise",
        reason=reason,
        detail="uplink_message.f_port: expected an integer",
        failed_at=at,
        payload=payload,
        max_payload_bytes=64 * 1024,
        device=device,
    ).to_json()


NORTH_OP = Principal(key_id="k1", tenant="north", role=Role.OPERATOR)
SOUTH_OP = Principal(key_id="k2", tenant="south", role=Role.OPERATOR)
SOUTH_ADMIN = Principal(key_id="k3", tenant="south", role=Role.ADMIN)
NORTH_SUB = Principal(key_id="k4", tenant="north", role=Role.SUBSCRIBER)


def _view(**kw: Any) -> DeadLetterView:
    view = DeadLetterView(registry_view(), **kw)
    for offset, device in enumerate(
        [
            "n-aq-1",
            "00000000000000C1",
            "n-track-1",
            "unknown-thing",
            None,
            "device/s-aq-1",
            "area/north/centrum",
        ]
    ):
        view.add(_letter(device), partition=0, offset=offset)
    return view


def test_each_operator_sees_exactly_its_own_tenants_letters() -> None:
    view = _view()
    north = {(dl.device, dl.tenant) for dl in view.letters(NORTH_OP)}
    south = {(dl.device, dl.tenant) for dl in view.letters(SOUTH_OP)}
    assert north == {("n-aq-1", "north"), ("n-track-1", "north"), ("area/north/centrum", "north")}
    # The DevEUI (in any case) and the worker's record key find the south device.
    assert south == {("00000000000000C1", "south"), ("device/s-aq-1", "south")}
    # From the other side: an id of north's is as absent for south as one that never was.
    for letter in view.letters(NORTH_OP):
        assert view.get(SOUTH_OP, letter.id) is None
        assert view.get(NORTH_OP, letter.id) == letter
    assert view.letters(NORTH_SUB) == []
    assert view.get(NORTH_SUB, "0-0") is None


def test_an_admin_sees_every_letter_with_the_unknown_devices_but_not_personal_payloads() -> None:
    view = _view()
    every = view.letters(SOUTH_ADMIN)
    assert len(every) == 7
    unknown = view.letters(SOUTH_ADMIN, tenant="")
    assert {dl.device for dl in unknown} == {"unknown-thing", None}
    tracker = next(dl for dl in every if dl.device == "n-track-1")
    assert view.personal(tracker)
    assert not payload_visible(SOUTH_ADMIN, tracker, view.personal(tracker))
    # Not even its own tenant's operator: no declared purpose covers reading it.
    assert not payload_visible(NORTH_OP, tracker, view.personal(tracker))
    plain = next(dl for dl in every if dl.device == "n-aq-1")
    assert payload_visible(SOUTH_ADMIN, plain, view.personal(plain))


def test_one_tenants_flood_does_not_push_out_anothers_letters() -> None:
    view = DeadLetterView(registry_view(), per_tenant=5)
    view.add(_letter("s-aq-1"), partition=1, offset=0)
    for offset in range(1, 100):
        view.add(_letter("n-aq-1"), partition=1, offset=offset)
    assert len(view.letters(NORTH_OP)) == 5
    assert [dl.id for dl in view.letters(SOUTH_OP)] == ["1-0"]


def test_reasons_are_counted_and_filtered_newest_first() -> None:
    view = DeadLetterView(registry_view())
    view.add(
        _letter("n-aq-1", reason=Reason.OVERSIZE, at="2026-12-04T10:00:01Z"), partition=0, offset=0
    )
    view.add(_letter("n-aq-1", at="2026-12-04T10:00:03Z"), partition=0, offset=1)
    view.add(_letter("n-aq-1", at="2026-12-04T10:00:02Z"), partition=1, offset=0)
    assert view.reasons(NORTH_OP) == {"schema_mismatch": 2, "oversize": 1}
    assert [dl.id for dl in view.letters(NORTH_OP, reason="schema_mismatch")] == ["0-1", "1-0"]
    assert view.reasons(SOUTH_OP) == {}


def test_the_payload_is_cut_and_shown_as_text_or_hex_never_as_markup() -> None:
    view = DeadLetterView(registry_view(), preview_bytes=16)
    view.add(_letter("n-aq-1", b"<script>alert(1)</script>" * 10), partition=0, offset=0)
    view.add(_letter("n-aq-1", bytes(range(40))), partition=0, offset=1)
    text_letter, binary = sorted(view.letters(NORTH_OP), key=lambda dl: dl.id)
    assert text_letter.preview == b"<script>alert(1)"
    assert text_letter.preview_cut
    assert text_letter.size == 250
    assert preview(text_letter.preview) == ("text", "<script>alert(1)")  # the page escapes it
    kind, shown = preview(binary.preview)
    assert kind == "hex"
    assert shown == "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f"
    # A UTF-8 character cut by the preview is dropped, not shown as hex.
    assert preview("añb".encode()[:2]) == ("text", "a")
    assert preview("a\u0085b".encode())[0] == "hex"


def test_malformed_records_are_counted_and_skipped() -> None:
    view = DeadLetterView(registry_view())
    for offset, value in enumerate([b"not json", b"[1]", b'{"reason": 1}', None, b"\xff\xfe"]):
        view.add(value, partition=0, offset=offset)
    assert view.malformed == 5
    assert view.letters(SOUTH_ADMIN) == []


def _delivery(device: str, topic: str, offset: int = 7) -> bytes:
    return DeadLetter.of(
        stage=STAGE,
        reason=Reason.DELIVERY_FAILED,
        detail="the receiver answered 400",
        failed_at=TS,
        payload=b'{"value": 21.5}',
        max_payload_bytes=64 * 1024,
        device=device,
        kafka_topic=topic,
        kafka_partition=2,
        kafka_offset=offset,
    ).to_json()


SOUTH_SUB = Principal(key_id="k5", tenant="south", role=Role.SUBSCRIBER)


def test_the_delivery_stage_is_the_one_the_delivery_writes() -> None:
    assert DELIVER == STAGE


def test_subscription_topics_are_read_back_as_subscription_topic_writes_them() -> None:
    for prefix, tenant, sub in (("cityhub", "north", "hook"), ("p.q", "a.b_c", "x-1")):
        topic = subscription_topic(prefix, tenant, sub)
        assert subscription_of_topic(prefix, topic) == (tenant, sub)
    for topic in ("cityhub.sub.north", "cityhub.sub..x", "cityhub.sub.north.", "other.sub.a.b"):
        assert subscription_of_topic("cityhub", topic) is None, topic


def test_a_deliverys_letter_is_its_subscriptions_tenants_and_its_subscribers() -> None:
    view = _view()
    # South's internal device under an agreement to north's subscription, north's public one to
    # south's subscription (public data need no agreement), north's own to its own.
    view.add(_delivery("device/s-aq-1", "cityhub.sub.north.shared-air"), partition=1, offset=0)
    view.add(_delivery("device/n-aq-1", "cityhub.sub.north.own-hook"), partition=1, offset=1)
    # A topic of no subscription of a known tenant: the device's tenant's, as before.
    view.add(_delivery("device/n-aq-1", "cityhub.sub.nobody.x"), partition=1, offset=2)
    view.add(_delivery("device/n-aq-1", "cityhub.sub.south.public-feed"), partition=1, offset=3)
    north_sub = view.letters(NORTH_SUB)
    assert sorted((dl.subscription, dl.tenant, dl.foreign) for dl in north_sub) == [
        ("own-hook", "north", False),
        ("shared-air", "north", True),
    ]
    shared = next(dl for dl in north_sub if dl.subscription == "shared-air")
    assert (shared.kafka_partition, shared.kafka_offset) == (2, 7)
    assert shared.device_id is None  # not north's device: no link to it
    # The provider's operator does not see the consumer's delivery failures.
    assert shared.id not in {dl.id for dl in view.letters(SOUTH_OP)}
    assert shared in view.letters(NORTH_OP)
    # A subscriber never sees the devices' own letters.
    assert all(dl.stage == STAGE for dl in north_sub)
    assert view.get(SOUTH_SUB, shared.id) is None
    # The shared payload: admins only; the own one and a public one: the tenant's keys.
    assert not payload_visible(NORTH_SUB, shared, view.personal(shared))
    assert not payload_visible(NORTH_OP, shared, view.personal(shared))
    assert payload_visible(SOUTH_ADMIN, shared, view.personal(shared))
    own = next(dl for dl in north_sub if dl.subscription == "own-hook")
    assert own.device_id == "n-aq-1"
    assert payload_visible(NORTH_SUB, own, view.personal(own))
    (public,) = view.letters(SOUTH_SUB)
    assert (public.subscription, public.foreign) == ("public-feed", False)
    assert payload_visible(SOUTH_SUB, public, view.personal(public))
    unknown_topic = next(dl for dl in view.letters(NORTH_OP) if dl.id == "1-2")
    assert unknown_topic.subscription is None
    assert unknown_topic not in view.letters(NORTH_SUB)


def test_a_personal_devices_delivery_letter_shows_no_payload_even_to_its_subscriber() -> None:
    view = _view()
    view.add(_delivery("device/n-track-1", "cityhub.sub.north.care"), partition=1, offset=0)
    (letter,) = view.letters(NORTH_SUB)
    assert view.personal(letter)
    assert not payload_visible(NORTH_SUB, letter, True)
