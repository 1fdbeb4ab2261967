"""The consent service and view over in-memory stores: the rules (which activities, which
subjects, who may, evidence on a resident's behalf), idempotent changes, a new version of the
activity asking for consent again, erasure's ``withdraw_all``, and the view refusing records it
cannot trust (tombstones, broken chains, histories cut back, records under another key)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from cityhub.schemas import consent_change
from cityhub.schemas.consent import (
    CollectionMethod,
    ConsentRecord,
    ConsentStatus,
    Notice,
    consent_key,
    verify,
)
from cityhub.schemas.consent_change import Change, append
from cityhub.schemas.processing import ActivityEnd, ActivityUpdate
from cityhub.streams.compacted import InMemoryTopic
from cityhub.streams.privacy.consent_service import Consents
from cityhub.streams.privacy.consent_store import InMemoryConsentStore
from cityhub.streams.privacy.resident import Resident
from cityhub.streams.service_errors import Conflict, Forbidden, Invalid, NotFound

from .test_consent_support import (
    BETA_SUBJECT,
    SUBJECT,
    SYSTEM,
    UNLINKED,
    World,
    activity,
    build_world,
)

ME = Resident(tenant="acme", subject=SUBJECT, credential="token:r1")
EVIDENCE = "signed form 2026-117"


@pytest.fixture
async def world() -> World:
    return await build_world()


async def test_given_withdrawn_and_given_again_by_the_resident(world: World) -> None:
    consents = world.consents
    assert not consents.view.active("acme", SUBJECT, "energy")
    rec = await consents.give(ME, "acme", SUBJECT, "energy")
    assert consents.view.active("acme", SUBJECT, "energy")
    first = rec.history[0]
    assert (first.status, first.collection_method) == (
        ConsentStatus.GIVEN,
        CollectionMethod.RESIDENT,
    )
    assert first.resident_credential == "token:r1"
    assert (first.activity_version, first.personal_data_categories) == (
        1,
        ["energy use", "indoor air"],
    )
    # No notice given: the activity's public entry in the register, that version.
    assert first.notice == Notice(uri="urn:cityhub:processing-activity:acme:energy", version="1")
    assert rec.controller == "Municipality of Example"
    rec = await consents.withdraw(ME, "acme", SUBJECT, "energy", reason="moving house")
    assert not consents.view.active("acme", SUBJECT, "energy")
    rec = await consents.give(ME, "acme", SUBJECT, "energy")
    assert [e.status for e in rec.history] == [
        ConsentStatus.GIVEN,
        ConsentStatus.WITHDRAWN,
        ConsentStatus.RENEWED,
    ]
    assert verify(rec).ok
    assert consents.of_subject(ME, "acme", SUBJECT) == [rec]
    assert consents.get(ME, "acme", SUBJECT, "energy") == rec
    assert len(world.store.log) == 3


async def test_the_same_change_twice_writes_nothing(world: World) -> None:
    changed: list[ConsentRecord] = []

    async def note(record: ConsentRecord) -> None:
        changed.append(record)

    consents = Consents(world.store, world.register.view, world.registry.view, on_change=note)
    rec = await consents.give(ME, "acme", SUBJECT, "energy")
    assert await consents.give(ME, "acme", SUBJECT, "energy") == rec
    withdrawn = await consents.withdraw(ME, "acme", SUBJECT, "energy")
    assert await consents.withdraw(ME, "acme", SUBJECT, "energy") == withdrawn
    assert len(world.store.log) == 2
    assert changed == [rec, withdrawn]


async def test_a_new_version_of_the_activity_asks_for_consent_again(world: World) -> None:
    consents = world.consents
    await consents.give(ME, "acme", SUBJECT, "energy", notice=Notice(sha256="ab" * 32))
    spec = activity("energy").model_dump(exclude={"slug"})
    spec["personal_data_categories"] = ["energy use", "indoor air", "presence"]
    await world.register.update(SYSTEM, "acme", "energy", ActivityUpdate.model_validate(spec))
    rec = await consents.give(ME, "acme", SUBJECT, "energy")
    assert [e.status for e in rec.history] == [ConsentStatus.GIVEN, ConsentStatus.RENEWED]
    assert rec.history[1].activity_version == 2
    assert consents.view.consented_version("acme", SUBJECT, "energy") == 2
    assert consents.view.consented_version("acme", SUBJECT, "parking") is None
    assert rec.public()["personal_data_categories"] == ["energy use", "indoor air", "presence"]
    assert rec.history[0].notice == Notice(sha256="ab" * 32)


async def test_a_tenant_acts_on_behalf_only_with_evidence(world: World) -> None:
    consents = world.consents
    operator = world.principal("op_a")
    with pytest.raises(Invalid) as caught:
        await consents.give(operator, "acme", SUBJECT, "energy")
    assert caught.value.errors[0].field == "evidence"
    rec = await consents.give(operator, "acme", SUBJECT, "energy", evidence=EVIDENCE)
    entry = rec.history[0]
    assert entry.collection_method is CollectionMethod.TENANT_ON_BEHALF
    assert (entry.acting_key_id, entry.evidence) == (operator.key_id, EVIDENCE)
    admin = world.principal("admin")
    rec = await consents.withdraw(admin, "acme", SUBJECT, "energy", evidence="phone call 12:00")
    assert rec.history[1].acting_key_id == admin.key_id
    # The CLI, as the platform's administrator, with evidence too.
    rec = await consents.give(SYSTEM, "acme", SUBJECT, "energy", evidence=EVIDENCE)
    assert rec.history[2].acting_key_id == "system"
    assert len(consents.of_subject(operator, "acme", SUBJECT)) == 1


async def test_who_may_not(world: World) -> None:
    consents = world.consents
    await consents.give(ME, "acme", SUBJECT, "energy")
    subscriber, other, other_admin = (
        world.principal("sub_a"),
        world.principal("op_b"),
        world.principal("admin"),
    )
    with pytest.raises(Forbidden):
        await consents.give(subscriber, "acme", SUBJECT, "energy", evidence=EVIDENCE)
    with pytest.raises(Forbidden):
        consents.of_subject(subscriber, "acme", SUBJECT)
    elsewhere = Resident(tenant="beta", subject=SUBJECT, credential="token:x")
    calls: tuple[Callable[[], Awaitable[object]], ...] = (
        lambda: consents.give(other, "acme", SUBJECT, "energy", evidence=EVIDENCE),
        lambda: consents.withdraw(other, "acme", SUBJECT, "energy", evidence=EVIDENCE),
        # Another tenant's resident, or this resident elsewhere or as another subject.
        lambda: consents.give(elsewhere, "acme", SUBJECT, "energy"),
        lambda: consents.give(ME, "beta", BETA_SUBJECT, "energy"),
        lambda: consents.give(ME, "acme", UNLINKED, "energy"),
        lambda: consents.withdraw(ME, "acme", "res-someone-else", "energy"),
    )
    for call in calls:
        with pytest.raises(NotFound) as caught:
            await call()
        assert SUBJECT not in caught.value.detail
    with pytest.raises(NotFound):
        consents.of_subject(other, "acme", SUBJECT)
    with pytest.raises(NotFound):
        consents.of_subject(ME, "acme", BETA_SUBJECT)
    # acme's admin key is not beta's: consents are each tenant's residents' business.
    with pytest.raises(NotFound):
        consents.of_subject(other_admin, "beta", BETA_SUBJECT)
    with pytest.raises(NotFound):
        consents.of_subject(SYSTEM, "nope", SUBJECT)
    assert len(world.store.log) == 1


async def test_which_activities_and_subjects(world: World) -> None:
    consents, operator = world.consents, world.principal("op_a")
    for slug, field in (
        ("parking", "legal_basis"),
        ("ended", "valid_to"),
        ("later", "valid_from"),
        ("nope", "activity"),
        ("../../x", "activity"),
        ("energy\n", "activity"),
    ):
        with pytest.raises(Invalid) as caught:
            await consents.give(ME, "acme", SUBJECT, slug)
        assert [e.field for e in caught.value.errors] == [field], slug
    # A subject of acme with no linked device: 404; a malformed id: 400, never repeated.
    with pytest.raises(NotFound) as not_found:
        await consents.give(operator, "acme", UNLINKED, "energy", evidence=EVIDENCE)
    assert UNLINKED not in not_found.value.detail
    with pytest.raises(Invalid) as invalid:
        await consents.give(operator, "acme", "123456782", "energy", evidence=EVIDENCE)
    assert invalid.value.errors[0].field == "data_subject"
    assert "123456782" not in invalid.value.detail
    # Never given: nothing to withdraw.
    with pytest.raises(NotFound):
        await consents.withdraw(ME, "acme", SUBJECT, "energy")
    assert world.store.log == []


async def test_withdrawing_needs_no_link_nor_a_valid_activity(world: World) -> None:
    consents = world.consents
    await consents.give(ME, "acme", SUBJECT, "energy")
    await world.registry.set_device_subject(SYSTEM, "acme", "air-1", None)
    await world.register.end(SYSTEM, "acme", "energy", ActivityEnd())
    rec = await consents.withdraw(ME, "acme", SUBJECT, "energy")
    assert not rec.active
    with pytest.raises(NotFound):
        await consents.give(ME, "acme", SUBJECT, "energy")


async def test_withdraw_all_for_an_erasure(world: World) -> None:
    consents = world.consents
    spec = activity("coaching")
    await world.register.create(SYSTEM, "acme", spec)
    await consents.give(ME, "acme", SUBJECT, "energy")
    await consents.give(ME, "acme", SUBJECT, "coaching")
    await consents.withdraw(ME, "acme", SUBJECT, "coaching")
    changed = await consents.withdraw_all("acme", SUBJECT, reason="erasure request 2026-12-03")
    assert [r.processing_activity.slug for r in changed] == ["energy"]
    last = changed[0].last
    assert (last.collection_method, last.reason) == (
        CollectionMethod.SYSTEM,
        "erasure request 2026-12-03",
    )
    assert verify(changed[0]).ok
    assert not any(r.active for r in consents.view.of_subject("acme", SUBJECT))
    assert await consents.withdraw_all("acme", SUBJECT, reason="again") == []
    with pytest.raises(Invalid):
        await consents.withdraw_all("acme", SUBJECT, reason="bad\x00reason")


async def test_hostile_evidence_through_the_service(world: World) -> None:
    operator = world.principal("op_a")
    for evidence in ("x" * 501, "a\nb", "\x1b[2J", "abc\u202edef", "\ud800"):
        with pytest.raises(Invalid) as caught:
            await world.consents.give(operator, "acme", SUBJECT, "energy", evidence=evidence)
        assert caught.value.errors[0].field == "evidence"
    rec = await world.consents.give(operator, "acme", SUBJECT, "energy", evidence="Ünïcödé ✓ " * 40)
    assert rec.history[0].evidence == ("Ünïcödé ✓ " * 40).strip()


async def _full_and_given(world: World, monkeypatch: pytest.MonkeyPatch) -> Consents:
    """The consents, their record of ME's energy consent at its bound (3 here) and given."""
    consents = world.consents
    monkeypatch.setattr(consent_change, "MAX_HISTORY", 3)
    await consents.give(ME, "acme", SUBJECT, "energy")
    await consents.withdraw(ME, "acme", SUBJECT, "energy")
    await consents.give(ME, "acme", SUBJECT, "energy")
    return consents


