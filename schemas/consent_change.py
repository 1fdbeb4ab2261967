"""Writing consent records: the changes cityhub appends to a record's hash chain
(``Change``, ``new_record``, ``append``) and the API bodies that ask for them.

The record, its chain and ``verify`` are in ``cityhub.schemas.consent``. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from cityhub.schemas.consent import (
    MAX_EVIDENCE,
    MAX_HISTORY,
    MAX_REASON,
    MAX_RECORD_BYTES,
    WITHDRAWAL_BYTES,
    WITHDRAWAL_ROOM,
    ActivityRef,
    CollectionMethod,
    ConsentEvent,
    ConsentRecord,
    ConsentStatus,
    Notice,
    check_text,
    entry_hash,
    genesis,
    record_id,
)


class ConsentGiveSpec(BaseModel):
    """The body of a consent given through the API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    evidence: str | None = None
    """Required when a tenant's key acts on the resident's behalf: a reference to the
    resident's documented decision (1 to 500 characters, one line)."""
    notice: Notice | None = None
    """The notice shown; absent: the activity's public entry in the register, that version."""

    @field_validator("evidence")
    @classmethod
    def _evidence(cls, value: str | None) -> str | None:
        return (
            None if value is None else check_text(value, field="evidence", max_length=MAX_EVIDENCE)
        )


class ConsentWithdrawSpec(BaseModel):
    """The body of a withdrawal through the API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    evidence: str | None = None
    """As for a consent given."""
    reason: str | None = None
    """Optionally why (1 to 200 characters, one line)."""

    @field_validator("evidence")
    @classmethod
    def _evidence(cls, value: str | None) -> str | None:
        return (
            None if value is None else check_text(value, field="evidence", max_length=MAX_EVIDENCE)
        )

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value, field="reason", max_length=MAX_REASON)


# --- building --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Change:
    """A change to append, before it is numbered and chained."""

    status: ConsentStatus
    indicated_at: str
    collection_method: CollectionMethod
    resident_credential: str | None = None
    acting_key_id: str | None = None
    evidence: str | None = None
    reason: str | None = None
    activity_version: int | None = None
    purpose: str | None = None
    personal_data_categories: tuple[str, ...] | None = None
    notice: Notice | None = None


class HistoryFull(ValueError):
    """The record holds ``MAX_HISTORY`` entries or ``MAX_RECORD_BYTES``: no change fits."""


def _chained(change: Change, seq: int, prev_hash: str) -> ConsentEvent:
    fields: dict[str, Any] = {
        "seq": seq,
        "status": change.status,
        "indicated_at": change.indicated_at,
        "collection_method": change.collection_method,
        "resident_credential": change.resident_credential,
        "acting_key_id": change.acting_key_id,
        "evidence": change.evidence,
        "reason": change.reason,
        "activity_version": change.activity_version,
        "purpose": change.purpose,
        "personal_data_categories": (
            None
            if change.personal_data_categories is None
            else list(change.personal_data_categories)
        ),
        "notice": change.notice,
    }
    unhashed = ConsentEvent(**fields, prev_hash=prev_hash, hash="")
    return unhashed.model_copy(update={"hash": entry_hash(prev_hash, unhashed.body())})


def new_record(
    *,
    tenant: str,
    subject: str,
    controller: str,
    activity: ActivityRef,
    created_at: str,
    first: Change,
) -> ConsentRecord:
    """A record whose history is ``first`` (a consent given), chained to its genesis."""
    header = ConsentRecord.model_construct(
        id=record_id(tenant, subject, activity.slug),
        tenant=tenant,
        data_subject=subject,
        controller=controller,
        processing_activity=activity,
        created_at=created_at,
        history=[],
    )
    event = _chained(first, 1, genesis(header))
    return ConsentRecord(
        id=header.id,
        tenant=tenant,
        data_subject=subject,
        controller=controller,
        processing_activity=activity,
        created_at=created_at,
        history=[event],
    )


def append(record: ConsentRecord, change: Change) -> ConsentRecord:
    """``record`` with ``change`` chained after its last entry; HistoryFull if it would hold
    more than ``MAX_HISTORY`` entries or ``MAX_RECORD_BYTES`` of JSON, a withdrawal excepted:
    it has ``WITHDRAWAL_ROOM`` entries and ``WITHDRAWAL_BYTES`` more (a full record can always
    be withdrawn, and then erased)."""
    withdrawal = change.status is ConsentStatus.WITHDRAWN
    most = MAX_HISTORY + WITHDRAWAL_ROOM if withdrawal else MAX_HISTORY
    if len(record.history) >= most:
        raise HistoryFull(f"this consent record holds {most} changes, the most one record keeps")
    event = _chained(change, len(record.history) + 1, record.head)
    grown = record.model_copy(update={"history": [*record.history, event]})
    largest = MAX_RECORD_BYTES + WITHDRAWAL_BYTES if withdrawal else MAX_RECORD_BYTES
    if len(grown.model_dump_json().encode()) > largest:
        raise HistoryFull(
            f"this consent record would pass {largest} bytes, the most one record keeps"
        )
    return grown
