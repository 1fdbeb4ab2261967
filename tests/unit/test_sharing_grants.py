"""The agreements' branch of the tenant rule (``streams/sharing/grants.py``) and the offer and
agreement models' own rules (``schemas/sharing.py``): pure, no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cityhub.schemas.observation import NetworkMeta, Observation
from cityhub.schemas.sharing import (
    Agreement,
    AgreementEvent,
    AgreementRequest,
    AgreementState,
    ItemKind,
    Licence,
    OfferSpec,
    Selection,
    classification_covered,
)
from cityhub.streams.sharing.grants import EMPTY, Grant, Grants, ItemFacts, facts_of
from cityhub.streams.sharing.usage import Channel, UsageCounts

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
OBS = ItemKind.OBSERVATIONS
AGG = ItemKind.AGGREGATES


def rfc(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def offer(**overrides: Any) -> OfferSpec:
    fields: dict[str, Any] = {
        "id": "air",
        "title": "Air quality of the harbour",
        "description": "PM and NO2 of the harbour's sensors",
        "selection": Selection(device_types=["airq"], quantities=["pm2_5", "no2"]),
        "kinds": [OBS],
        "purposes": ["air quality policy"],
    }
    fields.update(overrides)
    return OfferSpec(**fields)


def agreement(
    spec: OfferSpec | None = None,
    *,
    state: AgreementState = AgreementState.APPROVED,
    starts: datetime | None = None,
    ends: datetime = NOW + timedelta(days=30),
    provider: str = "port",
    consumer: str = "city",
    agreement_id: str = "agr-1",
) -> Agreement:
    at = rfc(NOW - timedelta(days=1))
    history = [AgreementEvent(state=AgreementState.REQUESTED, at=at, by_tenant=consumer)]
    if state is not AgreementState.REQUESTED:
        history.append(AgreementEvent(state=state, at=at, by_tenant=provider))
    return Agreement(
        id=agreement_id,
        provider=provider,
        consumer=consumer,
        offer_id="air",
        offer_spec=spec or offer(),
        purpose="air quality policy",
        starts_at=rfc(starts) if starts else None,
        ends_at=rfc(ends),
        state=state,
        requested_at=at,
        history=history,
    )


def facts(**overrides: Any) -> ItemFacts:
    fields: dict[str, Any] = {
        "tenant": "port",
        "kind": OBS,
        "quantity": "pm2_5",
        "classification": "internal",
        "device_id": "aq-1",
        "device_type": "airq",
        "area": "harbour",
        "tags": ("quay",),
    }
    fields.update(overrides)
    return ItemFacts(**fields)


def test_an_active_agreement_lets_the_consumer_see_exactly_the_offered_items() -> None:
    grants = Grants.from_agreements([agreement()])
    assert grants.grant_for("city", facts(), NOW) is not None
    assert grants.grant_for("city", facts(quantity="no2"), NOW) is not None
    # Not another quantity, type, kind or tenant; not a third tenant; not the provider itself.
    assert grants.grant_for("city", facts(quantity="temperature"), NOW) is None
    assert grants.grant_for("city", facts(device_type="noise"), NOW) is None
    assert grants.grant_for("city", facts(kind=AGG), NOW) is None
    assert grants.grant_for("city", facts(tenant="water-board"), NOW) is None
    assert grants.grant_for("university", facts(), NOW) is None
    assert grants.grant_for("port", facts(), NOW) is None


@pytest.mark.parametrize(
    "state", [AgreementState.REQUESTED, AgreementState.REJECTED, AgreementState.REVOKED]
)
def test_only_an_approved_agreement_grants_anything(state: AgreementState) -> None:
    grants = Grants.from_agreements([agreement(state=state)])
    assert len(grants) == 0
    assert grants.grant_for("city", facts(), NOW) is None


def test_an_agreement_counts_from_its_start_to_its_end_whenever_the_grants_were_built() -> None:
    grants = Grants.from_agreements(
        [agreement(starts=NOW + timedelta(hours=1), ends=NOW + timedelta(hours=2))]
    )
    assert grants.grant_for("city", facts(), NOW) is None
    assert grants.grant_for("city", facts(), NOW + timedelta(hours=1)) is not None
    assert grants.grant_for("city", facts(), NOW + timedelta(hours=2)) is None
    assert grants.between("city", "port", NOW + timedelta(minutes=90))
    assert grants.active_for("city", NOW + timedelta(hours=3)) == ()


def test_without_a_start_an_agreement_runs_from_its_approval() -> None:
    record = agreement()
    assert record.approved_at is not None
    assert record.active_at(NOW)
    assert record.status_at(NOW) == "approved"
    assert record.status_at(NOW + timedelta(days=31)) == "expired"
    assert not record.active_at(NOW + timedelta(days=31))


def test_the_offers_classification_caps_what_is_covered() -> None:
    grants = Grants.from_agreements([agreement()])  # the offer carries internal
    assert grants.grant_for("city", facts(classification="public"), NOW) is not None
    assert grants.grant_for("city", facts(classification="personal"), NOW) is None
    assert grants.grant_for("city", facts(classification=None), NOW) is None
    assert grants.grant_for("city", facts(classification="secret"), NOW) is None


def test_an_area_aggregate_is_covered_only_by_a_selection_without_device_criteria() -> None:
    by_type = Grants.from_agreements([agreement(offer(kinds=[AGG]))])
    area_aggregate = facts(kind=AGG, device_id=None, device_type=None, tags=())
    assert by_type.grant_for("city", area_aggregate, NOW) is None
    by_area = Grants.from_agreements(
        [agreement(offer(kinds=[AGG], selection=Selection(areas=["harbour"])))]
    )
    assert by_area.grant_for("city", area_aggregate, NOW) is not None
    assert by_area.grant_for("city", facts(kind=AGG, area="centre"), NOW) is None


def test_tags_and_device_ids_select_devices() -> None:
    grants = Grants.from_agreements(
        [agreement(offer(selection=Selection(tags=["quay", "lock"], device_ids=["aq-1", "aq-2"])))]
    )
    assert grants.grant_for("city", facts(), NOW) is not None
    assert grants.grant_for("city", facts(device_id="aq-3"), NOW) is None
    assert grants.grant_for("city", facts(tags=("school",)), NOW) is None


def test_the_terms_of_the_agreement_not_the_offers_current_ones_are_enforced() -> None:
    narrow = agreement(offer(selection=Selection(device_ids=["aq-1"])))
    grants = Grants.from_agreements([narrow])
    assert grants.grant_for("city", facts(device_id="aq-2"), NOW) is None


def test_providers_and_consumers_are_indexed_both_ways() -> None:
    grants = Grants.from_agreements(
        [
            agreement(),
            agreement(provider="water-board", agreement_id="agr-2"),
            agreement(consumer="university", agreement_id="agr-3"),
        ]
    )
    assert grants.providers_of("city") == {"port", "water-board"}
    assert grants.consumers_of("port") == {"city", "university"}
    assert grants.consumers_of("nobody") == frozenset()
    assert grants.get("agr-2") is not None
    assert EMPTY.grant_for("city", facts(), NOW) is None


def test_facts_of_an_observation_and_of_an_aggregate_dict() -> None:
    observation = Observation(
        event_id="e1",
        device_id="aq-1",
        dev_eui=None,
        quantity="pm2_5",
        field="pm2_5",
        value=3.0,
        unit="ug/m3",
        observed_at="2026-12-04T12:00:00.000Z",
        received_at="2026-12-04T12:00:00.000Z",
        format="cityhub-json",
        network=NetworkMeta(name="mqtt"),
        tenant="port",
        device_type="airq",
        area="harbour",
        tags=("quay",),
        classification="internal",
    )
    assert facts_of(observation, OBS) == facts()
    aggregate = {
        "tenant": "port",
        "device_id": "aq-1",
        "quantity": "pm2_5",
        "classification": "internal",
        "area": "harbour",
    }
    known = facts_of(aggregate, AGG, lambda tenant, device: ("airq", ("quay",)))
    assert known == facts(kind=AGG)
    # Hostile fields are not facts: a list where a string belongs is absent.
    odd = facts_of({"tenant": ["port"], "device_id": 7, "tags": "quay"}, AGG)
    assert odd.tenant is None
    assert odd.device_id is None
    assert odd.tags == ()


@given(
    rank_offered=st.sampled_from(["public", "internal", "personal"]),
    item=st.one_of(st.none(), st.sampled_from(["public", "internal", "personal", "x"])),
)
def test_classification_coverage_is_monotonic(rank_offered: str, item: str | None) -> None:
    order = ["public", "internal", "personal"]
    expected = item in order and order.index(item) <= order.index(rank_offered)
    assert classification_covered(rank_offered, item) is expected


def test_an_offer_never_shares_everything_by_omission_and_personal_needs_an_activity() -> None:
    with pytest.raises(ValidationError, match="at least one of"):
        Selection(quantities=["pm2_5"])
    with pytest.raises(ValidationError, match="processing_activity"):
        offer(classification="personal")
    with pytest.raises(ValidationError, match="personal offers only"):
        offer(processing_activity="share-footfall")
    with pytest.raises(ValidationError, match="each kind at most once"):
        offer(kinds=[OBS, OBS])
    personal = offer(classification="personal", processing_activity="share-footfall")
    assert personal.licence is Licence.CC_BY_4_0
    assert Licence.CC0_1_0.uri.startswith("http://creativecommons.org/publicdomain/zero/")


def test_an_agreement_request_has_a_bounded_period() -> None:
    AgreementRequest(offer="port/air", purpose="p", ends_at="2027-01-01T00:00:00Z")
    with pytest.raises(ValidationError, match="after starts_at"):
        AgreementRequest(
            offer="port/air",
            purpose="p",
            starts_at="2027-01-01T00:00:00Z",
            ends_at="2026-01-01T00:00:00Z",
        )
    with pytest.raises(ValidationError, match="at most"):
        AgreementRequest(
            offer="port/air",
            purpose="p",
            starts_at="2026-01-01T00:00:00Z",
            ends_at="2036-01-01T00:00:00Z",
        )
    with pytest.raises(ValidationError):
        AgreementRequest(offer="../etc", purpose="p", ends_at="2027-01-01T00:00:00Z")


def test_grant_compiles_the_copied_terms() -> None:
    grant = Grant.of(agreement(offer(classification="personal", processing_activity="fa")))
    assert grant.processing_activity == "fa"
    assert grant.kinds == {OBS}
    assert grant.areas is None
    assert grant.device_types == frozenset({"airq"})


def test_usage_counts_are_cumulative_and_report_only_changes() -> None:
    counts = UsageCounts()
    assert counts.take_changed() is None
    counts.count("agr-1", Channel.DELIVERED, 3)
    counts.count("agr-1", Channel.DELIVERED)
    counts.count("agr-1", Channel.READ, 0)
    assert counts.take_changed() == {("agr-1", Channel.DELIVERED): 4}
    assert counts.take_changed() is None
    counts.count("agr-1", Channel.READ, 2)
    assert counts.take_changed() == {
        ("agr-1", Channel.DELIVERED): 4,
        ("agr-1", Channel.READ): 2,
    }
