"""Consent records in memory: what the ``consents`` topic says, never trusted blindly.

Pure: no I/O. A store feeds it the topic's records in offset order with ``apply``; every process
that checks purposes (workers, delivery, API) holds one, and every check reads it as it is now
(nothing caches a decision). A record is taken only if it parses, sits under its own key, and
its hash chain verifies (``schemas/consent.verify``); an update must extend the history the view
already holds for that key (the same entries, then new ones). Anything else (a tombstone, a
broken chain, a history cut back or rewritten) is ignored, logged without the subject, and
counted per reason: the view keeps the record it had.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass

from pydantic import ValidationError

from cityhub.schemas.consent import ConsentRecord, record_key, verify
from cityhub.schemas.plain_text import STORED

log = logging.getLogger("cityhub.privacy.consents")

REJECTION_REASONS = ("malformed", "tombstone", "key", "chain", "not_extending")
"""Why a record is ignored: it does not parse as a consent record; it is a tombstone (records
are never deleted); it is under another key than its own; its chain does not verify; its
history does not extend the one the view holds."""


RECENT_REJECTIONS = 1000
"""Rejections kept in memory with their keys, for ``cityhub consents verify``."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record the view ignored: where, under which key, why."""

    offset: int
    key: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class _Held:
    """A verified record as the view keeps it: its JSON as read (a third of the parsed model's
    memory; parsed again on ``get``), its entries' hashes (to check that an update extends it)
    and what the purpose check asks (without parsing)."""

    value: bytes
    hashes: tuple[str, ...]
    active: bool
    consented_version: int | None

    def record(self) -> ConsentRecord:
        return ConsentRecord.model_validate_json(self.value, context=STORED)


class _Rejected(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class ConsentView:
    """The consent records after applying the topic's records up to ``offset``. ``apply``
    never raises on a bad record."""

    def __init__(self) -> None:
        self._offset = -1
        self._rejected: Counter[str] = Counter()
        self._records: dict[tuple[str, str], dict[str, _Held]] = {}
        self._active = 0
        self._recent: deque[Rejection] = deque(maxlen=RECENT_REJECTIONS)

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def malformed(self) -> int:
        """Records ignored, for every reason (the store's contract counts them together)."""
        return sum(self._rejected.values())

    def rejected(self) -> dict[str, int]:
        """Records ignored so far, by reason (``REJECTION_REASONS``)."""
        return {reason: self._rejected[reason] for reason in REJECTION_REASONS}

    def recent_rejections(self) -> list[Rejection]:
        """The last ``RECENT_REJECTIONS`` records ignored, oldest first (keys included: for the
        platform's operators, never logged)."""
        return list(self._recent)

    def apply(self, key: str, value: bytes | None, offset: int) -> None:
        """Apply one record, or ignore and count it (see the module docstring). Never raises."""
        self._offset = offset
        try:
            self._take(key, value)
        except _Rejected as exc:
            self._rejected[exc.reason] += 1
            self._recent.append(Rejection(offset, key[:300], exc.reason, str(exc)))
            # The key holds the subject's pseudonym: only its tenant part is logged.
            log.warning(
                "ignoring consent record at offset %d (tenant %r): %s",
                offset,
                key.split("/")[1][:64] if key.count("/") >= 1 else "?",
                exc,
            )

    def _take(self, key: str, value: bytes | None) -> None:
        if value is None:
            raise _Rejected("tombstone", "a tombstone: consent records are never deleted")
        try:
            # Its ``kind`` is a literal: any other record (or no JSON at all) fails here.
            record = ConsentRecord.model_validate_json(value, context=STORED)
        except ValidationError as exc:
            raise _Rejected(
                "malformed", f"not a consent record ({exc.error_count()} invalid field(s))"
            ) from None
        if key != record_key(record):
            raise _Rejected("key", "the key is not the record's own")
        check = verify(record)
        if not check.ok:
            raise _Rejected(
                "chain", f"the hash chain breaks at entry {check.broken_at}: {check.reason}"
            )
        slot = self._records.get((record.tenant, record.data_subject), {})
        slug = record.processing_activity.slug
        held = slot.get(slug)
        hashes = tuple(event.hash for event in record.history)
        if held is not None and hashes[: len(held.hashes)] != held.hashes:
            raise _Rejected(
                "not_extending",
                f"its history does not extend the {len(held.hashes)} entries held",
            )
        consented = record.consented
        self._active += int(record.active) - int(held.active if held is not None else False)
        slot[slug] = _Held(
            value,
            hashes,
            record.active,
            consented.activity_version if consented is not None else None,
        )
        self._records[(record.tenant, record.data_subject)] = slot

    def get(self, tenant: str, subject: str, activity_slug: str) -> ConsentRecord | None:
        """The record of this subject's consent to this activity, or None."""
        held = self._records.get((tenant, subject), {}).get(activity_slug)
        return None if held is None else held.record()

    def active(self, tenant: str, subject: str, activity_slug: str) -> bool:
        """Whether the subject's consent to the activity is given now (by its record). Cheap:
        no record is parsed."""
        held = self._records.get((tenant, subject), {}).get(activity_slug)
        return held is not None and held.active

    def consented_version(self, tenant: str, subject: str, activity_slug: str) -> int | None:
        """The activity version the subject's latest consent was given for (also after a
        withdrawal), or None if none was ever given. Cheap: no record is parsed."""
        held = self._records.get((tenant, subject), {}).get(activity_slug)
        return None if held is None else held.consented_version

    def of_subject(self, tenant: str, subject: str) -> list[ConsentRecord]:
        """The subject's records in this tenant, by activity slug."""
        slot = self._records.get((tenant, subject), {})
        return [slot[slug].record() for slug in sorted(slot)]

    def all_records(self) -> list[ConsentRecord]:
        """Every record held, by tenant, subject and activity slug."""
        return [
            slot[slug].record()
            for _, slot in sorted(self._records.items())
            for slug in sorted(slot)
        ]

    def count(self) -> int:
        """Records held."""
        return sum(len(slot) for slot in self._records.values())

    def active_count(self) -> int:
        """Records whose consent is given now."""
        return self._active
