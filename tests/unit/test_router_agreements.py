"""Routing under agreements (issue 13): the router lets tenant B's subscriptions take tenant A's
items exactly where an active agreement covers them, marks those copies with the agreement, and
agrees with the linear reference on random agreements, subscriptions and items. Pure: no broker.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityhub.connectors.sinks import subscription_models
from cityhub.schemas.observation import NetworkMeta, Observation
from cityhub.schemas.registry import Classification
from cityhub.schemas.sharing import (
    Agreement,
    AgreementEvent,
    AgreementState,
    ItemKind,
    OfferSpec,
    Selection,
)
from cityhub.schemas.subscription import (
    DeliverySpec,
    Source,
    Subscription,
    SubscriptionFilter,
    build_subscription,
)
from cityhub.streams.sharing.grants import Grants
from cityhub.streams.subscriptions.agreements import AGREEMENT_HEADER
from cityhub.streams.subscriptions.linear_router import LinearSubscriptionRouter
from cityhub.streams.subscriptions.router import SubscriptionRouter

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
STAMP = "2026-12-04T12:00:00.000Z"
OBS, AGG = ItemKind.OBSERVATIONS, ItemKind.AGGREGATES
SECRET = "whsec_" + "A" * 43 + "="


def rfc(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def agreement(
    selection: Selection,
    *,
    kinds: tuple[ItemKind, ...] = (OBS,),
    classification: str = "internal",
    provider: str = "port",
    consumer: str = "city",
    agreement_id: str = "agr-1",
    ends: datetime = NOW + timedelta(days=30),
    state: AgreementState = AgreementState.APPROVED,
    activity: str | None = None,
) -> Agreement:
    spec = OfferSpec(
        id="offer",
        title="Offer",
        description="An offer",
        selection=selection,
        kinds=list(kinds),
        classification=Classification(classification),
        processing_activity=activity,
        purposes=["policy"],
    )
    at = rfc(NOW - timedelta(days=2))
    return Agreement(
        id=agreement_id,
        provider=provider,
        consumer=consumer,
        offer_id="offer",
        offer_spec=spec,
        purpose="policy",
        starts_at=None,
        ends_at=rfc(ends),
        state=state,
        requested_at=at,
        history=[
            AgreementEvent(state=AgreementState.REQUESTED, at=at, by_tenant=consumer),
            AgreementEvent(state=state, at=at, by_tenant=provider),
        ],
    )


def subscription(
    tenant: str,
    sub_id: str,
    *,
    kind: str = "webhook",
    source: str = "observations",
    filter_doc: dict[str, Any] | None = None,
) -> Subscription:
    delivery: dict[str, Any] = {"kind": kind}
    if kind == "webhook":
        delivery["url"] = "https://hooks.example.com/in"
    spec = subscription_models().spec.model_validate(
        {"id": sub_id, "name": sub_id, "source": source, "delivery": delivery}
    )
    built = build_subscription(spec, tenant=tenant, now=STAMP, new_secret=lambda: SECRET)[0]
    return built.model_copy(update={"filter": SubscriptionFilter.model_validate(filter_doc or {})})


def observation(
    tenant: str = "port",
    *,
    device_id: str = "air-1",
    device_type: str | None = "airq",
    quantity: str = "pm2_5",
    classification: str = "internal",
    area: str | None = "harbour",
    tags: tuple[str, ...] = (),
) -> Observation:
    return Observation(
        event_id="e1",
        device_id=device_id,
        dev_eui=None,
        quantity=quantity,
        field="f",
        value=1.0,
        unit=None,
        observed_at=STAMP,
        received_at=STAMP,
        format="cityhub-json",
        network=NetworkMeta(name="mqtt", tenant=None),
        tenant=tenant,
        device_type=device_type,
        area=area,
        tags=tags,
        classification=classification,
    )


class Clock:
    def __init__(self, at: datetime = NOW) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


def router_with(
    grants: Grants, subs: list[Subscription], clock: Clock | None = None
) -> SubscriptionRouter:
    router = SubscriptionRouter(
        "px",
        settings=None,
        grants=lambda: grants,
        device_of=lambda tenant, device: ("airq", ("pier",)) if device == "air-1" else None,
        clock=clock or Clock(),
    )
    router.refresh(subs)
    return router


def topic(tenant: str, sub_id: str) -> str:
    return f"px.sub.{tenant}.{sub_id}"


AIR = Selection(device_types=["airq"], quantities=["pm2_5"])
CITY_ALL = subscription("city", "all")
GRANTS = Grants.from_agreements([agreement(AIR)])


def test_the_consumer_sees_exactly_the_offered_items() -> None:
    router = router_with(GRANTS, [CITY_ALL, subscription("port", "own")])
    assert sorted(router.route(observation())) == [topic("city", "all"), topic("port", "own")]
    # Not offered: another quantity, another device type.
    assert router.route(observation(quantity="no2")) == [topic("port", "own")]
    assert router.route(observation(device_type="noise")) == [topic("port", "own")]


def test_the_copy_names_its_agreement_and_only_that_copy() -> None:
    router = router_with(GRANTS, [CITY_ALL, subscription("port", "own")])
    router.route(observation())
    shared = router.write(topic("city", "all"), b"k", b"{}", headers=[("traceparent", b"t")])
    own = router.write(topic("port", "own"), b"k", b"{}", headers=[("traceparent", b"t")])
    assert shared.headers == [("traceparent", b"t"), (AGREEMENT_HEADER, b"agr-1")]
    assert own.headers == [("traceparent", b"t")]
    grant = router.grant_at(topic("city", "all"))
    assert grant is not None
    assert grant.agreement_id == "agr-1"
    # The next item forgets the last one's agreements.
    router.route(observation(quantity="no2"))
    assert router.grant_at(topic("city", "all")) is None


def test_the_consumer_filter_still_applies() -> None:
    narrow = subscription("city", "north", filter_doc={"areas": ["north"]})
    router = router_with(GRANTS, [narrow])
    assert router.route(observation(area="harbour")) == []
    assert router.route(observation(area="north")) == [topic("city", "north")]


def test_a_third_tenant_sees_nothing() -> None:
    router = router_with(GRANTS, [CITY_ALL, subscription("school", "all")])
    assert router.route(observation()) == [topic("city", "all")]


def test_the_provider_does_not_see_the_consumers_items() -> None:
    router = router_with(GRANTS, [subscription("port", "all")])
    assert router.route(observation(tenant="city")) == []


def test_nothing_after_expiry_and_nothing_once_revoked() -> None:
    ends = NOW + timedelta(minutes=1)
    grants = Grants.from_agreements([agreement(AIR, ends=ends)])
    clock = Clock()
    router = router_with(grants, [CITY_ALL], clock)
    assert router.route(observation()) == [topic("city", "all")]
    clock.at = ends  # the same Grants: the clock alone ends it
    assert router.route(observation()) == []
    revoked = Grants.from_agreements([agreement(AIR, state=AgreementState.REVOKED)])
    assert router_with(revoked, [CITY_ALL]).route(observation()) == []


def test_classification_above_the_offer_is_not_shared() -> None:
    router = router_with(GRANTS, [CITY_ALL])
    assert router.route(observation(classification="personal")) == []
    assert router.route(observation(classification="internal")) == [topic("city", "all")]


def test_kafka_topic_subscriptions_receive_no_agreement_items() -> None:
    read_directly = subscription("city", "lake", kind="kafka")
    router = router_with(GRANTS, [read_directly, CITY_ALL])
    assert router.route(observation()) == [topic("city", "all")]
    # Public items still reach it, as before.
    assert sorted(router.route(observation(classification="public"))) == [
        topic("city", "all"),
        topic("city", "lake"),
    ]


def test_a_kind_this_process_does_not_know_receives_no_agreement_items() -> None:
    unknown = CITY_ALL.model_copy(
        update={"id": "plugin", "delivery": DeliverySpec(kind="carrier-pigeon")}
    )
    router = router_with(GRANTS, [unknown, CITY_ALL])
    assert router.route(observation()) == [topic("city", "all")]


def aggregate(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "aggregate_id": "a1",
        "grouping": "device",
        "tenant": "port",
        "device_id": "air-1",
        "quantity": "pm2_5",
        "classification": "internal",
        "area": "harbour",
    }
    doc.update(fields)
    return doc


CITY_AGG = subscription("city", "agg", source="aggregates")


def test_aggregates_only_with_kind_aggregates() -> None:
    observations_only = router_with(GRANTS, [CITY_AGG])
    assert observations_only.route(aggregate(), Source.AGGREGATES) == []
    both = Grants.from_agreements([agreement(AIR, kinds=(OBS, AGG))])
    router = router_with(both, [CITY_AGG, CITY_ALL])
    # A device's aggregate: its type comes from the registry (device_of).
    assert router.route(aggregate(), Source.AGGREGATES) == [topic("city", "agg")]
    assert router.route(observation(), Source.OBSERVATIONS) == [topic("city", "all")]


def test_area_aggregates_only_without_device_criteria() -> None:
    area = aggregate(grouping="area", device_id=None)
    by_type = Grants.from_agreements([agreement(AIR, kinds=(AGG,))])
    assert router_with(by_type, [CITY_AGG]).route(area, Source.AGGREGATES) == []
    by_area = Grants.from_agreements(
        [agreement(Selection(areas=["harbour"], quantities=["pm2_5"]), kinds=(AGG,))]
    )
    router = router_with(by_area, [CITY_AGG])
    assert router.route(area, Source.AGGREGATES) == [topic("city", "agg")]
    assert router.route({**area, "area": "centre"}, Source.AGGREGATES) == []


def test_tags_from_the_registry_select_aggregates() -> None:
    tagged = Grants.from_agreements([agreement(Selection(tags=["pier"]), kinds=(AGG,))])
    router = router_with(tagged, [CITY_AGG])
    assert router.route(aggregate(), Source.AGGREGATES) == [topic("city", "agg")]
    assert router.route(aggregate(device_id="air-2"), Source.AGGREGATES) == []


def test_without_grants_the_router_is_as_before() -> None:
    router = SubscriptionRouter("px", settings=None)
    router.refresh([CITY_ALL])
    assert router.route(observation()) == []


# --- the indexed router against the linear reference --------------------------------------------

TENANTS = ["port", "city", "school"]
DEVICES = ["air-1", "air-2", "n-1"]
AREAS = ["harbour", "north"]
QUANTITIES = ["pm2_5", "no2"]
TAGS = ["pier", "roof"]


def lists(pool: list[str]) -> st.SearchStrategy[list[str]]:
    """Empty (any) half the time, else the first value, or all of them."""
    return st.sampled_from([[], [], [pool[0]], pool])


@st.composite
def selections(draw: st.DrawFn) -> Selection:
    doc = {
        "device_types": draw(lists(["airq", "noise"])),
        "areas": draw(lists(AREAS)),
        "tags": draw(lists(TAGS)),
        "device_ids": draw(lists(DEVICES)),
        "quantities": draw(lists(QUANTITIES)),
    }
    if not any(doc[name] for name in ("device_types", "areas", "tags", "device_ids")):
        doc["areas"] = ["harbour"]
    return Selection(**doc)


@st.composite
def agreement_sets(draw: st.DrawFn) -> Grants:
    found = []
    for n in range(draw(st.integers(0, 4))):
        provider, consumer = draw(
            st.sampled_from([("port", "city"), ("city", "port"), ("port", "school")])
        )
        kinds = draw(st.sampled_from([(OBS,), (AGG,), (OBS, AGG)]))
        classification = draw(st.sampled_from(["internal", "internal", "public"]))
        ends = NOW + timedelta(minutes=draw(st.sampled_from([-5, 5])))
        found.append(
            agreement(
                draw(selections()),
                kinds=kinds,
                classification=classification,
                provider=provider,
                consumer=consumer,
                agreement_id=f"agr-{n}",
                ends=ends,
            )
        )
    return Grants.from_agreements(found)


@st.composite
def subscription_sets(draw: st.DrawFn) -> list[Subscription]:
    subs = []
    for n in range(draw(st.integers(0, 8))):
        doc = {
            "areas": draw(lists(AREAS)),
            "quantities": draw(lists(QUANTITIES)),
            "device_ids": draw(lists(DEVICES)),
            "tags": draw(lists(TAGS)),
        }
        subs.append(
            subscription(
                draw(st.sampled_from(TENANTS)),
                f"s{n}",
                kind=draw(st.sampled_from(["webhook", "kafka", "sse"])),
                source=draw(st.sampled_from(["observations", "aggregates"])),
                filter_doc=doc,
            )
        )
    return subs


@st.composite
def shared_items(draw: st.DrawFn) -> Observation | dict[str, Any]:
    obs = observation(
        draw(st.sampled_from(TENANTS)),
        device_id=draw(st.sampled_from(DEVICES)),
        device_type=draw(st.sampled_from([None, "airq", "noise"])),
        quantity=draw(st.sampled_from(QUANTITIES)),
        classification=draw(st.sampled_from(["internal", "internal", "public", "personal"])),
        area=draw(st.sampled_from([*AREAS, None])),
        tags=tuple(draw(lists(TAGS))),
    )
    if draw(st.booleans()):
        return obs
    doc = obs.to_dict()
    if draw(st.booleans()):
        doc.pop("device_type", None)
        doc.pop("tags", None)
    if draw(st.booleans()):
        doc["device_id"] = None  # an area's aggregate
    return doc


def device_of(tenant: str, device: str) -> tuple[str | None, tuple[str, ...]] | None:
    return {"air-1": ("airq", ("pier",)), "air-2": ("airq", ()), "n-1": ("noise", ("roof",))}.get(
        device
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(agreement_sets(), subscription_sets(), st.lists(shared_items(), min_size=1, max_size=10))
def test_indexed_routing_under_agreements_equals_the_reference(
    grants: Grants, subs: list[Subscription], sample: list[Any]
) -> None:
    clock = Clock()
    indexed = SubscriptionRouter(
        "px", settings=None, grants=lambda: grants, device_of=device_of, clock=clock
    )
    indexed.refresh(subs)
    linear = LinearSubscriptionRouter("px", grants=lambda: grants, device_of=device_of, clock=clock)
    linear.refresh(subs)
    check_same(indexed, linear, sample)
    # Incrementally: every other subscription removed, then all back.
    for current in (subs[::2], subs):
        indexed.refresh(current)
        linear.refresh(current)
        check_same(indexed, linear, sample)


def check_same(
    indexed: SubscriptionRouter, linear: LinearSubscriptionRouter, sample: list[Any]
) -> None:
    for item in sample:
        for source in Source:
            got = indexed.route(item, source)
            assert len(got) == len(set(got)), got
            assert sorted(got) == sorted(linear.route(item, source)), (source, item)
            owner = item.tenant if isinstance(item, Observation) else item.get("tenant")
            for name in got:
                grant = indexed.grant_at(name)
                receiver = name.split(".")[2]
                if grant is not None:
                    assert (grant.provider, grant.consumer) == (owner, receiver)
