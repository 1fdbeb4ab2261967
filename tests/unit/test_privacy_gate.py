"""The privacy gate and the normaliser's personal path without a broker, over the real
in-memory stores: a subject-linked device's readings are sealed at rest and routed only to the
subscriptions whose purpose admits them; a delivery opens them only after the check, refuses
them once consent is withdrawn or the key is shredded, never passes a tampered or unmarked one,
and logs one record per subject and trace of what it delivered."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from cityhub.connectors.sinks import validate_spec
from cityhub.connectors.sinks.base import BatchLimits, Item
from cityhub.connectors.sinks.errors import DeliveryFailed, FailureKind
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.processing import ActivitySpec
from cityhub.schemas.processing_log import ProcessingLogRecord
from cityhub.schemas.registry import Classification, DeviceSpec, DeviceTypeSpec, TenantSpec
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import Subscription, build_subscription
from cityhub.schemas.timefmt import rfc3339
from cityhub.schemas.trace_context import TRACEPARENT, new_trace
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.delivery import sse
from cityhub.streams.delivery.privacy_screen import screen_when_current
from cityhub.streams.delivery.task import DeliveryTask
from cityhub.streams.normaliser.agent import NormaliserAgent
from cityhub.streams.normaliser.personal import PersonalSealer
from cityhub.streams.privacy.consent_service import Consents, consent_logger
from cityhub.streams.privacy.consent_store import InMemoryConsentStore
from cityhub.streams.privacy.gate import PrivacyGate, screen
from cityhub.streams.privacy.keys_store import InMemorySubjectKeyStore
from cityhub.streams.privacy.purpose import PRIVACY_HEADER, PersonalMark
from cityhub.streams.privacy.service import ProcessingRegister
from cityhub.streams.privacy.store import InMemoryRegisterStore
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.runtime.agent import Write
from cityhub.streams.subscriptions.router import SubscriptionRouter

from .test_normaliser_agent import Rec

SYSTEM = Principal.system()
SETTINGS = Settings()
PREFIX = SETTINGS.kafka.topic_prefix
ALICE = "res-alice-0001"
START = 1_795_914_000.0


@dataclass
class City:
    registry: Registry
    keys: InMemorySubjectKeyStore
    consents: Consents
    gate: PrivacyGate
    router: SubscriptionRouter
    subscriptions: dict[str, Subscription]


def subscription(sub_id: str, activity: str | None, kind: str = "webhook") -> Subscription:
    delivery = (
        {"kind": kind, "url": "https://receiver.example/h"} if kind == "webhook" else {"kind": kind}
    )
    spec = validate_spec({"id": sub_id, "name": sub_id, "delivery": delivery})
    record, _ = build_subscription(spec, tenant="city", now="2026-12-01T00:00:00Z")
    return record.model_copy(update={"processing_activity": activity})


async def city() -> City:
    keys = InMemorySubjectKeyStore()
    registry = Registry(InMemoryRegistryStore(), subject_keys=keys)
    await registry.create_tenant(SYSTEM, TenantSpec(id="city", name="City"))
    await registry.create_type(
        SYSTEM,
        "city",
        DeviceTypeSpec(
            id="indoor-air",
            name="Indoor air",
            classification=Classification.PERSONAL,
            personal_data_category="indoor climate",
        ),
    )
    for device, subject in (("alice-air", ALICE), ("spare-air", None)):
        spec = DeviceSpec(id=device, name=device, type="indoor-air", data_subject=subject)
        await registry.create_device(SYSTEM, "city", spec)
    register_store = InMemoryRegisterStore()
    register = ProcessingRegister(register_store, registry.view, base_uri="urn:x:")
    for slug, basis in (("advice", "Consent"), ("care", "PublicTask")):
        await register.create(
            SYSTEM,
            "city",
            ActivitySpec.model_validate(
                {
                    "slug": slug,
                    "name": slug,
                    "purpose": slug,
                    "legal_basis": basis,
                    "personal_data_categories": ["indoor climate"],
                    "retention": "P1D",
                    "controller": "City",
                }
            ),
        )
    consent_store = InMemoryConsentStore()
    consents = Consents(consent_store, register_store.view, registry.view)
    gate = PrivacyGate(register_store.view, consent_store.view, keys.view)
    subs = {
        "advice": subscription("advice", "advice"),
        "care": subscription("care", "care"),
        "none": subscription("none", None),
        "kafka": subscription("kafka", None, kind="kafka"),
    }
    router = SubscriptionRouter(PREFIX)
    router.refresh(subs.values())
    return City(registry, keys, consents, gate, router, subs)


def uplink(device: str, value: float, offset: int) -> Rec:
    payload = orjson.dumps({"time": rfc3339(START + offset), "temperature": value})
    envelope = RawEnvelope(
        "mqtt", "cityhub-json", f"cityhub/ingest/{device}", device, rfc3339(START + offset), payload
    )
    trace = (TRACEPARENT, new_trace().header())
    return Rec(offset, envelope.to_json(), device.encode(), headers=[trace])


def normaliser(c: City) -> NormaliserAgent:
    agent = NormaliserAgent(
        SETTINGS,
        c.registry.view,
        c.router,
        sealer=PersonalSealer(c.registry.view, c.keys.view),
        gate=c.gate,
    )
    agent.assign(0, [])
    return agent


def to(writes: list[Write], topic: str) -> list[Write]:
    return [w for w in writes if w.topic == topic]


def topic_of(sub_id: str) -> str:
    return f"{PREFIX}.sub.city.{sub_id}"


def item(write: Write, offset: int = 0) -> Item:
    return Item(0, offset, 0, write.key, write.value or b"", tuple(write.headers or ()))


async def test_a_subjects_readings_are_sealed_and_routed_by_purpose() -> None:
    c = await city()
    writes = normaliser(c).step(0, [uplink("alice-air", 21.5, 1)], now=START + 10)
    (stored,) = to(writes, f"{PREFIX}.observations")
    doc = orjson.loads(stored.value or b"")
    assert doc["value"] is None
    assert doc["location"] is None
    assert doc["data_subject"] == ALICE
    assert doc["sealed"].startswith("v1.")
    assert b"21.5" not in (stored.value or b"")
    headers = dict(stored.headers or ())
    assert PersonalMark.parse(headers[PRIVACY_HEADER]) == PersonalMark(
        "city", ALICE, "indoor climate"
    )
    assert TRACEPARENT in headers  # the bridge's trace goes with it
    # Public task: routed. Consent without consent, no activity, a Kafka topic: not routed.
    assert to(writes, topic_of("care"))
    for refused in ("advice", "none", "kafka"):
        assert to(writes, topic_of(refused)) == []
    await c.consents.give(SYSTEM, "city", ALICE, "advice", evidence="form 1")
    again = normaliser(c).step(0, [uplink("alice-air", 22.5, 2)], now=START + 11)
    assert to(again, topic_of("advice"))


async def test_a_personal_device_without_subject_is_not_sealed_but_still_purpose_bound() -> None:
    c = await city()
    writes = normaliser(c).step(0, [uplink("spare-air", 19.0, 1)], now=START + 10)
    (stored,) = to(writes, f"{PREFIX}.observations")
    doc = orjson.loads(stored.value or b"")
    assert doc["value"] == 19.0
    assert "sealed" not in doc
    assert to(writes, topic_of("care"))
    assert to(writes, topic_of("none")) == []
    assert to(writes, topic_of("advice")) == []  # consent needs a subject


async def test_a_subject_without_a_key_is_dead_lettered_never_written_in_clear() -> None:
    c = await city()
    await c.keys.shred("city", ALICE)
    writes = normaliser(c).step(0, [uplink("alice-air", 23.5, 1)], now=START + 10)
    assert to(writes, f"{PREFIX}.observations") == []
    (letter,) = to(writes, f"{PREFIX}.deadletter")
    doc = orjson.loads(letter.value or b"")
    assert doc["reason"] == "subject_key_missing"
    assert b"23.5" not in (letter.value or b"")


async def test_no_dead_letter_of_a_personal_device_carries_its_payload() -> None:
    # A review found an erased resident's switched-off sensor putting every reading in clear
    # on the dead-letter topic (inactive_device), and a time out of range (schema_mismatch).
    c = await city()
    device = c.registry.view.device_by_id("alice-air")
    assert device is not None
    spec = DeviceSpec(id="alice-air", name="a", type="indoor-air", active=False)
    await c.registry.replace_device(SYSTEM, "city", "alice-air", spec)
    out_of_range = RawEnvelope(
        "mqtt",
        "cityhub-json",
        "cityhub/ingest/spare-air",
        "spare-air",
        rfc3339(START),
        orjson.dumps({"time": "Jan Jansen, Dorpsstraat 1", "temperature": 31.25}),
    )
    broken = RawEnvelope(
        "mqtt", "cityhub-json", "cityhub/ingest/spare-air", "spare-air", rfc3339(START), b"{31.5"
    )
    records = [
        uplink("alice-air", 23.75, 1),
        Rec(2, out_of_range.to_json(), b"spare-air"),
        Rec(3, broken.to_json(), b"spare-air"),
        Rec(4, b"not an envelope 41.5", b"spare-air"),
    ]
    writes = normaliser(c).step(0, records, now=START + 10)
    letters = [orjson.loads(w.value or b"") for w in to(writes, f"{PREFIX}.deadletter")]
    assert [d["reason"] for d in letters] == [
        "inactive_device",
        "schema_mismatch",
        "malformed_json",
        "malformed_json",
    ]
    for doc in letters:
        assert doc.get("payload") in (None, ""), doc
        assert doc["size"] == 0
    # Nor the value a detail would quote (a review found a name and address there).
    assert "Jansen" not in str(letters)
    assert letters[1]["detail"].startswith("time: ")
    assert letters[1]["detail"].endswith("(the value is withheld: a personal device's message)")
    # The size and digest are of what was kept: nothing. Another tenant's public device keeps
    # its payload (the operator finds the fault from it).
    plain = RawEnvelope(
        "mqtt", "cityhub-json", "cityhub/ingest/unknown", "unknown", rfc3339(START), b"{9.5"
    )
    (letter,) = to(
        normaliser(c).step(0, [Rec(5, plain.to_json(), b"unknown")], now=START + 10),
        f"{PREFIX}.deadletter",
    )
    assert b"9.5" in (letter.value or b"")


async def test_delivery_opens_only_after_the_check_and_refuses_after_withdrawal_or_erasure() -> (
    None
):
    c = await city()
    await c.consents.give(SYSTEM, "city", ALICE, "advice", evidence="form 1")
    writes = normaliser(c).step(0, [uplink("alice-air", 21.5, 1)], now=START + 10)
    (routed,) = to(writes, topic_of("advice"))
    batch = [item(routed)]
    passed = c.gate.screen(c.subscriptions["advice"], batch)
    (opened,) = passed.send
    doc = orjson.loads(opened.value)
    assert doc["value"] == 21.5
    assert "sealed" not in doc
    assert "data_subject" not in doc
    assert passed.passed == batch  # what a dead letter may keep: still sealed
    (record,) = c.gate.log_records(
        c.subscriptions["advice"], passed.personal, started=START, ended=START + 1
    )
    assert record.subject == ALICE
    assert record.activity_id == "urn:x:city:advice"
    assert record.items == 1
    assert record.trace_id == dict(routed.headers or ())[TRACEPARENT].decode().split("-")[1]
    # Withdrawn: refused at delivery although already on the subscription's topic.
    await c.consents.withdraw(SYSTEM, "city", ALICE, "advice", evidence="form 2")
    assert c.gate.screen(c.subscriptions["advice"], batch).send == []
    # The public task still passes, until the key is shredded.
    assert len(c.gate.screen(c.subscriptions["care"], batch).send) == 1
    await c.keys.shred("city", ALICE)
    erased = c.gate.screen(c.subscriptions["care"], batch)
    assert erased.send == []
    assert erased.refused == 1


Tamper = Callable[[dict[str, Any]], object]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda doc: doc.update(sealed=doc["sealed"][:-4] + "AAAA"),
        lambda doc: doc.update(data_subject="res-someone-else"),
        lambda doc: doc.update(event_id="00000000-0000-5000-8000-000000000000"),
        lambda doc: doc.pop("event_id"),
    ],
)
async def test_a_tampered_personal_item_is_never_delivered(tamper: Tamper) -> None:
    c = await city()
    writes = normaliser(c).step(0, [uplink("alice-air", 21.5, 1)], now=START + 10)
    (routed,) = to(writes, topic_of("care"))
    doc = orjson.loads(routed.value or b"")
    tamper(doc)
    forged = Item(0, 0, 0, routed.key, orjson.dumps(doc), tuple(routed.headers or ()))
    assert c.gate.screen(c.subscriptions["care"], [forged]).send == []


async def test_without_a_gate_personal_items_never_pass_and_others_do() -> None:
    c = await city()
    writes = normaliser(c).step(0, [uplink("alice-air", 21.5, 1)], now=START + 10)
    (routed,) = to(writes, topic_of("care"))
    ordinary = Item(0, 1, 0, b"d", b'{"event_id":"x"}', ())
    broken_mark = Item(0, 2, 0, b"d", b"{}", ((PRIVACY_HEADER, b"not a mark"),))
    screened = screen(None, c.subscriptions["care"], [item(routed), ordinary, broken_mark])
    assert screened.send == [ordinary]
    gated = c.gate.screen(c.subscriptions["care"], [broken_mark, ordinary])
    assert gated.send == [ordinary]


async def test_nothing_is_checked_before_the_privacy_views_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = await city()
    loading = PrivacyGate(c.gate.activities, c.gate.consents, c.gate.keys, ready=lambda: False)
    monkeypatch.setattr(sse, "PRIVACY_WAIT_STEPS", 2)
    streams = sse.LiveStreams(SETTINGS, gate=loading)
    with pytest.raises(ApiProblem) as refused:
        await streams._privacy_views_read()
    assert refused.value.status == 503
    await sse.LiveStreams(SETTINGS, gate=c.gate)._privacy_views_read()  # ready: no wait


class EchoingReceiver:
    """A sink that fails once with a 500 whose body echoes what it received, then takes all."""

    batch_limits = BatchLimits(max_items=100)

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.failed = False

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, items: Sequence[Item], msg_id: str) -> None:
        body = b",".join(item.value for item in items).decode()
        if not self.failed:
            self.failed = True
            self.journal.append("send failed")
            raise DeliveryFailed(
                f"HTTP 500: {body}", retriable=True, kind=FailureKind.HTTP_STATUS, status=500
            )
        self.journal.append("sent")


class Journal:
    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.records: list[ProcessingLogRecord] = []

    async def write(self, records: Sequence[ProcessingLogRecord]) -> None:
        self.journal.append("logged " + ",".join(r.status_code for r in records))
        self.records.extend(records)


async def test_an_attempt_is_logged_before_it_goes_and_a_failed_one_again_unquoted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = await city()
    writes = normaliser(c).step(0, [uplink("alice-air", 37.25, 1)], now=START + 10)
    (routed,) = to(writes, topic_of("care"))
    journal: list[str] = []
    settings = SETTINGS.model_copy(
        update={
            "delivery": SETTINGS.delivery.model_copy(
                update={"webhook_backoff_base_seconds": 0.01, "webhook_backoff_cap_seconds": 0.02}
            )
        }
    )
    log = Journal(journal)

    async def no_dead_letters(value: bytes, key: bytes | None) -> None:
        raise AssertionError("nothing is dead-lettered here")

    task = DeliveryTask(
        c.subscriptions["care"],
        EchoingReceiver(journal),
        settings,
        dead_letters=no_dead_letters,
        gate=c.gate,
        processing_log=log,
    )
    with caplog.at_level(logging.INFO):
        await task._deliver([item(routed)])
    ok, error = "logged STATUS_CODE_OK", "logged STATUS_CODE_ERROR"
    assert journal == [ok, "send failed", error, ok, "sent"]
    assert all(r.subject == ALICE for r in log.records)
    assert "37.25" not in caplog.text  # the receiver's echo of the opened value is not quoted


async def test_a_delivery_waits_while_the_views_are_stale_or_a_key_may_be_on_its_way() -> None:
    c = await city()
    writes = normaliser(c).step(0, [uplink("alice-air", 21.5, 1)], now=START + 10)
    (routed,) = to(writes, topic_of("care"))
    now = time.time()
    seen = {"views": now - 10.0, "keys": now - 10.0}
    gate = PrivacyGate(
        c.gate.activities,
        c.gate.consents,
        c.gate.keys,
        caught_up_at=lambda: seen["views"],
        keys_caught_up_at=lambda: seen["keys"],
    )
    batch = [item(routed)]
    waiting = asyncio.create_task(screen_when_current(gate, c.subscriptions["care"], batch))
    await asyncio.sleep(0.5)
    assert not waiting.done()  # stale views: no decision
    seen["views"] = time.time() + 3600
    assert len((await waiting).send) == 1
    # A key the view does not hold, for an item younger than the view: maybe not there yet.
    await c.keys.shred("city", ALICE)
    young = dataclasses.replace(item(routed), timestamp_ms=int((now + 60) * 1000))
    held = asyncio.create_task(screen_when_current(gate, c.subscriptions["care"], [young]))
    await asyncio.sleep(0.5)
    assert not held.done()
    seen["keys"] = now + 61  # the view is now younger than the item: the key is gone
    erased = await held
    assert erased.send == []
    assert erased.refused == 1


async def test_every_consent_change_can_be_written_to_the_processing_log() -> None:
    c = await city()
    journal = Journal([])
    register = c.gate.activities
    logged = Consents(
        c.consents._store,
        register,  # type: ignore[arg-type]
        c.registry.view,
        on_change=consent_logger(journal),
    )
    await logged.give(SYSTEM, "city", ALICE, "advice", evidence="form 3")
    await logged.give(SYSTEM, "city", ALICE, "advice", evidence="form 3")  # nothing written
    await logged.withdraw(SYSTEM, "city", ALICE, "advice", evidence="form 4")
    assert [(r.action, r.subject, r.activity_id) for r in journal.records] == [
        ("consent", ALICE, "urn:x:city:advice"),
        ("consent", ALICE, "urn:x:city:advice"),
    ]
