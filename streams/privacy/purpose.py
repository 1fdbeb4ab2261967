"""Purpose binding: may this personal item reach this subscription? (issue 10, point 3)

Pure: the views it reads are passed in, the time too. The worker asks when it routes an item to
a subscription's topic, and every delivery (a task, a live stream) asks again just before it
sends, so that an item queued before a withdrawal, an erasure or the end of an activity is not
delivered after it.

A personal item (one of a device whose type is classified ``personal``) reaches a subscription
only when all of these hold, checked in this order (the first that fails is the refusal,
counted per reason and never delivered):

1. the subscription is not read directly from its Kafka topic (``kafka_topic``): nobody could
   revoke or log what its reader does with the item afterwards;
2. it declares the processing activity it serves (``no_activity``), which is in the register
   (``unknown_activity``) of the item's tenant (``other_tenant``: the subscription's tenant is
   the item's, unless an agreement allows otherwise, below);
3. the activity is valid now (``activity_not_valid``: before ``valid_from``, from ``valid_to``);
4. it covers the item's kind of personal data: the device type's category is one of the
   activity's ``personal_data_categories``, compared without regard to case
   (``category_not_covered``);
5. where its legal basis is ``Consent``: the item has a data subject (``no_data_subject``) who
   has an active consent for the activity (``no_consent``), given to a version that says what
   the current one says (``consent_outdated``: a later version changed the purpose, the legal
   basis, the categories, the retention, the controller or the recipients, so the subject must
   consent again; a new version that changes only the name needs no new consent).

At delivery one more refusal can happen: the subject's key is gone (``erased``), see
``gate.py``.

Under an agreement (issue 13). Another tenant's personal item reaches a subscription only under
an agreement in force whose offer is personal: the offer names the provider's processing
activity (``Grant.processing_activity``) under which the provider shares the data, and points 3
to 5 are checked against that activity of the provider's register, not against the
subscription's: it is valid now, it covers the item's category, and where its legal basis is
consent the data subject consents to it (to a version with the current terms). The
subscription then needs no activity of its own (the provider's is the purpose the subject's
data is used for); point 1 still holds, and so does every other refusal. Without such an
agreement (none, ended, revoked, or one whose offer is not personal, which never covers a
personal item anyway) the item is refused as before (``no_activity``, else
``other_tenant``). The processing-log record of such a delivery is written under the
provider's tenant and activity (``gate.py``): the provider is the controller that answers to
the data subject.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import orjson

from cityhub.schemas.processing import ActivityVersion, LegalBasis, ProcessingActivity
from cityhub.schemas.subscription import Serving, Subscription
from cityhub.streams.sharing.grants import Grant

PRIVACY_HEADER = "cityhub-privacy"
"""The Kafka header a personal item carries on a subscription's topic: its ``PersonalMark``."""

PERSONAL = "personal"
"""The classification of a personal item (``Classification.PERSONAL``'s value)."""


class Refusal(StrEnum):
    """Why a personal item did not reach a subscription (the ``reason`` label of the metric)."""

    KAFKA_TOPIC = "kafka_topic"
    NO_ACTIVITY = "no_activity"
    UNKNOWN_ACTIVITY = "unknown_activity"
    OTHER_TENANT = "other_tenant"
    ACTIVITY_NOT_VALID = "activity_not_valid"
    CATEGORY_NOT_COVERED = "category_not_covered"
    NO_DATA_SUBJECT = "no_data_subject"
    NO_CONSENT = "no_consent"
    CONSENT_OUTDATED = "consent_outdated"
    ERASED = "erased"
    """At delivery only: the subject's key was shredded (erasure); the item cannot be opened."""
    UNREADABLE = "unreadable"
    """At delivery only: the item's mark or its sealed value could not be read."""


@dataclass(frozen=True, slots=True)
class PersonalMark:
    """What the check needs to know of a personal item, without decoding it."""

    tenant: str
    subject: str | None
    """The data subject the device is linked to; None for a personal device without one."""
    category: str
    """The device type's personal-data category (``DeviceType.data_category``)."""

    def header(self) -> tuple[str, bytes]:
        """The item's ``cityhub-privacy`` header."""
        return PRIVACY_HEADER, orjson.dumps(
            {"t": self.tenant, "s": self.subject, "c": self.category}
        )

    @classmethod
    def parse(cls, value: bytes) -> PersonalMark | None:
        """The mark of a header value; None when it is not one (never raises)."""
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(doc, dict):
            return None
        tenant, subject, category = doc.get("t"), doc.get("s"), doc.get("c")
        if type(tenant) is not str or type(category) is not str:
            return None
        if subject is not None and type(subject) is not str:
            return None
        return cls(tenant, subject, category)


AREA_AGGREGATES = "aggregates"
"""The personal-data category of an area's aggregate of personal devices (of no one device
type): an activity that is to receive such aggregates lists it."""


