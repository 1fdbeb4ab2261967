"""The rules of offers and agreements (``streams/sharing/service.py``) over in-memory stores:
who may do what, every refusal, the states, and the grants they make. No broker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from cityhub.schemas.processing import ActivityEnd, ActivitySpec, LegalBasis
from cityhub.schemas.registry import DeviceTypeSpec, Role, TenantSpec
from cityhub.schemas.sharing import (
    AgreementDecision,
    AgreementRequest,
    AgreementState,
    ItemKind,
    OfferSpec,
    Selection,
)
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.privacy.service import ProcessingRegister
from cityhub.streams.privacy.store import InMemoryRegisterStore
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.service_errors import Conflict, Forbidden, Invalid, NotFound, ServiceError
from cityhub.streams.sharing.grants import ItemFacts
from cityhub.streams.sharing.service import MAX_OPEN_REQUESTS, Sharing
from cityhub.streams.sharing.store import InMemoryAgreementStore, InMemoryOfferStore
from cityhub.streams.sharing.view import SharingView

T0 = parse_rfc3339("2026-12-04T12:00:00Z").timestamp()
END = "2027-06-01T00:00:00Z"
SYSTEM = Principal.system()


def who(tenant: str, role: Role = Role.OPERATOR) -> Principal:
    return Principal(key_id=f"{tenant}-{role}", tenant=tenant, role=role)


PORT, CITY, UNI = who("port"), who("city"), who("uni")


@dataclass
class World:
    sharing: Sharing
    view: SharingView
    register: ProcessingRegister
    clock: list[float]

    def at(self, seconds: float) -> None:
        self.clock[0] = T0 + seconds


@pytest.fixture
async def world() -> World:
    registry = Registry(InMemoryRegistryStore())
    for tenant, name in (("port", "Port Authority"), ("city", "City of Example"), ("uni", "Uni")):
        await registry.create_tenant(SYSTEM, TenantSpec(id=tenant, name=name))
        await registry.create_type(SYSTEM, tenant, DeviceTypeSpec(id="airq", name="Air"))
    clock = [T0]
    register = ProcessingRegister(
        InMemoryRegisterStore(), registry.view, base_uri="urn:x:", clock=lambda: clock[0]
    )
    view = SharingView()
    counter = iter(range(1, 10_000))
    sharing = Sharing(
        InMemoryOfferStore(view=view.offers),
        InMemoryAgreementStore(view=view.agreements),
        registry.view,
        register.view,
        clock=lambda: clock[0],
        new_id=lambda: f"agr-{next(counter):016x}",
    )
    return World(sharing, view, register, clock)


def spec(offer_id: str = "air", **fields: Any) -> OfferSpec:
    doc: dict[str, Any] = {
        "id": offer_id,
        "title": "Harbour air",
        "description": "PM of the harbour",
        "selection": Selection(device_types=["airq"]),
        "kinds": [ItemKind.OBSERVATIONS],
        "purposes": ["air quality policy"],
    }
    doc.update(fields)
    return OfferSpec(**doc)


def ask(offer: str = "port/air", **fields: Any) -> AgreementRequest:
    doc: dict[str, Any] = {"offer": offer, "purpose": "air quality policy", "ends_at": END}
    doc.update(fields)
    return AgreementRequest(**doc)


NO_REASON = AgreementDecision()
ITEM = ItemFacts(
    tenant="port",
    kind=ItemKind.OBSERVATIONS,
    quantity="pm2_5",
    classification="internal",
    device_id="d1",
    device_type="airq",
)


async def activity(w: World, *, recipients: list[str], slug: str = "share") -> None:
    await w.register.create(
        SYSTEM,
        "port",
        ActivitySpec(
            slug=slug,
            name="Sharing",
            purpose="Share footfall",
            legal_basis=LegalBasis("PublicTask"),
            personal_data_categories=["location"],
            retention="P30D",
            controller="Port",
            recipients=recipients,
            valid_from="2026-01-01T00:00:00Z",
        ),
    )


# --- offers ---------------------------------------------------------------------------------
async def test_an_operator_offers_and_its_tenant_reads_it(world: World) -> None:
    made = await world.sharing.create_offer(PORT, "port", spec())
    assert made.ref == "port/air"
    assert world.sharing.get_offer(who("port", Role.SUBSCRIBER), "port", "air") == made
    assert [o.id for o in world.sharing.list_offers(PORT, "port")] == ["air"]


@pytest.mark.parametrize(
    ("principal", "error"),
    [
        (who("port", Role.SUBSCRIBER), Forbidden),
        (CITY, NotFound),
    ],
)
async def test_only_the_provider_s_operator_or_admin_offers(
    world: World, principal: Principal, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await world.sharing.create_offer(principal, "port", spec())
    await world.sharing.create_offer(who("city", Role.ADMIN), "port", spec())  # an admin may


async def test_an_offer_names_device_types_its_provider_has(world: World) -> None:
    with pytest.raises(Invalid) as refused:
        await world.sharing.create_offer(
            PORT, "port", spec(selection=Selection(device_types=["x"]))
        )
    assert refused.value.errors[0].field == "selection.device_types"
    # ids, areas and tags may be anything
    await world.sharing.create_offer(
        PORT, "port", spec(selection=Selection(device_ids=["nope"], areas=["nowhere"]))
    )


async def test_a_taken_id_is_a_conflict_and_replace_keeps_the_id(world: World) -> None:
    await world.sharing.create_offer(PORT, "port", spec())
    with pytest.raises(Conflict):
        await world.sharing.create_offer(PORT, "port", spec())
    replaced = await world.sharing.replace_offer(PORT, "port", "air", spec(title="New"))
    assert replaced.spec.title == "New"
    with pytest.raises(Invalid):
        await world.sharing.replace_offer(PORT, "port", "air", spec("other"))
    with pytest.raises(NotFound):
        await world.sharing.replace_offer(PORT, "port", "zz", spec("zz"))


async def test_a_personal_offer_needs_a_valid_activity_with_recipients(world: World) -> None:
    personal = spec(classification="personal", processing_activity="share")
    with pytest.raises(Invalid, match="not one"):
        await world.sharing.create_offer(PORT, "port", personal)
    await activity(world, recipients=[], slug="share")
    with pytest.raises(Invalid, match="no recipients"):
        await world.sharing.create_offer(PORT, "port", personal)
    await activity(world, recipients=["City of Example"], slug="share2")
    await world.register.end(SYSTEM, "port", "share2", ActivityEnd())
    world.at(1)
    with pytest.raises(Invalid, match="not valid now"):
        await world.sharing.create_offer(
            PORT, "port", spec(classification="personal", processing_activity="share2")
        )
    await activity(world, recipients=["City of Example"], slug="share3")
    made = await world.sharing.create_offer(
        PORT, "port", spec(classification="personal", processing_activity="share3")
    )
    assert made.spec.processing_activity == "share3"


async def test_withdrawn_offers_are_kept_but_closed(world: World) -> None:
    await world.sharing.create_offer(PORT, "port", spec(listed=True))
    assert [o.id for o in world.sharing.listed_offers(UNI)] == ["air"]
    withdrawn = await world.sharing.withdraw_offer(PORT, "port", "air")
    assert withdrawn.withdrawn_at is not None
    assert world.sharing.listed_offers(UNI) == []
    with pytest.raises(Conflict):
        await world.sharing.withdraw_offer(PORT, "port", "air")
    with pytest.raises(Conflict):
        await world.sharing.replace_offer(PORT, "port", "air", spec())
    with pytest.raises(Conflict):
        await world.sharing.request_agreement(CITY, "city", ask())
    assert world.sharing.list_offers(PORT, "port")[0].withdrawn_at is not None


async def test_another_tenant_reads_an_offer_only_while_listed(world: World) -> None:
    await world.sharing.create_offer(PORT, "port", spec())
    with pytest.raises(NotFound):
        world.sharing.get_offer(CITY, "port", "air")
    with pytest.raises(NotFound):
        world.sharing.list_offers(CITY, "port")
    await world.sharing.replace_offer(PORT, "port", "air", spec(listed=True))
    assert world.sharing.get_offer(CITY, "port", "air").id == "air"
    assert world.sharing.listed_offers(CITY, "city") == []


# --- agreements -----------------------------------------------------------------------------
async def test_request_approve_revoke_and_the_grants(world: World) -> None:
    await world.sharing.create_offer(PORT, "port", spec())
    asked = await world.sharing.request_agreement(CITY, "city", ask(note="for the plan"))
    assert asked.state is AgreementState.REQUESTED
    assert (asked.provider, asked.consumer, asked.offer_spec) == ("port", "city", spec())
    when = parse_rfc3339("2026-12-05T00:00:00Z")
    assert world.view.grants().grant_for("city", ITEM, when) is None
    approved = await world.sharing.approve(PORT, "port", asked.id, AgreementDecision(reason="ok"))
    assert approved.state is AgreementState.APPROVED
    assert world.view.grants().grant_for("city", ITEM, when) is not None
    # either party lists it
    assert [a.id for a in world.sharing.list_agreements(CITY, "city", "consumer")] == [asked.id]
    assert world.sharing.list_agreements(CITY, "city", "provider") == []
    assert [a.id for a in world.sharing.list_agreements(PORT, "port")] == [asked.id]
    revoked = await world.sharing.revoke(CITY, "city", asked.id, AgreementDecision(reason="done"))
    assert revoked.state is AgreementState.REVOKED
    assert [(e.state, e.by_tenant, e.reason) for e in revoked.history] == [
        (AgreementState.REQUESTED, "city", "for the plan"),
        (AgreementState.APPROVED, "port", "ok"),
        (AgreementState.REVOKED, "city", "done"),
    ]
    assert world.view.grants().grant_for("city", ITEM, when) is None
    with pytest.raises(Conflict):
        await world.sharing.revoke(PORT, "port", asked.id, NO_REASON)


async def test_the_consumer_withdraws_its_own_request_and_only_it(world: World) -> None:
    # A review: a consumer could not take back a request, and waiting ones counted towards
    # its cap of 50 until their ends_at, years ahead.
    await world.sharing.create_offer(PORT, "port", spec())
    asked = await world.sharing.request_agreement(CITY, "city", ask())
    with pytest.raises(Conflict, match="by the tenant that asked"):
        await world.sharing.revoke(PORT, "port", asked.id, NO_REASON)  # the provider rejects
    withdrawn = await world.sharing.revoke(CITY, "city", asked.id, NO_REASON)
    assert withdrawn.state is AgreementState.REVOKED
    assert withdrawn.history[-1].by_tenant == "city"
    with pytest.raises(Conflict):
        await world.sharing.approve(PORT, "port", asked.id, NO_REASON)
    for _ in range(MAX_OPEN_REQUESTS):  # the withdrawn one no longer counts
        await world.sharing.request_agreement(CITY, "city", ask())


async def test_terms_are_copied_again_at_approval(world: World) -> None:
    await world.sharing.create_offer(PORT, "port", spec())
    asked = await world.sharing.request_agreement(CITY, "city", ask())
    wider = spec(selection=Selection(device_types=["airq"], areas=["harbour"]))
    await world.sharing.replace_offer(PORT, "port", "air", wider)
    approved = await world.sharing.approve(PORT, "port", asked.id, NO_REASON)
    assert approved.offer_spec == wider
    await world.sharing.replace_offer(PORT, "port", "air", spec(title="Later"))
    assert world.sharing.get_agreement(CITY, "city", asked.id).offer_spec == wider


async def test_the_consumer_cannot_approve_and_a_third_tenant_sees_nothing(world: World) -> None:
    await world.sharing.create_offer(PORT, "port", spec())
    asked = await world.sharing.request_agreement(CITY, "city", ask())
    with pytest.raises(Forbidden):
        await world.sharing.approve(CITY, "city", asked.id, NO_REASON)
    with pytest.raises(NotFound):
        await world.sharing.approve(CITY, "port", asked.id, NO_REASON)
    with pytest.raises(Forbidden):
        await world.sharing.approve(who("port", Role.SUBSCRIBER), "port", asked.id, NO_REASON)
    for tenant in ("uni", "port", "city"):
        with pytest.raises(NotFound):
            world.sharing.get_agreement(UNI, tenant, asked.id)
    assert world.sharing.list_agreements(UNI, "uni") == []
    with pytest.raises(NotFound):
        await world.sharing.revoke(UNI, "uni", asked.id, NO_REASON)
    # an admin key reads every tenant's
    assert world.sharing.get_agreement(who("uni", Role.ADMIN), "port", asked.id).id == asked.id


async def test_reject_only_from_requested(world: World) -> None:
    await world.sharing.create_offer(PORT, "port", spec())
    asked = await world.sharing.request_agreement(CITY, "city", ask())
    rejected = await world.sharing.reject(PORT, "port", asked.id, AgreementDecision(reason="no"))
    assert rejected.state is AgreementState.REJECTED
    for decide in (world.sharing.approve, world.sharing.reject):
        with pytest.raises(Conflict):
            await decide(PORT, "port", asked.id, NO_REASON)
    with pytest.raises(Conflict):
        await world.sharing.revoke(PORT, "port", asked.id, NO_REASON)


@pytest.mark.parametrize(
    ("request_", "error", "field"),
    [
        (ask("city/air"), Invalid, "offer"),
        (ask("port/none"), Invalid, "offer"),
        (ask("gone/air"), Invalid, "offer"),
        (ask(purpose="marketing"), Invalid, "purpose"),
        (ask(ends_at="2026-12-01T00:00:00Z"), Invalid, "ends_at"),
        (ask(ends_at="2040-01-01T00:00:00Z"), Invalid, "ends_at"),
    ],
)
async def test_requests_that_are_refused(
    world: World, request_: AgreementRequest, error: type[ServiceError], field: str
) -> None:
    await world.sharing.create_offer(PORT, "port", spec())
    await world.sharing.create_offer(CITY, "city", spec())
    with pytest.raises(error) as refused:
        await world.sharing.request_agreement(CITY, "city", request_)
    assert refused.value.errors[0].field == field


async def test_only_the_consumer_s_operator_or_admin_asks(world: World) -> None:
    await world.sharing.create_offer(PORT, "port", spec())
    with pytest.raises(Forbidden):
        await world.sharing.request_agreement(who("city", Role.SUBSCRIBER), "city", ask())
    with pytest.raises(NotFound):
        await world.sharing.request_agreement(UNI, "city", ask())


async def test_open_requests_are_bounded(world: World) -> None:
    await world.sharing.create_offer(PORT, "port", spec())
    for _ in range(MAX_OPEN_REQUESTS):
        await world.sharing.request_agreement(CITY, "city", ask())
    with pytest.raises(Conflict, match="waiting"):
        await world.sharing.request_agreement(CITY, "city", ask())


async def test_approval_refused_when_the_offer_changed_or_the_period_ended(world: World) -> None:
    await world.sharing.create_offer(PORT, "port", spec())
    first = await world.sharing.request_agreement(CITY, "city", ask())
    second = await world.sharing.request_agreement(
        CITY, "city", ask(ends_at="2026-12-05T00:00:00Z")
    )
    await world.sharing.replace_offer(PORT, "port", "air", spec(purposes=["mobility"]))
    with pytest.raises(Conflict, match="purpose"):
        await world.sharing.approve(PORT, "port", first.id, NO_REASON)
    await world.sharing.replace_offer(PORT, "port", "air", spec())
    world.at(86_400)
    with pytest.raises(Conflict, match="ended"):
        await world.sharing.approve(PORT, "port", second.id, NO_REASON)
    await world.sharing.withdraw_offer(PORT, "port", "air")
    with pytest.raises(Conflict, match="withdrawn"):
        await world.sharing.approve(PORT, "port", first.id, NO_REASON)


async def test_a_personal_agreement_needs_the_consumer_among_the_recipients(world: World) -> None:
    await activity(world, recipients=["city of example", "Someone else"])
    personal = spec(classification="personal", processing_activity="share")
    await world.sharing.create_offer(PORT, "port", personal)
    by_name = await world.sharing.request_agreement(CITY, "city", ask())
    # the name, case-insensitive
    assert (await world.sharing.approve(PORT, "port", by_name.id, NO_REASON)).state is (
        AgreementState.APPROVED
    )
    other = await world.sharing.request_agreement(UNI, "uni", ask())
    with pytest.raises(Invalid, match="recipients") as refused:
        await world.sharing.approve(PORT, "port", other.id, NO_REASON)
    assert refused.value.errors[0].field == "consumer"


async def test_expiry_needs_no_record(world: World) -> None:
    await world.sharing.create_offer(PORT, "port", spec())
    asked = await world.sharing.request_agreement(CITY, "city", ask())
    approved = await world.sharing.approve(PORT, "port", asked.id, NO_REASON)
    grants = world.view.grants()
    assert grants.grant_for("city", ITEM, parse_rfc3339("2027-05-31T23:59:59Z")) is not None
    assert grants.grant_for("city", ITEM, parse_rfc3339(END)) is None
    assert approved.status_at(parse_rfc3339(END)) == "expired"


async def test_a_request_whose_period_ended_no_longer_waits(world: World) -> None:
    await world.sharing.create_offer(PORT, "port", spec())
    for _ in range(MAX_OPEN_REQUESTS):
        await world.sharing.request_agreement(CITY, "city", ask(ends_at="2026-12-05T00:00:00Z"))
    world.at(86_400)
    await world.sharing.request_agreement(CITY, "city", ask())


async def test_every_agreement_only_for_an_admin(world: World) -> None:
    await world.sharing.create_offer(PORT, "port", spec())
    asked = await world.sharing.request_agreement(CITY, "city", ask())
    assert [a.id for a in world.sharing.all_agreements(SYSTEM)] == [asked.id]
    assert world.sharing.agreement_for_admin(who("uni", Role.ADMIN), asked.id) == asked
    with pytest.raises(Forbidden):
        world.sharing.all_agreements(PORT)
    with pytest.raises(Forbidden):
        world.sharing.agreement_for_admin(CITY, asked.id)
    with pytest.raises(NotFound):
        world.sharing.agreement_for_admin(SYSTEM, "agr-none")


def test_an_offers_quantity_alias_is_the_catalogues_name() -> None:
    # A review's offer on "pm25" was stored so and delivered nothing: observations carry pm2_5.
    chosen = Selection(device_types=["airq"], quantities=["pm25", "no2", "own_field"])
    assert chosen.quantities == ["pm2_5", "no2", "own_field"]
