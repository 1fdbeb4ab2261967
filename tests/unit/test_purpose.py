"""Purpose binding (issue 10, point 3) without a broker: every refusal in its order, the
consent basis beside a public task, the mark a personal item carries, and the subscription's
``processing_activity`` as the API takes it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from cityhub.connectors.sinks import validate_spec
from cityhub.schemas.processing import ActivityVersion, LegalBasis, ProcessingActivity
from cityhub.schemas.registry import Classification, DeviceType, DeviceTypeSpec, Role, TenantSpec
from cityhub.schemas.subscription import Subscription, build_subscription
from cityhub.streams.privacy.purpose import (
    PRIVACY_HEADER,
    PersonalMark,
    Refusal,
    check,
    mark_of,
)
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.service_errors import Invalid, NotFound
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
MARK = PersonalMark("acme", "res-7f3a9c21", "Indoor Climate")


def activity(
    slug: str,
    basis: LegalBasis,
    *,
    categories: tuple[str, ...] = ("indoor climate",),
    valid_from: str = "2026-01-01T00:00:00Z",
    valid_to: str | None = None,
    tenant: str = "acme",
) -> ProcessingActivity:
    version = ActivityVersion(
        version=1,
        name=slug,
        purpose="Advice on ventilation",
        legal_basis=basis,
        personal_data_categories=list(categories),
        retention="P30D",
        controller="Municipality",
        recipients=[],
        valid_from=valid_from,
        valid_to=valid_to,
        recorded_at=valid_from,
    )
    return ProcessingActivity(
        id=f"urn:x:{tenant}:{slug}",
        tenant=tenant,
        slug=slug,
        created_at=valid_from,
        versions=[version],
    )


class Register:
    def __init__(self, *activities: ProcessingActivity) -> None:
        self._by_key = {(a.tenant, a.slug): a for a in activities}

    def get(self, tenant: str, slug: str) -> ProcessingActivity | None:
        return self._by_key.get((tenant, slug))


class ConsentsOf:
    def __init__(self, *given: tuple[str, str, str]) -> None:
        self.given = set(given)

    def active(self, tenant: str, subject: str, activity_slug: str) -> bool:
        return (tenant, subject, activity_slug) in self.given

    def consented_version(self, tenant: str, subject: str, activity_slug: str) -> int | None:
        return 1 if (tenant, subject, activity_slug) in self.given else None


def subscription(
    activity_slug: str | None, *, kind: str = "webhook", tenant: str = "acme"
) -> Subscription:
    delivery: dict[str, Any] = {"kind": kind}
    if kind == "webhook":
        delivery["url"] = "https://receiver.example/hook"
    spec = validate_spec({"id": "s1", "name": "S", "delivery": delivery})
    record, _ = build_subscription(spec, tenant=tenant, now="2026-12-01T00:00:00Z")
    return record.model_copy(update={"processing_activity": activity_slug})


REGISTER = Register(
    activity("care", LegalBasis.PUBLIC_TASK),
    activity("advice", LegalBasis.CONSENT),
    activity("ended", LegalBasis.PUBLIC_TASK, valid_to="2026-06-01T00:00:00Z"),
    activity("later", LegalBasis.PUBLIC_TASK, valid_from="2027-01-01T00:00:00Z"),
    activity("parking", LegalBasis.PUBLIC_TASK, categories=("licence plate",)),
)


def verdict(record: Subscription, mark: PersonalMark = MARK, consents: Any = None) -> Any:
    return check(record, mark, activities=REGISTER, consents=consents or ConsentsOf(), now=NOW)


def test_a_public_task_activity_passes_without_consent() -> None:
    assert verdict(subscription("care")) is None


def test_a_consent_activity_passes_only_with_the_subjects_consent() -> None:
    assert verdict(subscription("advice")) is Refusal.NO_CONSENT
    consents = ConsentsOf(("acme", "res-7f3a9c21", "advice"))
    assert verdict(subscription("advice"), consents=consents) is None
    other = PersonalMark("acme", "res-someone-else", "indoor climate")
    assert verdict(subscription("advice"), other, consents) is Refusal.NO_CONSENT
    unlinked = PersonalMark("acme", None, "indoor climate")
    assert verdict(subscription("advice"), unlinked, consents) is Refusal.NO_DATA_SUBJECT
    assert verdict(subscription("care"), unlinked) is None  # a public task needs no subject


@pytest.mark.parametrize(
    ("record", "refusal"),
    [
        (subscription("care", kind="kafka"), Refusal.KAFKA_TOPIC),
        (subscription(None), Refusal.NO_ACTIVITY),
        (subscription("care", tenant="beta"), Refusal.OTHER_TENANT),
        (subscription("nonesuch"), Refusal.UNKNOWN_ACTIVITY),
        (subscription("ended"), Refusal.ACTIVITY_NOT_VALID),
        (subscription("later"), Refusal.ACTIVITY_NOT_VALID),
        (subscription("parking"), Refusal.CATEGORY_NOT_COVERED),
    ],
)
def test_each_refusal(record: Subscription, refusal: Refusal) -> None:
    consents = ConsentsOf(("acme", "res-7f3a9c21", "care"))
    assert verdict(record, consents=consents) is refusal


def test_a_consent_covers_a_later_version_only_when_its_terms_are_the_same() -> None:
    consents = ConsentsOf(("acme", "res-7f3a9c21", "advice"))
    first = activity("advice", LegalBasis.CONSENT)
    renamed = first.current.model_copy(update={"version": 2, "name": "Better name"})
    wider = first.current.model_copy(
        update={
            "version": 2,
            "purpose": "Sell presence profiles",
            "personal_data_categories": ["indoor climate", "presence"],
        }
    )
    for later, verdict_wanted in ((renamed, None), (wider, Refusal.CONSENT_OUTDATED)):
        versions = [first.current, later]
        register = Register(first.model_copy(update={"versions": versions}))
        found = check(subscription("advice"), MARK, activities=register, consents=consents, now=NOW)
        assert found is verdict_wanted


def test_an_activity_ends_at_valid_to_exactly() -> None:
    record = subscription("ended")
    register = Register(activity("ended", LegalBasis.PUBLIC_TASK, valid_to="2026-12-03T12:00:00Z"))
    before = datetime(2026, 12, 3, 11, 59, 59, tzinfo=UTC)
    assert check(record, MARK, activities=register, consents=ConsentsOf(), now=before) is None
    refused = check(record, MARK, activities=register, consents=ConsentsOf(), now=NOW)
    assert refused is Refusal.ACTIVITY_NOT_VALID


def test_the_mark_round_trips_and_hostile_headers_never_pass_as_ordinary() -> None:
    name, value = MARK.header()
    assert name == PRIVACY_HEADER
    assert mark_of([("traceparent", b"00-..."), (name, value)]) == MARK
    assert mark_of([("traceparent", b"x")]) is None
    assert mark_of(None) is None
    for hostile in (
        b"",
        b"[]",
        b"{",
        b'{"t": 1, "c": "x"}',
        b'{"t": "a"}',
        b'{"t":"a","c":"b","s":5}',
    ):
        assert mark_of([(PRIVACY_HEADER, hostile)]) is Refusal.UNREADABLE
    assert PersonalMark.parse(b'{"t":"a","s":null,"c":"b"}') == PersonalMark("a", None, "b")


def test_a_kafka_topic_subscription_cannot_declare_an_activity() -> None:
    with pytest.raises(ValidationError, match="never receives personal items"):
        validate_spec(
            {
                "id": "s1",
                "name": "S",
                "delivery": {"kind": "kafka"},
                "processing_activity": "care",
            }
        )


def test_a_personal_data_category_is_for_personal_types_only() -> None:
    spec = DeviceTypeSpec(
        id="indoor",
        name="Indoor",
        classification=Classification.PERSONAL,
        personal_data_category="air",
    )
    assert spec.personal_data_category == "air"
    with pytest.raises(ValidationError, match="personal only"):
        DeviceTypeSpec(
            id="t", name="T", classification=Classification.PUBLIC, personal_data_category="air"
        )
    with pytest.raises(ValidationError, match="control"):
        DeviceTypeSpec(
            id="t",
            name="T",
            classification=Classification.PERSONAL,
            personal_data_category="a\u2028b",
        )
    record = DeviceType(
        tenant="acme",
        id="indoor",
        name="Indoor",
        decoder="network",
        fields=[],
        only_mapped=False,
        classification=Classification.PERSONAL,
        created_at="2026-12-01T00:00:00Z",
        updated_at="2026-12-01T00:00:00Z",
    )
    assert record.data_category == "indoor"  # without one, the type's id


async def test_the_service_takes_only_an_activity_of_the_tenants_register() -> None:
    registry = Registry(InMemoryRegistryStore())
    for tenant in ("acme", "beta"):
        await registry.create_tenant(Principal.system(), TenantSpec(id=tenant, name=tenant))
    service = Subscriptions(
        InMemorySubscriptionStore(),
        registry.view,
        activities=Register(
            activity("care", LegalBasis.PUBLIC_TASK),
            *[
                activity("theirs", LegalBasis.PUBLIC_TASK, tenant="beta"),
                activity("ended", LegalBasis.PUBLIC_TASK, valid_to="2026-06-01T00:00:00Z"),
            ],
        ),
        webhook_allowed_hosts=("receiver.example",),
        clock=lambda: NOW.timestamp(),
    )
    who = Principal("k1", "acme", Role.SUBSCRIBER)

    def spec(slug: str) -> Any:
        return validate_spec(
            {
                "id": f"s-{slug}",
                "name": "S",
                "delivery": {"kind": "sse"},
                "processing_activity": slug,
            }
        )

    with pytest.raises(NotFound):  # another tenant's admin key subscribes to no personal data
        await service.create(Principal("k9", "beta", Role.ADMIN), "acme", spec("care"))
    for refused in ("theirs", "nonesuch", "ended"):
        with pytest.raises(Invalid) as caught:
            await service.create(who, "acme", spec(refused))
        assert [e.field for e in caught.value.errors] == ["processing_activity"]
    record, _ = await service.create(who, "acme", spec("care"))
    answer = service.public(record)
    assert answer["processing_activity"] == "care"
    assert answer["personal_items"]["received"] is True
    kafka, _ = await service.create(
        who, "acme", validate_spec({"id": "k", "name": "K", "delivery": {"kind": "kafka"}})
    )
    assert service.public(kafka)["personal_items"]["received"] is False
    assert "never receives personal items" in service.public(kafka)["personal_items"]["reason"]