def aggregate_mark(
    tenant: str | None, device_id: str | None, category_of: Callable[[str, str], str] | None
) -> PersonalMark:
    """The mark of an aggregate classified personal (it has no data subject: subject-linked
    values are never aggregated): a device's aggregate carries its device's category,
    ``category_of(tenant, device id)``; an area's, ``AREA_AGGREGATES``."""
    owner = tenant or ""
    if device_id is not None and category_of is not None:
        return PersonalMark(owner, None, category_of(owner, device_id))
    return PersonalMark(owner, None, AREA_AGGREGATES)


def mark_of(headers: object) -> PersonalMark | Refusal | None:
    """The mark among a record's headers: None when the item is not personal (no such header),
    ``Refusal.UNREADABLE`` when the header is there but is not a mark (a personal item must
    never pass as an ordinary one)."""
    if not headers:
        return None
    for name, value in headers:  # type: ignore[attr-defined]
        if name == PRIVACY_HEADER:
            mark = PersonalMark.parse(value) if isinstance(value, bytes) else None
            return mark if mark is not None else Refusal.UNREADABLE
    return None


class Activities(Protocol):
    """The register's view (``cityhub.streams.privacy.view.RegisterView``)."""

    def get(self, tenant: str, slug: str) -> ProcessingActivity | None: ...


class ConsentLookup(Protocol):
    """The consents' view: whether ``subject`` of ``tenant`` consents to activity ``slug`` now,
    and to which version of it."""

    def active(self, tenant: str, subject: str, activity_slug: str) -> bool: ...

    def consented_version(self, tenant: str, subject: str, activity_slug: str) -> int | None: ...


def check(
    subscription: Subscription,
    mark: PersonalMark,
    *,
    activities: Activities,
    consents: ConsentLookup,
    now: datetime,
    grant: Grant | None = None,
) -> Refusal | None:
    """None when the item may reach ``subscription``, else why not (the module docstring).
    ``grant``: the agreement under which the item was routed to it, if any."""
    if subscription.delivery.serving is Serving.TOPIC:
        return Refusal.KAFKA_TOPIC
    provider = granted_activity(subscription.tenant, mark, grant, now)
    if provider is not None:
        return check_activity(
            mark.tenant, provider, mark, activities=activities, consents=consents, now=now
        )
    return check_activity(
        subscription.tenant,
        subscription.processing_activity,
        mark,
        activities=activities,
        consents=consents,
        now=now,
    )


def granted_activity(
    consumer: str, mark: PersonalMark, grant: Grant | None, now: datetime
) -> str | None:
    """The provider's activity under which ``grant`` shares ``mark``'s item with ``consumer``
    now, or None when it does not: another tenant's item, an agreement the consumer holds with
    the item's tenant, in force at ``now``, whose offer is personal."""
    if grant is None or mark.tenant == consumer:
        return None
    if grant.consumer != consumer or grant.provider != mark.tenant or not grant.active_at(now):
        return None
    return grant.processing_activity


def check_activity(
    tenant: str,
    slug: str | None,
    mark: PersonalMark,
    *,
    activities: Activities,
    consents: ConsentLookup,
    now: datetime,
) -> Refusal | None:
    """Points 2 to 5 of the module docstring for a recipient of ``tenant`` that serves activity
    ``slug`` of its register: a subscription, or a read through the API that names one."""
    if slug is None:
        return Refusal.NO_ACTIVITY
    if tenant != mark.tenant:
        return Refusal.OTHER_TENANT
    activity = activities.get(tenant, slug)
    if activity is None:
        return Refusal.UNKNOWN_ACTIVITY
    current = activity.current
    if not current.valid_at(now):
        return Refusal.ACTIVITY_NOT_VALID
    wanted = mark.category.casefold()
    if not any(category.casefold() == wanted for category in current.personal_data_categories):
        return Refusal.CATEGORY_NOT_COVERED
    if current.legal_basis is LegalBasis.CONSENT:
        if mark.subject is None:
            return Refusal.NO_DATA_SUBJECT
        if not consents.active(mark.tenant, mark.subject, slug):
            return Refusal.NO_CONSENT
        version = consents.consented_version(mark.tenant, mark.subject, slug)
        if version != current.version and not _same_terms(activity, version, current):
            return Refusal.CONSENT_OUTDATED
    return None


def _terms(version: ActivityVersion) -> tuple[object, ...]:
    """What a data subject consents to: everything but the name and the validity."""
    return (
        version.purpose,
        version.purpose_iri,
        version.legal_basis,
        sorted(category.casefold() for category in version.personal_data_categories),
        version.retention,
        version.controller,
        sorted(version.recipients),
    )


def _same_terms(
    activity: ProcessingActivity, consented: int | None, current: ActivityVersion
) -> bool:
    """Whether version ``consented`` of ``activity`` says what ``current`` says."""
    found = next((v for v in activity.versions if v.version == consented), None)
    return found is not None and _terms(found) == _terms(current)
