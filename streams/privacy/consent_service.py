"""Consent: given and withdrawn by the resident, or by the tenant on their documented behalf.

``Consents`` writes ISO/IEC TS 27560 consent records (``schemas/consent.py``) to their compacted
topic and reads them from the store's view. The rules:

- Consent is recorded only for an activity of the same tenant whose current version has legal
  basis ``Consent`` and is valid now (422 naming ``activity``, ``legal_basis``, ``valid_from`` or
  ``valid_to`` otherwise), and, to be given, for a data subject linked to at least one of the
  tenant's devices (404 otherwise).
- Withdrawing needs only a record to withdraw (404 if none): a resident can always withdraw,
  even after their devices were unlinked or the activity ended or changed its basis (GDPR
  article 7(3): as easy to withdraw as to give).
- Giving a consent that is active for the activity's current version, or withdrawing one that
  is withdrawn, writes nothing and returns the record as it is. Giving again after a
  withdrawal, or for a newer version of the activity, appends ``RenewedConsentGiven``.
- Who: a ``Resident`` only for their own (tenant, subject): anything else is not found (404).
  A key of the tenant with role ``operator`` or ``admin`` acts on the resident's behalf and must
  give ``evidence`` (422 otherwise); the change records the key's id. A ``subscriber`` key gets
  403 in its own tenant; any key of another tenant, admin keys included, gets 404, as a tenant
  that does not exist does: consents are the tenant's residents' business. The CLI's
  ``Principal.system()`` acts for every tenant, with evidence.
- ``withdraw_all`` (erasure) withdraws every active consent of a subject as ``system``.

Messages never repeat a data subject's id: it is personal data.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Counter

from cityhub.schemas.consent import (
    MAX_EVIDENCE,
    MAX_REASON,
    ActivityRef,
    CollectionMethod,
    ConsentRecord,
    ConsentStatus,
    Notice,
    check_text,
)
from cityhub.schemas.consent_change import Change, HistoryFull, append, new_record
from cityhub.schemas.processing import LegalBasis, ProcessingActivity
from cityhub.schemas.processing_log import processing_record
from cityhub.schemas.registry import ID_PATTERN, Role, validate_data_subject
from cityhub.schemas.timefmt import parse_rfc3339, rfc3339
from cityhub.streams.privacy.consent_store import ConsentRecordStore
from cityhub.streams.privacy.consent_view import ConsentView
from cityhub.streams.privacy.log_writer import ProcessingLogSink
from cityhub.streams.privacy.resident import Resident
from cityhub.streams.privacy.view import RegisterView
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.view import RegistryView
from cityhub.streams.service_errors import Conflict, FieldError, Forbidden, Invalid, NotFound

CHANGES = Counter(
    "cityhub_consent_changes",
    "Consent changes written, by status and how they were collected.",
    ["status", "collection_method"],
)

_SLUG = re.compile(ID_PATTERN)
_NO_SUBJECT = "data subject not found"


@dataclass(frozen=True, slots=True)
class _Actor:
    """Who a change is recorded as."""

    method: CollectionMethod
    resident_credential: str | None = None
    acting_key_id: str | None = None
    evidence: str | None = None


class Consents:
    """Consent records over a store, checked against the register of processing activities
    (``activities_view``) and the registry (``registry_view``: tenants, keys' tenants and the
    devices linked to each subject). Writes of one instance are serialised; a write that lost a
    race with another instance is refused (409) rather than reported done. ``on_change``, if
    given, is awaited with each record a change was written to (not for a change that wrote
    nothing), e.g. to write a processing-log record of action ``consent``; if it raises, the
    caller sees the error although the change stands."""

    def __init__(
        self,
        store: ConsentRecordStore,
        activities_view: RegisterView,
        registry_view: RegistryView,
        *,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[ConsentRecord], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._on_change = on_change
        self._activities = activities_view
        self._registry = registry_view
        self._clock = clock
        self._writing = asyncio.Lock()

    @property
    def view(self) -> ConsentView:
        return self._store.view

    # --- who may ---------------------------------------------------------------------------
    def _subject_of(self, who: Principal | Resident, tenant: str, subject: str) -> None:
        """Raise unless ``who`` may see and act on ``subject`` of ``tenant``."""
        if isinstance(who, Resident):
            if who.tenant != tenant or who.subject != subject:
                raise NotFound(_NO_SUBJECT)
            return
        is_system = who.key_id == Principal.system().key_id and who.tenant == "*"
        if not is_system and who.tenant != tenant:
            raise NotFound(f"tenant {tenant[:64]!r} not found")
        if who.role is Role.SUBSCRIBER:
            raise Forbidden(
                "a subscriber key may not see or change residents' consents; an operator or "
                "admin key of the tenant may, on a resident's documented behalf"
            )
        if self._registry.tenant(tenant) is None:
            raise NotFound(f"tenant {tenant[:64]!r} not found")
        try:
            validate_data_subject(subject)
        except ValueError as exc:
            raise Invalid(str(exc), errors=[FieldError("data_subject", str(exc))]) from None

    def _actor(self, who: Principal | Resident, evidence: str | None) -> _Actor:
        checked = _text(evidence, "evidence", MAX_EVIDENCE)
        if isinstance(who, Resident):
            return _Actor(
                CollectionMethod.RESIDENT, resident_credential=who.credential, evidence=checked
            )
        if checked is None:
            raise Invalid(
                "a change on a resident's behalf needs evidence: a reference to the resident's "
                "documented decision (a signed form's number, a letter's date and reference)",
                errors=[FieldError("evidence", "required when a tenant's key acts")],
            )
        return _Actor(CollectionMethod.TENANT_ON_BEHALF, acting_key_id=who.key_id, evidence=checked)

    def _consent_activity(self, tenant: str, slug: str, now: datetime) -> ProcessingActivity:
        """The tenant's activity ``slug`` if its current version has basis Consent and is
        valid at ``now``; Invalid naming the field at fault otherwise."""
        activity = self._activities.get(tenant, slug) if _SLUG.match(slug) else None
        if activity is None:
            raise Invalid(
                f"tenant {tenant!r} has no processing activity {slug[:64]!r}",
                errors=[FieldError("activity", "no such processing activity in this tenant")],
            )
        current = activity.current
        if current.legal_basis is not LegalBasis.CONSENT:
            raise Invalid(
                f"processing activity {slug!r} rests on {current.legal_basis.value}, not "
                "Consent: there is no consent to record for it",
                errors=[FieldError("legal_basis", f"is {current.legal_basis.value}, not Consent")],
            )
        if not current.valid_at(now):
            field, when = (
                ("valid_from", current.valid_from)
                if current.valid_to is None or now < parse_rfc3339(current.valid_from)
                else ("valid_to", current.valid_to)
            )
            raise Invalid(
                f"processing activity {slug!r} is not valid now ({field} {when})",
                errors=[FieldError(field, f"the activity is not valid now ({field} {when})")],
            )
        return activity

    # --- reads -------------------------------------------------------------------------------
    def of_subject(
        self, who: Principal | Resident, tenant: str, subject: str
    ) -> list[ConsentRecord]:
        """The subject's consent records in the tenant, by activity slug (maybe none)."""
        self._subject_of(who, tenant, subject)
        return self.view.of_subject(tenant, subject)

    def get(
        self, who: Principal | Resident, tenant: str, subject: str, activity_slug: str
    ) -> ConsentRecord:
        """The subject's record for one activity; NotFound if there is none."""
        self._subject_of(who, tenant, subject)
        return self._held(tenant, subject, activity_slug)

    def _held(self, tenant: str, subject: str, activity_slug: str) -> ConsentRecord:
        held = self.view.get(tenant, subject, activity_slug)
        if held is None:
            raise NotFound(
                f"no consent of this data subject to processing activity {activity_slug[:64]!r}"
            )
        return held

    # --- writes ------------------------------------------------------------------------------
    async def give(
        self,
        who: Principal | Resident,
        tenant: str,
        subject: str,
        activity_slug: str,
        *,
        evidence: str | None = None,
        notice: Notice | None = None,
    ) -> ConsentRecord:
        """Record the subject's consent to the activity's current version (see the module
        docstring for the rules); the record as it is after, written or not. Without
        ``notice``, the notice is the activity's public entry in the register at that version."""
        self._subject_of(who, tenant, subject)
        actor = self._actor(who, evidence)
        if not self._registry.devices_of_subject(tenant, subject):
            raise NotFound(f"no device of tenant {tenant!r} is linked to this data subject")
        async with self._writing:
            now = self._clock()
            activity = self._consent_activity(
                tenant, activity_slug, datetime.fromtimestamp(now, UTC)
            )
            version = activity.current
            held = self.view.get(tenant, subject, activity_slug)
            consented = held.consented if held is not None else None
            if (
                held is not None
                and held.active
                and consented is not None
                and consented.activity_version == version.version
            ):
                return held
            change = Change(
                status=ConsentStatus.GIVEN if held is None else ConsentStatus.RENEWED,
                indicated_at=rfc3339(now),
                collection_method=actor.method,
                resident_credential=actor.resident_credential,
                acting_key_id=actor.acting_key_id,
                evidence=actor.evidence,
                activity_version=version.version,
                purpose=version.purpose,
                personal_data_categories=tuple(version.personal_data_categories),
                notice=notice or Notice(uri=activity.id, version=str(version.version)),
            )
            if held is None:
                record = new_record(
                    tenant=tenant,
                    subject=subject,
                    controller=version.controller,
                    activity=ActivityRef(id=activity.id, slug=activity.slug),
                    created_at=change.indicated_at,
                    first=change,
                )
                return await self._write(record)
            return await self._write(_appended(held, change))

    async def withdraw(
        self,
        who: Principal | Resident,
        tenant: str,
        subject: str,
        activity_slug: str,
        *,
        evidence: str | None = None,
        reason: str | None = None,
    ) -> ConsentRecord:
        """Record the withdrawal of the subject's consent to the activity; NotFound if no
        consent was ever given. Withdrawing a withdrawn consent writes nothing."""
        self._subject_of(who, tenant, subject)
        actor = self._actor(who, evidence)
        why = _text(reason, "reason", MAX_REASON)
        async with self._writing:
            held = self._held(tenant, subject, activity_slug)
            if not held.active:
                return held
            change = Change(
                status=ConsentStatus.WITHDRAWN,
                indicated_at=rfc3339(self._clock()),
                collection_method=actor.method,
                resident_credential=actor.resident_credential,
                acting_key_id=actor.acting_key_id,
                evidence=actor.evidence,
                reason=why,
            )
            return await self._write(_appended(held, change))

    async def withdraw_all(self, tenant: str, subject: str, *, reason: str) -> list[ConsentRecord]:
        """Withdraw every active consent of the subject in the tenant, as cityhub itself
        (``system``) with ``reason`` (for an erasure); the records that changed."""
        why = _text(reason, "reason", MAX_REASON)
        if why is None:
            raise Invalid("a reason is required", errors=[FieldError("reason", "required")])
        changed = []
        async with self._writing:
            for held in self.view.of_subject(tenant, subject):
                if not held.active:
                    continue
                change = Change(
                    status=ConsentStatus.WITHDRAWN,
                    indicated_at=rfc3339(self._clock()),
                    collection_method=CollectionMethod.SYSTEM,
                    reason=why,
                )
                changed.append(await self._write(_appended(held, change)))
        return changed

    async def _write(self, record: ConsentRecord) -> ConsentRecord:
        await self._store.put(record)
        shown = self.view.get(record.tenant, record.data_subject, record.processing_activity.slug)
        if shown is None or shown.head != record.head:
            # Another instance appended first: the view refused ours as not extending its.
            raise Conflict(
                "this consent changed at the same moment through another instance of the hub; "
                "read it again and repeat the change if it is still needed"
            )
        CHANGES.labels(record.status.value, record.last.collection_method.value).inc()
        if self._on_change is not None:
            await self._on_change(record)
        return record


def consent_logger(
    log: ProcessingLogSink, *, clock: Callable[[], float] = time.time
) -> Callable[[ConsentRecord], Awaitable[None]]:
    """An ``on_change`` that writes each consent change to the processing log (action
    ``consent``, the activity and the subject; the collection method is in the record)."""

    async def write(record: ConsentRecord) -> None:
        now = clock()
        entry = processing_record(
            name="cityhub.consent",
            trace=None,
            parent_span_id=None,
            started=now,
            ended=now,
            ok=True,
            activity_id=record.processing_activity.id,
            tenant=record.tenant,
            subject=record.data_subject,
            recipient=None,
            items=1,
            action="consent",
        )
        await log.write([entry])

    return write


def _appended(record: ConsentRecord, change: Change) -> ConsentRecord:
    try:
        return append(record, change)
    except HistoryFull as exc:
        raise Conflict(
            f"{exc}; the consent cannot change again through cityhub (ask the tenant's "
            "data-protection officer)"
        ) from None


def _text(value: str | None, field: str, max_length: int) -> str | None:
    if value is None:
        return None
    try:
        return check_text(value, field=field, max_length=max_length)
    except ValueError as exc:
        raise Invalid(str(exc), errors=[FieldError(field, str(exc))]) from None
