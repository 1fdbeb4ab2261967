"""Personal items under an agreement (issue 13, purpose.py): another tenant's personal item
passes only under an agreement in force whose offer is personal, checked against the PROVIDER's
activity (validity, categories, the subject's consent to it), never the subscription's; every
other refusal stays. Pure: no broker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cityhub.schemas.processing import LegalBasis
from cityhub.schemas.sharing import AgreementState, ItemKind, Selection
from cityhub.streams.privacy.purpose import PersonalMark, Refusal, check
from cityhub.streams.sharing.grants import Grant, Grants

from .test_purpose import NOW, ConsentsOf, Register, activity, subscription
from .test_router_agreements import agreement

# The provider "acme" shares indoor-climate readings under its activity "advice" (consent) or
# "care" (public task); the consumer "city" has registered nothing of its own.
MARK = PersonalMark("acme", "res-7f3a9c21", "Indoor Climate")
REGISTER = Register(
    activity("care", LegalBasis.PUBLIC_TASK),
    activity("advice", LegalBasis.CONSENT),
    activity("ended", LegalBasis.PUBLIC_TASK, valid_to="2026-06-01T00:00:00Z"),
    activity("parking", LegalBasis.PUBLIC_TASK, categories=("licence plate",)),
    activity("care", LegalBasis.PUBLIC_TASK, tenant="city"),
)


def grant(slug: str | None, **overrides: Any) -> Grant:
    fields: dict[str, Any] = {
        "provider": "acme",
        "consumer": "city",
        "classification": "personal" if slug else "internal",
        "activity": slug,
        "kinds": (ItemKind.OBSERVATIONS,),
    }
    fields.update(overrides)
    found = Grants.from_agreements([agreement(Selection(device_types=["climate"]), **fields)])
    got = found.get("agr-1")
    assert got is not None
    return got


def verdict(
    record: Any, found: Grant | None, consents: Any = None, mark: PersonalMark = MARK
) -> Refusal | None:
    return check(
        record,
        mark,
        activities=REGISTER,
        consents=consents or ConsentsOf(),
        now=NOW,
        grant=found,
    )


CITY_HOOK = subscription(None, tenant="city")


def test_without_an_agreement_another_tenants_item_stays_refused() -> None:
    assert verdict(subscription("care", tenant="city"), None) is Refusal.OTHER_TENANT


def test_the_providers_public_task_activity_admits_it() -> None:
    # The consumer's subscription names no activity: the provider's is the purpose.
    assert verdict(CITY_HOOK, grant("care")) is None


def test_the_providers_consent_activity_needs_the_subjects_consent_to_it() -> None:
    assert verdict(CITY_HOOK, grant("advice")) is Refusal.NO_CONSENT
    to_provider = ConsentsOf(("acme", "res-7f3a9c21", "advice"))
    assert verdict(CITY_HOOK, grant("advice"), to_provider) is None
    # A consent to a same-named activity of the consumer does not count.
    to_consumer = ConsentsOf(("city", "res-7f3a9c21", "advice"))
    assert verdict(CITY_HOOK, grant("advice"), to_consumer) is Refusal.NO_CONSENT
    unlinked = PersonalMark("acme", None, "indoor climate")
    assert verdict(CITY_HOOK, grant("advice"), to_provider, unlinked) is Refusal.NO_DATA_SUBJECT


def test_the_providers_activity_must_be_valid_and_cover_the_category() -> None:
    assert verdict(CITY_HOOK, grant("ended")) is Refusal.ACTIVITY_NOT_VALID
    assert verdict(CITY_HOOK, grant("parking")) is Refusal.CATEGORY_NOT_COVERED
    assert verdict(CITY_HOOK, grant("gone")) is Refusal.UNKNOWN_ACTIVITY


def test_an_agreement_that_ended_or_is_not_the_consumers_does_not_admit() -> None:
    ended = grant("care", ends=NOW - timedelta(seconds=1))
    assert verdict(CITY_HOOK, ended) is Refusal.NO_ACTIVITY
    other = grant("care", consumer="school")
    assert verdict(CITY_HOOK, other) is Refusal.NO_ACTIVITY
    wrong_provider = grant("care", provider="port")
    assert verdict(CITY_HOOK, wrong_provider) is Refusal.NO_ACTIVITY
    # With its own activity the consumer's subscription still meets the tenant rule.
    assert verdict(subscription("care", tenant="city"), ended) is Refusal.OTHER_TENANT


def test_a_non_personal_offer_admits_no_personal_item() -> None:
    assert verdict(subscription("care", tenant="city"), grant(None)) is Refusal.OTHER_TENANT


def test_kafka_topic_subscriptions_are_refused_even_under_an_agreement() -> None:
    read_directly = subscription(None, kind="kafka", tenant="city")
    assert verdict(read_directly, grant("care")) is Refusal.KAFKA_TOPIC


def test_a_revoked_agreement_gives_no_grant() -> None:
    revoked = Grants.from_agreements(
        [agreement(Selection(device_types=["climate"]), state=AgreementState.REVOKED)]
    )
    assert revoked.get("agr-1") is None
