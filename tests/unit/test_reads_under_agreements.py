"""The reads' branch of the tenant rule under agreements, without a database or broker: the
SQL conditions of the history store (``history/grant_conditions.py``, ``queries.visibility``),
the SensorThings entities a consumer sees (``sensorthings/model.py``), the aggregates a key
reads (``aggregation/query.visible_under``) and the read counts (``ReadAccess``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from cityhub.schemas.registry import Classification, DeviceType
from cityhub.schemas.sharing import (
    Agreement,
    AgreementEvent,
    AgreementState,
    ItemKind,
    OfferSpec,
    Selection,
)
from cityhub.streams.aggregation.query import read_under as windows_read_under
from cityhub.streams.aggregation.query import visible_under
from cityhub.streams.history.aggregate_queries import (
    AggregateFilter,
    Group,
    aggregates_statement,
)
from cityhub.streams.history.grant_conditions import (
    covered_classifications,
    grant_condition,
    read_under,
)
from cityhub.streams.history.queries import (
    ObservationFilter,
    Viewer,
    observations_statement,
    visibility,
)
from cityhub.streams.registry.view import DeviceEntry
from cityhub.streams.sensorthings.model import Graph, StreamFacts
from cityhub.streams.sensorthings.model import Viewer as StaViewer
from cityhub.streams.sharing.grants import Grant, Grants, ItemFacts
from cityhub.streams.sharing.read_access import (
    NO_SHARING,
    ReadAccess,
    covering,
    covering_area,
    covering_device,
)
from cityhub.streams.sharing.usage import Channel, UsageCounts

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
STAMP = "2026-11-01T00:00:00Z"
OBS = ItemKind.OBSERVATIONS
AGG = ItemKind.AGGREGATES


def _rfc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _agreement(
    selection: Selection,
    *,
    kinds: tuple[ItemKind, ...] = (OBS,),
    agreement_id: str = "agr-1",
    classification: Classification = Classification.INTERNAL,
    ends: datetime = NOW + timedelta(days=1),
    state: AgreementState = AgreementState.APPROVED,
    provider: str = "port",
    consumer: str = "city",
    activity: str | None = None,
) -> Agreement:
    at = _rfc(NOW - timedelta(days=1))
    spec = OfferSpec(
        id="air",
        title="Air",
        description="Air of the harbour",
        selection=selection,
        kinds=list(kinds),
        classification=classification,
        processing_activity=activity,
        purposes=["air quality policy"],
    )
    return Agreement(
        id=agreement_id,
        provider=provider,
        consumer=consumer,
        offer_id="air",
        offer_spec=spec,
        purpose="air quality policy",
        starts_at=None,
        ends_at=_rfc(ends),
        state=state,
        requested_at=at,
        history=[
            AgreementEvent(state=AgreementState.REQUESTED, at=at, by_tenant=consumer),
            AgreementEvent(state=state, at=at, by_tenant=provider),
        ],
    )


def _grant(selection: Selection, **kw: Any) -> Grant:
    return Grant.of(_agreement(selection, **kw))


AIR = Selection(device_types=["airq"], quantities=["pm2_5"])


# --- SQL ------------------------------------------------------------------------------------


def test_no_grants_leave_the_rule_as_it_was() -> None:
    plain, shared = {}, {}  # type: ignore[var-annotated]
    assert visibility(Viewer.of_tenant("city"), plain) == visibility(
        Viewer.of_tenant("city", ()), shared
    )
    assert plain == shared
    assert "g0_" not in visibility(Viewer.of_tenant("city"), {})


def test_a_grant_is_one_fragment_of_placeholders_and_its_values_are_parameters() -> None:
    hostile = "port'; DROP TABLE observations; --"
    grant = _grant(
        Selection(
            device_types=["airq"],
            areas=["harbour"],
            tags=["pm"],
            device_ids=["aq-1", "aq-2"],
            quantities=["pm2_5"],
        )
    )
    grant = Grant(**{**{s: getattr(grant, s) for s in Grant.__slots__}, "provider": hostile})
    params: dict[str, Any] = {}
    fragment = grant_condition(grant, 3, params, kind=OBS)
    assert fragment is not None
    for value in (hostile, "harbour", "aq-1"):
        assert value not in fragment
    assert params == {
        "g3_provider": hostile,
        "g3_classes": ["public", "internal"],
        "g3_quantities": ["pm2_5"],
        "g3_areas": ["harbour"],
        "g3_device_ids": ["aq-1", "aq-2"],
        "g3_device_types": ["airq"],
        "g3_tags": ["pm"],
    }
    # Every placeholder the fragment names is a parameter.
    assert set(re.findall(r"%\((\w+)\)s", fragment)) == set(params)
    assert "(doc -> 'tags') ?|" in fragment


def test_a_grant_covers_the_tables_of_its_kinds_only() -> None:
    grant = _grant(AIR)  # observations only
    assert grant_condition(grant, 0, {}, kind=AGG) is None
    both = _grant(Selection(areas=["harbour"]), kinds=(OBS, AGG))
    params: dict[str, Any] = {}
    assert grant_condition(both, 0, params, kind=AGG) is not None
    # The aggregates table has no device type or tags: such a grant covers no window in SQL.
    assert grant_condition(_grant(AIR, kinds=(AGG,)), 0, {}, kind=AGG) is None


def test_classifications_are_capped_by_the_offer() -> None:
    assert covered_classifications(_grant(AIR, classification=Classification.PUBLIC)) == ["public"]
    assert covered_classifications(_grant(AIR)) == ["public", "internal"]


def test_statements_or_the_grants_into_the_tenant_branch_and_keep_personal_rows_out() -> None:
    grants = (_grant(AIR), _grant(Selection(areas=["harbour"]), agreement_id="agr-2"))
    viewer = Viewer.of_tenant("city", grants)
    statement = observations_statement(viewer, ObservationFilter(device_ids=["aq-1"]))
    text = statement.text
    assert "OR (tenant = %(g0_provider)s" in text
    assert "OR (tenant = %(g1_provider)s" in text
    assert "classification IS DISTINCT FROM %(personal)s" in text
    assert "data_subject IS NULL" in text
    assert statement.params["g1_areas"] == ["harbour"]
    agg = aggregates_statement(
        Viewer.of_tenant("city", (_grant(Selection(device_ids=["aq-1"]), kinds=(AGG,)),)),
        AggregateFilter(Group.device("aq-1"), NOW - timedelta(hours=1), NOW),
    )
    assert "group_kind = 'device'" in agg.text
    assert agg.params["g0_device_ids"] == ["aq-1"]


def _facts(**kw: Any) -> ItemFacts:
    base: dict[str, Any] = {
        "tenant": "port",
        "kind": OBS,
        "quantity": "pm2_5",
        "classification": "internal",
        "device_id": "aq-1",
        "device_type": "airq",
        "area": "harbour",
    }
    base.update(kw)
    return ItemFacts(**base)


def test_read_under_counts_rows_of_other_tenants_per_agreement() -> None:
    grants = (_grant(AIR),)
    rows = [
        _facts(),
        _facts(device_id="aq-2"),
        _facts(tenant="city"),  # its own: no agreement
        _facts(classification="public"),  # public: no agreement needed
    ]
    assert read_under("city", grants, rows) == {"agr-1": 2}
    assert read_under(None, grants, rows) == {}
    assert read_under("city", (), rows) == {}


# --- read access ----------------------------------------------------------------------------


def test_read_access_asks_the_clock_and_counts_reads() -> None:
    usage = UsageCounts()
    clock = [NOW]
    grants = Grants.from_agreements([_agreement(AIR, ends=NOW + timedelta(seconds=2))])
    access = ReadAccess(lambda: grants, usage, lambda: clock[0])
    assert [g.agreement_id for g in access.active_for("city")] == ["agr-1"]
    assert access.active_for(None) == ()
    assert access.active_for("port") == ()
    clock[0] = NOW + timedelta(seconds=3)
    assert access.active_for("city") == ()
    access.count({"agr-1": 4})
    assert usage.totals() == {("agr-1", Channel.READ): 4}
    NO_SHARING.count({"agr-1": 1})  # counts nowhere, raises nothing
    assert NO_SHARING.active_for("city") == ()


def test_a_device_is_covered_whatever_quantity_but_items_per_quantity() -> None:
    grants = (_grant(AIR),)
    assert covering_device(grants, _facts(quantity=None)) is not None
    assert covering(grants, _facts(quantity="no2")) is None
    assert covering_device(grants, _facts(device_type="noise", quantity=None)) is None
    assert covering_device(grants, _facts(tenant="other", quantity=None)) is None


def test_an_area_is_covered_only_by_an_aggregate_offer_without_device_criteria() -> None:
    area = (_grant(Selection(areas=["harbour"]), kinds=(AGG,)),)
    assert covering_area(area, "port", "harbour") is not None
    assert covering_area(area, "port", "centre") is None
    assert covering_area(area, "other", "harbour") is None
    assert covering_area((_grant(AIR, kinds=(AGG,)),), "port", "harbour") is None


# --- aggregates -----------------------------------------------------------------------------


def _window(n: int, **kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "aggregate_id": f"w-{n}",
        "tenant": "port",
        "classification": "internal",
        "device_id": "aq-1",
        "area": "harbour",
        "quantity": "pm2_5",
    }
    doc.update(kw)
    return doc


def _airq(tenant: str, device_id: str) -> tuple[str | None, tuple[str, ...]] | None:
    return ("airq", ()) if (tenant, device_id) == ("port", "aq-1") else None


def test_windows_under_an_agreement_show_and_are_counted() -> None:
    grants = (_grant(AIR, kinds=(AGG,)),)
    items = [
        _window(0),
        _window(1, quantity="no2"),  # not offered
        _window(2, classification="personal"),  # not covered by an internal offer
        _window(3, tenant="city"),  # own
        _window(4, tenant="other", classification="public"),  # public
    ]
    shown, under = visible_under("city", items, grants, _airq)
    assert shown == [items[0], items[3], items[4]]
    assert {k: g.agreement_id for k, g in under.items()} == {"w-0": "agr-1"}
    assert windows_read_under(shown, under) == {"agr-1": 1}
    assert windows_read_under(shown[1:], under) == {}
    # Without the registry's facts the device type is unknown: not covered.
    assert visible_under("city", items, grants)[1] == {}
    assert visible_under("city", items)[0] == [items[3], items[4]]


def test_a_personal_window_is_read_under_a_personal_offer_only_when_asked() -> None:
    personal = Grant.of(
        _agreement(AIR, kinds=(AGG,), classification=Classification.PERSONAL, activity="care")
    )
    item = _window(0, classification="personal")
    assert visible_under("city", [item], (personal,), _airq)[0] == []
    shown, under = visible_under("city", [item], (personal,), _airq, personal=True)
    assert shown == [item]
    assert under["w-0"] is personal
    # An internal offer never covers a personal window.
    assert (
        visible_under("city", [item], (_grant(AIR, kinds=(AGG,)),), _airq, personal=True)[0] == []
    )


# --- SensorThings ---------------------------------------------------------------------------


def _type(tenant: str, type_id: str, classification: Classification) -> DeviceType:
    return DeviceType(
        tenant=tenant,
        id=type_id,
        name=type_id,
        decoder="network",
        fields=[],
        only_mapped=False,
        classification=classification,
        created_at=STAMP,
        updated_at=STAMP,
    )


def _device(tenant: str, device_id: str, type_id: str, subject: str | None = None) -> DeviceEntry:
    return DeviceEntry(
        id=device_id,
        tenant=tenant,
        type=type_id,
        dev_eui=None,
        name=device_id,
        latitude=52.0,
        longitude=4.0,
        altitude=None,
        area="harbour",
        tags=(),
        active=True,
        app_key_sha256=None,
        created_at=STAMP,
        updated_at=STAMP,
        data_subject=subject,
    )


def _graph(grants: tuple[Grant, ...]) -> Graph:
    types = [
        _type("port", "airq", Classification.INTERNAL),
        _type("port", "noise", Classification.INTERNAL),
        _type("port", "room", Classification.PERSONAL),
        _type("city", "th", Classification.INTERNAL),
    ]
    devices = [
        _device("port", "aq-1", "airq"),
        _device("port", "aq-2", "airq", subject="resident-1"),
        _device("port", "noise-1", "noise"),
        _device("port", "room-1", "room"),
        _device("city", "th-1", "th"),
    ]
    streams = [
        StreamFacts(device, quantity, None, NOW, NOW, True)
        for device, quantity in (
            ("aq-1", "pm2_5"),
            ("aq-1", "no2"),
            ("noise-1", "sound_level"),
            ("th-1", "temperature"),
        )
    ]
    return Graph(devices, types, streams, StaViewer("city", grants))


def _keys(graph: Graph, kind: str) -> set[Any]:
    return {e.key for e in graph.all(kind)}


def test_sensorthings_shows_exactly_the_offered_things_and_datastreams() -> None:
    plain = _graph(())
    assert _keys(plain, "Thing") == {"th-1"}
    shared = _graph((_grant(AIR),))
    assert _keys(shared, "Thing") == {"th-1", "aq-1"}  # not aq-2 (a subject), noise-1, room-1
    assert _keys(shared, "Datastream") == {("th-1", "temperature"), ("aq-1", "pm2_5")}
    assert _keys(shared, "Sensor") == {("city", "th"), ("port", "airq")}
    assert _keys(shared, "ObservedProperty") == {"temperature", "pm2_5"}
    assert set(shared.visible_devices()) == {"aq-1", "th-1"}


def test_sensorthings_says_which_agreement_each_entity_is_seen_under() -> None:
    graph = _graph((_grant(AIR),))
    thing = graph.by_key("Thing", "aq-1")
    stream = graph.by_key("Datastream", ("aq-1", "pm2_5"))
    own = graph.by_key("Thing", "th-1")
    sensor = graph.by_key("Sensor", ("port", "airq"))
    assert [None if e is None else graph.agreement_of(e) for e in (thing, stream, own, sensor)] == [
        "agr-1",
        "agr-1",
        None,
        None,
    ]
    assert graph.by_key("Datastream", ("aq-1", "no2")) is None


def test_a_personal_offer_shows_no_personal_device_in_sensorthings() -> None:
    grant = Grant.of(
        _agreement(Selection(device_types=["room"]), classification=Classification.INTERNAL)
    )
    assert _keys(_graph((grant,)), "Thing") == {"th-1"}
