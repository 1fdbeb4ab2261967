"""Consent records in the shape of ISO/IEC TS 27560 as the DPV community implements it
(``https://w3id.org/dpv/guides/consent-27560``), with a tamper-evident status history.

One record per (tenant, data subject, processing activity) holds everything about that consent:

========================  ==================================  ===========================
field                     meaning                             DPV / 27560 term
========================  ==================================  ===========================
``id``                    ``urn:uuid:<uuid5>`` of (tenant,     ``dct:identifier``
                          subject, activity slug): stable
``conforms_to``           the DPV 27560 record schema          ``dct:conformsTo``
``data_subject``          the tenant's pseudonym               ``dpv:hasDataSubject``
``controller``            the activity's controller            ``dpv:hasDataController``
``processing_activity``   the activity's id (a URI) and slug   ``dpv:hasProcess``
``legal_basis``           always ``Consent``                   ``dpv:hasLegalBasis``
``created_at``            when the record was made             ``dct:created``
``history``               every change of status, oldest       ``dpv:hasConsentStatus``
                          first
========================  ==================================  ===========================

Each history entry (``ConsentEvent``) says the status (``dpv:ConsentGiven``,
``dpv:ConsentWithdrawn``, ``dpv:RenewedConsentGiven``), when (``dpv:isIndicatedAtTime``), how it
was collected (``collection_method``: ``resident`` through their own token or OpenID Connect
login, ``tenant-on-behalf`` with a documented ``evidence`` reference and the acting key's id, or
``system`` for the withdrawals an erasure makes; ``dpv:isIndicatedBy``,
``dpv:hasIndicationMethod``) and, for a consent given, what was consented to: the activity's
version, its purpose (``dpv:hasPurpose``) and personal-data categories (``dpv:hasPersonalData``)
copied from that version, and the notice shown (``dpv:hasNotice``, a ``dpv:ConsentNotice``: a
URI and/or the SHA-256 of its text, its version and language).

Tamper evidence: every entry carries ``prev_hash`` and
``hash = sha256(prev_hash || canonical JSON of the entry without prev_hash and hash)``, hex; the
first entry's ``prev_hash`` is the ``genesis`` hash of the record's fixed fields (its id, tenant,
subject, controller, activity, legal basis and creation time), so an entry cannot be moved to
another record.
Canonical JSON is RFC 8785 (JCS); for what an entry holds (strings, integers, null, lists of
strings) that is ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` in
UTF-8. ``verify(record)`` says whether the chain holds and where it breaks. Records are bounded
(``MAX_HISTORY`` entries, ``MAX_RECORD_BYTES`` of JSON) so that one fits in a Kafka message.
Appending to a record is ``cityhub.schemas.consent_change``'s.

Pure: pydantic models and functions, no I/O.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cityhub.schemas.errors import InvalidTimestamp
from cityhub.schemas.plain_text import one_line, stored
from cityhub.schemas.registry import ID_PATTERN, validate_data_subject
from cityhub.schemas.timefmt import parse_rfc3339

DPV = "https://w3id.org/dpv#"
CONFORMS_TO: Final = "https://w3id.org/dpv/schema/dpv-27560#record"
"""The DPV community's schema of an ISO/IEC TS 27560 consent record (``dct:conformsTo``)."""
CONSENT_BASIS: Final = "Consent"
CONSENT_BASIS_IRI = f"{DPV}Consent"

MAX_HISTORY = 256
"""History entries a consent may be given in; the next give is refused (409). A withdrawal
always fits: it may be one entry more (``WITHDRAWAL_ROOM``)."""
MAX_RECORD_BYTES = 512 * 1024
"""A record's JSON stays below this (half of Kafka's default message size); the next give
that would pass it is refused (409), whatever the number of entries. A withdrawal may pass it
by up to ``WITHDRAWAL_BYTES``."""
WITHDRAWAL_ROOM = 1
"""Entries beyond ``MAX_HISTORY`` for a withdrawal: no bound may keep a resident from
withdrawing (GDPR art. 7(3)) nor an erasure from withdrawing for them. One is enough: a
withdrawn consent is not withdrawn again, and no give fits past ``MAX_HISTORY``."""
WITHDRAWAL_BYTES = 8 * 1024
"""Bytes beyond ``MAX_RECORD_BYTES`` for that withdrawal (its evidence and reason at their
longest, escaped)."""
MAX_EVIDENCE = 500
"""Characters of an evidence reference (a case number, a form's id, a letter's date)."""
MAX_REASON = 200

