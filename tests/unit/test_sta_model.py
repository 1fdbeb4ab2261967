"""The SensorThings entities a viewer sees (visibility, personal devices left out), their
navigation, their stable ids, and the vocabulary of units and observed properties."""

from __future__ import annotations

from datetime import UTC, datetime

from cityhub.schemas.quantities import QUANTITIES
from cityhub.schemas.registry import Classification, DeviceType
from cityhub.streams.registry.view import DeviceEntry
from cityhub.streams.sensorthings.ids import (
    MAX_OBSERVATION_ID,
    entity_id,
    event_id_bounds,
    observation_id,
)
from cityhub.streams.sensorthings.model import Graph, StreamFacts, Viewer
from cityhub.streams.sensorthings.vocabulary import (
    catalogued_kinds,
    catalogued_units,
    definition_of,
    unit_of_measurement,
)

NOW = "2026-11-01T00:00:00Z"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _type(tenant: str, type_id: str, classification: Classification) -> DeviceType:
    return DeviceType(
        tenant=tenant,
        id=type_id,
        name=type_id,
        decoder="network",
        fields=[],
        only_mapped=False,
        classification=classification,
        created_at=NOW,
        updated_at=NOW,
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
        area="a",
        tags=(),
        active=True,
        app_key_sha256=None,
        created_at=NOW,
        updated_at=NOW,
        data_subject=subject,
    )


TYPES = [
    _type("city", "air", Classification.INTERNAL),
    _type("city", "noise", Classification.PUBLIC),
    _type("city", "room", Classification.PERSONAL),
    _type("other", "park", Classification.INTERNAL),
]
DEVICES = [
    _device("city", "air-1", "air"),
    _device("city", "air-2", "air", subject="resident-0001"),  # linked: personal
    _device("city", "noise-1", "noise"),
    _device("city", "room-1", "room"),
    _device("other", "park-1", "park"),
]
STREAMS = [
    StreamFacts(d, q, "Cel", T0, T0, True)
    for d, q in (
        ("air-1", "temperature"),
        ("air-2", "temperature"),
        ("noise-1", "sound_level"),
        ("room-1", "temperature"),
        ("park-1", "occupancy"),
        ("gone", "pm10"),
    )
]


def _keys(graph: Graph, kind: str) -> set[object]:
    return {e.key for e in graph.all(kind)}


def test_a_tenant_sees_its_own_and_public_never_personal() -> None:
    city = Graph(DEVICES, TYPES, STREAMS, Viewer("city"))
    assert _keys(city, "Thing") == {"air-1", "noise-1"}
    assert _keys(city, "Sensor") == {("city", "air"), ("city", "noise")}
    other = Graph(DEVICES, TYPES, STREAMS, Viewer("other"))
    assert _keys(other, "Thing") == {"noise-1", "park-1"}
    assert _keys(other, "Datastream") == {("noise-1", "sound_level"), ("park-1", "occupancy")}
    admin = Graph(DEVICES, TYPES, STREAMS, Viewer(None))
    assert _keys(admin, "Thing") == {"air-1", "noise-1", "park-1"}
    assert ("room-1", "temperature") not in _keys(admin, "Datastream")


def test_observed_properties_and_features_follow_the_visible_datastreams() -> None:
    other = Graph(DEVICES, TYPES, STREAMS, Viewer("other"))
    assert _keys(other, "ObservedProperty") == {"sound_level", "occupancy"}
    assert _keys(other, "FeatureOfInterest") == {"noise-1", "park-1"}


def test_navigation() -> None:
    graph = Graph(DEVICES, TYPES, STREAMS, Viewer("city"))
    thing = graph.by_key("Thing", "air-1")
    assert thing is not None
    streams = graph.related(thing, "Datastreams")
    assert [s.key for s in streams] == [("air-1", "temperature")]
    assert [e.key for e in graph.related(streams[0], "Sensor")] == [("city", "air")]
    assert [e.key for e in graph.related(streams[0], "ObservedProperty")] == ["temperature"]
    location = graph.related(thing, "Locations")[0]
    assert location.props["location"] == {"type": "Point", "coordinates": [4.0, 52.0]}
    assert graph.related(location, "Things") == [thing]
    assert graph.related(graph.related(thing, "HistoricalLocations")[0], "Thing") == [thing]
    assert graph.get("Thing", entity_id("Thing", "air-1")) == thing
    assert graph.get("Thing", entity_id("Thing", "park-1")) is None


def test_ids_are_stable_and_observation_ids_map_back_to_their_event_ids() -> None:
    assert entity_id("Thing", "air-1") == entity_id("Thing", "air-1")
    assert entity_id("Thing", "air-1") != entity_id("Location", "air-1")
    assert entity_id("Thing", "air-1") < 2**48
    for text in (
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-5fff-bfff-ffffffffffff",
        "5f1c3b1e-8a8e-5b7f-9a51-6c1e0d2f7a10",
    ):
        number = observation_id(text)
        assert 0 <= number <= MAX_OBSERVATION_ID
        low, high = event_id_bounds(number)
        assert str(low) <= text <= str(high)


def test_every_catalogued_quantity_and_unit_has_a_vocabulary_entry() -> None:
    assert set(QUANTITIES) <= catalogued_kinds()
    assert {u for u in QUANTITIES.values() if u is not None} <= catalogued_units()
    assert definition_of("temperature") == "http://qudt.org/vocab/quantitykind/Temperature"
    assert unit_of_measurement("Cel") == {
        "name": "degree Celsius",
        "symbol": "Cel",
        "definition": "http://qudt.org/vocab/unit/DEG_C",
    }
    assert unit_of_measurement(None) == {"name": None, "symbol": None, "definition": None}
    assert unit_of_measurement("furlong")["definition"] is None