async def test_a_full_history_is_refused_with_409(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    consents = await _full_and_given(world, monkeypatch)
    # Full, and given: the withdrawal still fits (GDPR art. 7(3)); no give after it.
    await consents.withdraw(ME, "acme", SUBJECT, "energy")
    assert not consents.view.active("acme", SUBJECT, "energy")
    with pytest.raises(Conflict, match="3 changes"):
        await consents.give(ME, "acme", SUBJECT, "energy")
    assert not consents.view.active("acme", SUBJECT, "energy")


# --- the view --------------------------------------------------------------------------------
async def test_the_view_trusts_nothing_it_cannot_verify(world: World) -> None:
    consents, store = world.consents, world.store
    rec = await consents.give(ME, "acme", SUBJECT, "energy")
    rec = await consents.withdraw(ME, "acme", SUBJECT, "energy")
    key = consent_key("acme", SUBJECT, "energy")
    view = store.view
    # A tombstone would delete the record: ignored.
    store.append(key, None)
    # A forged entry: the view keeps what it had.
    forged = rec.model_copy(
        update={"history": [rec.history[0], rec.history[1].model_copy(update={"evidence": "x"})]}
    )
    store.append(key, forged.model_dump_json().encode())
    # The history cut back to "given": verifies alone, but does not extend what the view holds.
    cut = rec.model_copy(update={"history": rec.history[:1]})
    assert verify(cut).ok
    store.append(key, cut.model_dump_json().encode())
    # Under another subject's key.
    store.append(consent_key("acme", "res-someone-else", "energy"), rec.model_dump_json().encode())
    # Not even a record.
    store.append(key, b"{not json")
    store.append(key, json.dumps({"kind": "consent_record"}).encode())
    assert view.rejected() == {
        "malformed": 2,
        "tombstone": 1,
        "key": 1,
        "chain": 1,
        "not_extending": 1,
    }
    assert view.malformed == 6
    assert [r.reason for r in view.recent_rejections()] == [
        "tombstone",
        "chain",
        "not_extending",
        "key",
        "malformed",
        "malformed",
    ]
    assert view.recent_rejections()[1].detail.startswith("the hash chain breaks at entry 2")
    assert view.get("acme", SUBJECT, "energy") == rec
    assert not view.active("acme", SUBJECT, "energy")
    assert view.count() == 1
    assert view.active_count() == 0
    # The same record written again (a retry) is no change and no refusal.
    store.append(key, rec.model_dump_json().encode())
    assert view.malformed == 6


async def test_a_fresh_view_reads_the_same_chain_and_a_lost_race_is_a_conflict(
    world: World,
) -> None:
    topic = InMemoryTopic()
    first = Consents(InMemoryConsentStore(topic=topic), world.register.view, world.registry.view)
    second = Consents(InMemoryConsentStore(topic=topic), world.register.view, world.registry.view)
    rec = await first.give(ME, "acme", SUBJECT, "energy")
    assert second.view.get("acme", SUBJECT, "energy") == rec
    # Two instances append to the same record: the later one's view refuses its write.
    stale = ConsentRecord.model_validate_json(rec.model_dump_json())
    await first.withdraw(ME, "acme", SUBJECT, "energy")
    racing = append(
        stale,
        Change(
            status=ConsentStatus.WITHDRAWN,
            indicated_at=rec.last.indicated_at,
            collection_method=CollectionMethod.RESIDENT,
            resident_credential="token:r2",
        ),
    )
    with pytest.raises(Conflict, match="same moment"):
        await second._write(racing)
    fresh = InMemoryConsentStore(topic=topic)
    assert fresh.view.get("acme", SUBJECT, "energy") == first.view.get("acme", SUBJECT, "energy")


async def test_an_erasure_withdraws_a_full_record(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A review filled a record to its bound while given: the erasure's withdrawal was refused
    # (409) after the subject's key was already shredded, and the erasure stopped halfway.
    consents = await _full_and_given(world, monkeypatch)
    changed = await consents.withdraw_all("acme", SUBJECT, reason="erasure")
    assert [len(record.history) for record in changed] == [4]
    assert not consents.view.active("acme", SUBJECT, "energy")