_RECORD_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, CONFORMS_TO + "/cityhub")
_GENESIS_DOMAIN = "cityhub.consent-record.v1"


class ConsentStatus(StrEnum):
    """A status in a record's history, by its DPV name."""

    GIVEN = "ConsentGiven"
    WITHDRAWN = "ConsentWithdrawn"
    RENEWED = "RenewedConsentGiven"
    """Given again after a withdrawal, or for a newer version of the activity."""

    @property
    def iri(self) -> str:
        return f"{DPV}{self.value}"

    @property
    def active(self) -> bool:
        """Whether processing may rely on consent in this status."""
        return self is not ConsentStatus.WITHDRAWN


class CollectionMethod(StrEnum):
    """How a change was collected (who indicated it)."""

    RESIDENT = "resident"
    """The data subject themselves, through a resident token or an OpenID Connect login."""
    TENANT_ON_BEHALF = "tenant-on-behalf"
    """The tenant, on the resident's documented behalf (an ``evidence`` reference required)."""
    SYSTEM = "system"
    """cityhub itself: the withdrawals an erasure request makes (a ``reason`` required)."""


def check_text(value: str, *, field: str, max_length: int) -> str:
    """``value`` stripped, if it is 1 to ``max_length`` characters of one line of valid
    Unicode (no control characters, no lone surrogates); ValueError naming ``field`` and never
    repeating the value otherwise."""
    value = value.strip()
    if not value or len(value) > max_length:
        raise ValueError(f"{field} must be 1 to {max_length} characters")
    try:
        return one_line(value)
    except ValueError as refused:
        raise ValueError(f"{field} {refused}") from None


_NOTICE_URI = re.compile(r"^(?:https?://|urn:[a-z0-9][a-z0-9-]{0,31}:)[!#-;=?-~]+$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,4}$")


