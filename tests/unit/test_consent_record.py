"""Consent records (``schemas/consent.py``): the ISO/IEC TS 27560 shape, the hash chain, and
``verify`` catching each kind of tampering (a changed, removed, inserted or reordered entry, a
record moved to another subject, a rewritten header), plus the bounds and hostile text."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest
from pydantic import ValidationError

from cityhub.schemas.consent import (
    CONFORMS_TO,
    MAX_HISTORY,
    MAX_RECORD_BYTES,
    WITHDRAWAL_BYTES,
    WITHDRAWAL_ROOM,
    ActivityRef,
    CollectionMethod,
    ConsentRecord,
    ConsentStatus,
    Notice,
    canonical_json,
    consent_key,
    extends,
    genesis,
    holds_head,
    record_id,
    record_key,
    verify,
)
from cityhub.schemas.consent_change import (
    Change,
    ConsentGiveSpec,
    HistoryFull,
    append,
    new_record,
)

SUBJECT = "res-7f3a9c21"
OTHER = "res-0b1c2d3e"
ACTIVITY = ActivityRef(id="urn:cityhub:processing-activity:acme:energy", slug="energy")


def given(at: str = "2026-12-01T10:00:00.000Z", **fields: Any) -> Change:
    values: dict[str, Any] = {
        "status": ConsentStatus.GIVEN,
        "indicated_at": at,
        "collection_method": CollectionMethod.RESIDENT,
        "resident_credential": "token:t1",
        "activity_version": 1,
        "purpose": "Advise on energy use.",
        "personal_data_categories": ("energy use",),
        "notice": Notice(uri="https://example.nl/notice", version="1", language="nl"),
    }
    values.update(fields)
    return Change(**values)


def withdrawn(at: str, **fields: Any) -> Change:
    values: dict[str, Any] = {
        "status": ConsentStatus.WITHDRAWN,
        "indicated_at": at,
        "collection_method": CollectionMethod.TENANT_ON_BEHALF,
        "acting_key_id": "k1",
        "evidence": "letter 2026-12-02 ref 42",
    }
    values.update(fields)
    return Change(**values)


def record(subject: str = SUBJECT) -> ConsentRecord:
    """Given, withdrawn, given again: three entries."""
    first = new_record(
        tenant="acme",
        subject=subject,
        controller="Municipality of Example",
        activity=ACTIVITY,
        created_at="2026-12-01T10:00:00.000Z",
        first=given(),
    )
    second = append(first, withdrawn("2026-12-02T10:00:00.000Z"))
    return append(
        second, given("2026-12-03T10:00:00.000Z", status=ConsentStatus.RENEWED, activity_version=2)
    )


def with_history(rec: ConsentRecord, history: list[Any]) -> ConsentRecord:
    return rec.model_copy(update={"history": history})


def test_a_record_in_the_27560_shape_that_verifies() -> None:
    rec = record()
    assert verify(rec).ok
    assert rec.conforms_to == CONFORMS_TO
    assert rec.id == record_id("acme", SUBJECT, "energy")
    assert rec.id.startswith("urn:uuid:")
    assert SUBJECT not in rec.id, "the id must not show the pseudonym"
    assert [e.status for e in rec.history] == [
        ConsentStatus.GIVEN,
        ConsentStatus.WITHDRAWN,
        ConsentStatus.RENEWED,
    ]
    assert rec.active
    assert rec.status is ConsentStatus.RENEWED
    doc = rec.public()
    assert doc["legal_basis_iri"] == "https://w3id.org/dpv#Consent"
    assert doc["status_iri"] == "https://w3id.org/dpv#RenewedConsentGiven"
    assert (doc["activity_version"], doc["personal_data_categories"]) == (2, ["energy use"])
    assert doc["head"] == rec.history[-1].hash
    assert record_key(rec) == consent_key("acme", SUBJECT, "energy")
    assert SUBJECT not in repr(rec)
    # The record survives its JSON, as on the topic.
    again = ConsentRecord.model_validate_json(rec.model_dump_json())
    assert again == rec
    assert verify(again).ok


def test_the_hash_is_documented_arithmetic() -> None:
    """Anyone can recompute the chain from the docs: sha256(prev_hash hex || JCS of the entry
    without prev_hash and hash)."""
    rec = record()
    assert rec.history[0].prev_hash == genesis(rec)
    for before, entry in zip([None, *rec.history], rec.history, strict=False):
        body = json.loads(entry.model_dump_json())
        del body["prev_hash"], body["hash"]
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        expected = hashlib.sha256(entry.prev_hash.encode() + canonical.encode()).hexdigest()
        assert entry.hash == expected
        if before is not None:
            assert entry.prev_hash == before.hash
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain",
        'quote " backslash \\ slash /',
        "\x00\x01\x08\t\n\x0b\x0c\r\x1f",
        "\x7f\x80\x9f\xa0é",
        "\u2028\u2029\ufeff\uffff",
        "😀\U0010ffff",
    ],
)
def test_canonical_json_is_the_documented_python_json(text: str) -> None:
    """The docs tell a verifier to use json.dumps; the chain is made with orjson: the same bytes."""
    doc = {"é": [text, None, 7, True], "a": {"z": text, "y": -5}, "b": text}
    documented = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(doc) == documented.encode()


def test_a_changed_entry_breaks_the_chain_at_that_entry() -> None:
    rec = record()
    changed = rec.history[1].model_copy(update={"evidence": "forged"})
    check = verify(with_history(rec, [rec.history[0], changed, rec.history[2]]))
    assert (check.ok, check.broken_at) == (False, 2)
    assert "hash" in (check.reason or "")
    # Changing it and recomputing its own hash only moves the break to the next entry.
    rehashed = changed.model_copy(
        update={
            "hash": hashlib.sha256(
                changed.prev_hash.encode() + canonical_json(changed.body())
            ).hexdigest()
        }
    )
    check = verify(with_history(rec, [rec.history[0], rehashed, rec.history[2]]))
    assert (check.ok, check.broken_at) == (False, 3)


def test_a_removed_entry_breaks_the_chain() -> None:
    rec = record()
    check = verify(with_history(rec, [rec.history[0], rec.history[2]]))
    assert not check.ok
    assert check.broken_at == 2
    # Even renumbered, the missing link shows.
    renumbered = rec.history[2].model_copy(update={"seq": 2})
    assert verify(with_history(rec, [rec.history[0], renumbered])).broken_at == 2
    # The first removed: the second is not chained to the genesis.
    assert verify(with_history(rec, rec.history[1:])).broken_at == 1


def test_reordered_entries_break_the_chain() -> None:
    rec = record()
    check = verify(with_history(rec, [rec.history[0], rec.history[2], rec.history[1]]))
    assert (check.ok, check.broken_at) == (False, 2)
    swapped_numbers = [
        rec.history[0],
        rec.history[2].model_copy(update={"seq": 2}),
        rec.history[1].model_copy(update={"seq": 3}),
    ]
    assert verify(with_history(rec, swapped_numbers)).broken_at == 2


def test_a_record_moved_to_another_subject_or_activity_fails() -> None:
    rec = record()
    moved = rec.model_copy(update={"data_subject": OTHER})
    check = verify(moved)
    assert (check.ok, check.broken_at) == (False, 0)
    # With the id made to match, the chain is still tied to the first subject.
    moved = moved.model_copy(update={"id": record_id("acme", OTHER, "energy")})
    assert verify(moved).broken_at == 1
    # Another subject's entries under this record: chained to that record's genesis.
    theirs = record(OTHER)
    assert verify(with_history(rec, theirs.history)).broken_at == 1
    # A rewritten header field (the controller) changes the genesis.
    assert verify(rec.model_copy(update={"controller": "Someone else"})).broken_at == 1


def test_an_entry_inserted_or_a_rule_broken_fails_even_when_rehashed() -> None:
    """A forger who recomputes every hash still cannot write a history cityhub would not."""
    first = new_record(
        tenant="acme",
        subject=SUBJECT,
        controller="C",
        activity=ACTIVITY,
        created_at="2026-12-01T10:00:00.000Z",
        first=given(),
    )
    for bad, why in (
        (withdrawn("2026-11-01T00:00:00.000Z"), "earlier"),
        (withdrawn("2026-12-02T00:00:00.000Z", evidence=None), "evidence"),
        (given("2026-12-02T00:00:00.000Z"), "ConsentGiven"),
        (
            Change(
                status=ConsentStatus.RENEWED,
                indicated_at="2026-12-02T00:00:00.000Z",
                collection_method=CollectionMethod.SYSTEM,
                reason="erasure",
            ),
            "only withdraws",
        ),
    ):
        check = verify(append(first, bad))
        assert (check.ok, check.broken_at) == (False, 2), why
        assert why in (check.reason or ""), check.reason
    twice = append(
        append(first, withdrawn("2026-12-02T00:00:00.000Z")), withdrawn("2026-12-03T00:00:00.000Z")
    )
    assert verify(twice).broken_at == 3


def test_extends_and_heads_show_a_history_cut_back() -> None:
    rec = record()
    shorter = with_history(rec, rec.history[:2])
    # Cutting the last entries leaves a consistent chain: verify cannot see it ...
    assert verify(shorter).ok
    # ... but a kept head, or the view's earlier copy, can.
    assert not holds_head(shorter, rec.head)
    assert holds_head(rec, shorter.head)
    assert extends(rec, shorter)
    assert not extends(shorter, rec)
    assert not extends(record(OTHER), shorter)


def test_bounded_by_entries_and_bytes() -> None:
    rec = new_record(
        tenant="acme",
        subject=SUBJECT,
        controller="C",
        activity=ACTIVITY,
        created_at="2026-12-01T10:00:00.000Z",
        first=given(),
    )
    for n in range(MAX_HISTORY - 2):
        change = (
            withdrawn(f"2026-12-02T00:00:{n % 60:02d}.000Z")
            if rec.active
            else given(f"2026-12-02T00:00:{n % 60:02d}.000Z", status=ConsentStatus.RENEWED)
        )
        rec = append(rec, change)
    # Given again while given (a renewal after the activity changed): full, and active.
    rec = append(rec, given("2026-12-03T00:00:00.000Z", status=ConsentStatus.RENEWED))
    assert len(rec.history) == MAX_HISTORY
    assert rec.active
    with pytest.raises(HistoryFull, match=str(MAX_HISTORY)):
        append(rec, given("2026-12-03T00:00:01.000Z", status=ConsentStatus.RENEWED))
    # The withdrawal still fits (a review found a full record that could be neither withdrawn
    # nor erased), and nothing after it.
    rec = append(rec, withdrawn("2026-12-03T00:00:02.000Z"))
    assert len(rec.history) == MAX_HISTORY + WITHDRAWAL_ROOM
    assert not rec.active
    read_back = ConsentRecord.model_validate_json(rec.model_dump_json())  # the schema takes it
    assert len(read_back.history) == MAX_HISTORY + WITHDRAWAL_ROOM
    with pytest.raises(HistoryFull):
        append(rec, given("2026-12-03T00:00:03.000Z", status=ConsentStatus.RENEWED))
    assert len(rec.model_dump_json().encode()) < MAX_RECORD_BYTES
    # Big entries hit the byte bound first.
    big = given(
        "2026-12-01T10:00:00.000Z",
        purpose="€" * 2000,
        personal_data_categories=tuple(f"{'ж' * 60}{i:02d}" for i in range(32)),
        evidence="证" * 500,
    )
    rec = new_record(
        tenant="acme",
        subject=SUBJECT,
        controller="C",
        activity=ACTIVITY,
        created_at="2026-12-01T10:00:00.000Z",
        first=big,
    )
    refusal = None
    while refusal is None and len(rec.history) < MAX_HISTORY:
        change = (
            withdrawn("2026-12-02T00:00:00.000Z", evidence="证" * 500)
            if rec.active
            else dataclasses.replace(big, status=ConsentStatus.RENEWED)
        )
        try:
            rec = append(rec, change)
        except HistoryFull as exc:
            refusal = exc
    assert refusal is not None
    assert "bytes" in str(refusal)
    assert len(rec.history) < MAX_HISTORY
    assert len(rec.model_dump_json().encode()) <= MAX_RECORD_BYTES + WITHDRAWAL_BYTES
    if rec.active:  # a give was refused: its withdrawal (evidence at its longest) still fits
        rec = append(rec, withdrawn("2026-12-02T00:00:00.000Z", evidence="证" * 500))
        assert len(rec.model_dump_json().encode()) <= MAX_RECORD_BYTES + WITHDRAWAL_BYTES


@pytest.mark.parametrize(
    "evidence",
    [
        "x" * 501,
        "",
        "   ",
        "line\nbreak",
        "nul\x00byte",
        "esc\x1b[31m",
        "bidi\u2028sep",
        "bom\ufeff",
        "lone \ud800 surrogate",
    ],
)
def test_hostile_evidence_is_refused_naming_the_field(evidence: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ConsentGiveSpec(evidence=evidence)
    assert caught.value.errors()[0]["loc"] == ("evidence",)
    assert evidence.strip() not in str(caught.value) or not evidence.strip()


def test_unicode_evidence_is_kept_and_chained() -> None:
    text = "Formulier 42 — getekend door bewoner ✓ 日本"
    spec = ConsentGiveSpec(evidence=f"  {text}  ")
    assert spec.evidence == text
    rec = new_record(
        tenant="acme",
        subject=SUBJECT,
        controller="C",
        activity=ACTIVITY,
        created_at="2026-12-01T10:00:00.000Z",
        first=given(evidence=text),
    )
    assert verify(ConsentRecord.model_validate_json(rec.model_dump_json().encode())).ok


def test_a_notice_needs_a_uri_or_a_digest() -> None:
    with pytest.raises(ValidationError, match="uri or the sha256"):
        Notice(version="1")
    with pytest.raises(ValidationError):
        Notice(uri="javascript:alert(1)")
    with pytest.raises(ValidationError):
        Notice(sha256="A" * 64)
    with pytest.raises(ValidationError):
        Notice(uri="https://x.nl/n", language="not a tag")
    assert Notice(sha256="a" * 64, language="nl-NL").sha256 == "a" * 64