class Notice(BaseModel):
    """The notice the resident was shown (``dpv:hasNotice``, a ``dpv:ConsentNotice``): where it
    is (``uri``) and/or the SHA-256 of its exact text (``sha256``), with its version and
    language. At least one of ``uri`` and ``sha256``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: Annotated[str, StringConstraints(max_length=512, pattern=_NOTICE_URI.pattern)] | None = (
        None
    )
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None
    """Lower-case hex SHA-256 of the notice's text as shown (UTF-8)."""
    version: str | None = None
    language: Annotated[str, StringConstraints(max_length=35, pattern=_LANGUAGE.pattern)] | None = (
        None
    )
    """A BCP 47 language tag (``nl``, ``en-GB``)."""

    @field_validator("version")
    @classmethod
    def _version(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or stored(info):
            return value
        return check_text(value, field="version", max_length=64)

    @model_validator(mode="after")
    def _located(self) -> Notice:
        if self.uri is None and self.sha256 is None:
            raise ValueError("a notice needs its uri or the sha256 of its text (or both)")
        return self


class ActivityRef(BaseModel):
    """The processing activity a record is about (``dpv:hasProcess``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    """Its URI in the register of processing activities."""
    slug: Annotated[str, StringConstraints(pattern=ID_PATTERN)]


class ConsentEvent(BaseModel):
    """One change of a consent's status: an entry of the record's hash chain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int = Field(ge=1)
    """1 for the first entry, then 2, 3, ..."""
    status: ConsentStatus
    indicated_at: str
    """RFC 3339, when cityhub recorded the change (``dpv:isIndicatedAtTime``)."""
    collection_method: CollectionMethod
    resident_credential: str | None = None
    """``resident``: how they authenticated (``token:<id>``, ``oidc:<issuer>``), never a secret."""
    acting_key_id: str | None = None
    """``tenant-on-behalf``: the API key that acted (``system`` for the CLI)."""
    evidence: str | None = None
    """``tenant-on-behalf``: the documented evidence of the resident's decision (required)."""
    reason: str | None = None
    """Why, where it says more than the status (``system``: required, e.g. ``erasure``)."""
    activity_version: int | None = Field(default=None, ge=1)
    """Given: the version of the activity consented to."""
    purpose: str | None = None
    """Given: the purpose, copied from that version."""
    personal_data_categories: list[str] | None = None
    """Given: the personal-data categories, copied from that version."""
    notice: Notice | None = None
    """Given: the notice shown."""
    prev_hash: str
    hash: str

    def body(self) -> dict[str, Any]:
        """What the hash covers: the entry without ``prev_hash`` and ``hash``."""
        return self.model_dump(mode="json", exclude={"prev_hash", "hash"})


class ConsentRecord(BaseModel):
    """A consent record and its whole history: the value on the ``consents`` topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["consent_record"] = "consent_record"
    conforms_to: Literal["https://w3id.org/dpv/schema/dpv-27560#record"] = CONFORMS_TO
    id: str
    tenant: Annotated[str, StringConstraints(pattern=ID_PATTERN)]
    data_subject: str = Field(repr=False)
    """The tenant's pseudonym of the resident: personal data, never logged (no repr)."""
    controller: str
    processing_activity: ActivityRef
    legal_basis: Literal["Consent"] = CONSENT_BASIS
    created_at: str
    history: list[ConsentEvent] = Field(min_length=1, max_length=MAX_HISTORY + WITHDRAWAL_ROOM)

    @field_validator("data_subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        return validate_data_subject(value)

    @property
    def last(self) -> ConsentEvent:
        return self.history[-1]

    @property
    def status(self) -> ConsentStatus:
        return self.last.status

    @property
    def active(self) -> bool:
        """Whether the consent is given now (by the record's own history)."""
        return self.last.status.active

    @property
    def head(self) -> str:
        """The last entry's hash: whoever keeps it can later check that the record extends it."""
        return self.last.hash

    @property
    def consented(self) -> ConsentEvent | None:
        """The latest entry that gave consent (what it covers), or None if none did."""
        for event in reversed(self.history):
            if event.status.active:
                return event
        return None

    def public(self) -> dict[str, Any]:
        """The record as the API answers: every field, the hash chain, and derived from it the
        current ``status``, ``active``, ``head`` and, from the latest consent given, the
        ``activity_version``, ``purpose`` and ``personal_data_categories`` it covers."""
        doc = self.model_dump(mode="json")
        consented = self.consented
        doc.update(
            legal_basis_iri=CONSENT_BASIS_IRI,
            status=self.status.value,
            status_iri=self.status.iri,
            active=self.active,
            head=self.head,
            activity_version=consented.activity_version if consented else None,
            purpose=consented.purpose if consented else None,
            personal_data_categories=consented.personal_data_categories if consented else None,
        )
        return doc


# --- identity and keys -----------------------------------------------------------------------
def record_id(tenant: str, subject: str, activity_slug: str) -> str:
    """The record's id: a name-based UUID of (tenant, subject, slug), the same every time, that
    does not show the subject."""
    name = f"{tenant}\x1f{subject}\x1f{activity_slug}"
    return f"urn:uuid:{uuid.uuid5(_RECORD_NAMESPACE, name)}"


def consent_key(tenant: str, subject: str, activity_slug: str) -> str:
    """The compacted topic's key: ``consent/<tenant>/<subject>/<activity slug>``."""
    return f"consent/{tenant}/{subject}/{activity_slug}"


def record_key(record: ConsentRecord) -> str:
    return consent_key(record.tenant, record.data_subject, record.processing_activity.slug)


# --- the hash chain --------------------------------------------------------------------------
def canonical_json(doc: Any) -> bytes:
    """RFC 8785 canonical JSON of strings, integers, booleans, null, lists and objects (no
    floats): byte for byte ``json.dumps(doc, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False).encode()``, made by orjson, which is several times faster (every view
    verifies every record it reads)."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def _header(record: ConsentRecord) -> dict[str, Any]:
    return {
        "domain": _GENESIS_DOMAIN,
        "id": record.id,
        "tenant": record.tenant,
        "data_subject": record.data_subject,
        "controller": record.controller,
        "processing_activity": record.processing_activity.model_dump(mode="json"),
        "legal_basis": record.legal_basis,
        "created_at": record.created_at,
    }


def genesis(record: ConsentRecord) -> str:
    """The first entry's ``prev_hash``: the SHA-256 of the record's fixed fields (its id first
    among them), so an entry chained to it belongs to this record and no other."""
    return hashlib.sha256(canonical_json(_header(record))).hexdigest()


def entry_hash(prev_hash: str, body: dict[str, Any]) -> str:
    """``sha256(prev_hash || canonical JSON of body)``, hex (``prev_hash`` as its hex text)."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(body)).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """The result of ``verify``: whether the record holds, and if not, the first entry (its
    ``seq``; 0 for the record's own fields) where it breaks and why."""

    ok: bool
    broken_at: int | None = None
    reason: str | None = None

    def public(self) -> dict[str, Any]:
        return {"ok": self.ok, "broken_at": self.broken_at, "reason": self.reason}


def _time(value: str) -> float | None:
    try:
        return parse_rfc3339(value).timestamp()
    except InvalidTimestamp:
        return None


def _rules(event: ConsentEvent, previous: ConsentEvent | None) -> str | None:
    """Why ``event`` is not an entry cityhub would have written after ``previous``, or None."""
    when = _time(event.indicated_at)
    if when is None:
        return "indicated_at is not an RFC 3339 time"
    if previous is None and event.status is not ConsentStatus.GIVEN:
        return "the first entry must give consent (ConsentGiven)"
    if previous is not None:
        if event.status is ConsentStatus.GIVEN:
            return "ConsentGiven may only be the first entry (later: RenewedConsentGiven)"
        if event.status is ConsentStatus.WITHDRAWN and not previous.status.active:
            return "withdrawn twice in a row"
        if when < (_time(previous.indicated_at) or 0.0):
            return "earlier than the entry before it"
    if event.collection_method is CollectionMethod.TENANT_ON_BEHALF and not (
        event.evidence and event.acting_key_id
    ):
        return "a change on the resident's behalf without evidence or acting key"
    if event.collection_method is CollectionMethod.RESIDENT and not event.resident_credential:
        return "a resident's change without their credential"
    if event.collection_method is CollectionMethod.SYSTEM and (
        event.status.active or not event.reason
    ):
        return "cityhub itself only withdraws, and says why"
    if event.status.active and (
        event.activity_version is None
        or event.purpose is None
        or event.personal_data_categories is None
        or event.notice is None
    ):
        return "a consent given without the activity version, purpose, categories and notice"
    return None


def verify(record: ConsentRecord) -> ChainCheck:
    """Whether ``record`` is what cityhub wrote: its id is the one of its tenant, subject and
    activity (a record moved to another subject or activity fails here, ``broken_at`` 0), every
    entry is numbered in order, chained to the one before (the first to the record's genesis)
    and hashes to its ``hash``, and follows the rules of a history (given first, no double
    withdrawal, time never going back, evidence where the tenant acted). A changed, removed,
    inserted or reordered entry breaks the chain at that entry or the next.

    What it cannot see: the *last* entries removed together with nothing after them (a shorter
    but consistent history). Compare ``head`` with one kept from an earlier answer for that."""
    expected_id = record_id(record.tenant, record.data_subject, record.processing_activity.slug)
    if record.id != expected_id:
        return ChainCheck(
            False, 0, "the record id is not the one of its tenant, subject and activity"
        )
    prev = genesis(record)
    previous: ConsentEvent | None = None
    for index, event in enumerate(record.history, start=1):
        if event.seq != index:
            return ChainCheck(False, index, f"entry {index} is numbered {event.seq}")
        if event.prev_hash != prev:
            return ChainCheck(False, index, "prev_hash is not the hash of the entry before")
        if entry_hash(prev, event.body()) != event.hash:
            return ChainCheck(False, index, "the entry does not hash to its hash (changed)")
        broken = _rules(event, previous)
        if broken is not None:
            return ChainCheck(False, index, broken)
        prev, previous = event.hash, event
    return ChainCheck(True)


def extends(record: ConsentRecord, earlier: ConsentRecord) -> bool:
    """Whether ``record``'s history is ``earlier``'s with entries appended (or the same)."""
    if record.id != earlier.id or len(record.history) < len(earlier.history):
        return False
    return all(a.hash == b.hash for a, b in zip(record.history, earlier.history, strict=False))


def holds_head(record: ConsentRecord, head: str) -> bool:
    """Whether ``head`` (a hash kept from an earlier answer) is an entry of ``record``'s chain:
    the record was not cut back or rewritten behind it (given ``verify(record).ok``)."""
    return any(event.hash == head for event in record.history)
