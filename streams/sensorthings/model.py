"""The SensorThings entities a key may see, built from the registry and the Datastreams seen
in history: Things (devices), Locations and HistoricalLocations (a device's registered
location, one each), Sensors (device types), ObservedProperties (the catalogue's quantities
that have a visible Datastream), Datastreams (device x quantity) and FeaturesOfInterest (one
per device that has observations: its location, or a GeoJSON Feature without geometry).

Pure: plain data in (registry entries, device types, Datastream facts), a ``Graph`` out.
Observations are not here: they live in the history store (``observations.py``).

Visibility (the rule of the whole API): a tenant's key sees its own tenant's devices and types
and other tenants' ``public`` ones; an admin key sees all; personal devices (a ``personal``
type, or a linked data subject) and personal types are left out for everyone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cityhub.schemas.registry import Classification, DeviceType
from cityhub.streams.registry.view import DeviceEntry
from cityhub.streams.sensorthings.ids import entity_id
from cityhub.streams.sensorthings.vocabulary import definition_of, describe, unit_of_measurement

log = logging.getLogger("cityhub.sensorthings")

ENTITY_SETS: dict[str, str] = {
    "Things": "Thing",
    "Locations": "Location",
    "HistoricalLocations": "HistoricalLocation",
    "Datastreams": "Datastream",
    "Sensors": "Sensor",
    "ObservedProperties": "ObservedProperty",
    "Observations": "Observation",
    "FeaturesOfInterest": "FeatureOfInterest",
}
"""Entity set name -> entity type."""
SET_OF: dict[str, str] = {kind: name for name, kind in ENTITY_SETS.items()}

RELATIONS: dict[str, dict[str, str]] = {
    "Thing": {
        "Datastreams": "Datastream",
        "Locations": "Location",
        "HistoricalLocations": "HistoricalLocation",
    },
    "Location": {"Things": "Thing", "HistoricalLocations": "HistoricalLocation"},
    "HistoricalLocation": {"Thing": "Thing", "Locations": "Location"},
    "Datastream": {
        "Thing": "Thing",
        "Sensor": "Sensor",
        "ObservedProperty": "ObservedProperty",
        "Observations": "Observation",
    },
    "Sensor": {"Datastreams": "Datastream"},
    "ObservedProperty": {"Datastreams": "Datastream"},
    "Observation": {"Datastream": "Datastream", "FeatureOfInterest": "FeatureOfInterest"},
    "FeatureOfInterest": {"Observations": "Observation"},
}
"""Each entity type's navigation properties and the type each reaches (plural names reach
many)."""

OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"
GEOJSON = "application/geo+json"


def is_plural(navigation: str) -> bool:
    """Whether a navigation property reaches a collection (its name is an entity set's)."""
    return navigation in ENTITY_SETS


@dataclass(frozen=True, slots=True)
class StreamFacts:
    """What history says about one device x quantity pair (``observations.py`` reads it)."""

    device_id: str
    quantity: str
    unit: str | None
    first: datetime
    last: datetime
    numeric: bool


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity: its type, ``@iot.id``, properties (Python values; times as ``datetime``)
    and the cityhub key behind it (device id, ``(tenant, type)``, ``(device, quantity)``...)."""

    kind: str
    id: int
    props: dict[str, Any]
    key: Any


@dataclass(frozen=True, slots=True)
class Viewer:
    """Whose view: a tenant's key (``tenant``) or an admin's (``tenant`` None: every tenant)."""

    tenant: str | None

    def may_see(self, owner: str, classification: Classification) -> bool:
        if classification is Classification.PERSONAL:
            return False
        return (
            self.tenant is None or owner == self.tenant or classification is Classification.PUBLIC
        )


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Graph:
    """Every registry-backed entity one viewer may see, indexed by id and by key."""

    def __init__(
        self,
        devices: Iterable[DeviceEntry],
        types: Iterable[DeviceType],
        streams: Iterable[StreamFacts],
        viewer: Viewer,
    ) -> None:
        self.sets: dict[str, dict[int, Entity]] = {kind: {} for kind in SET_OF}
        self._by_key: dict[tuple[str, Any], Entity] = {}
        self._children: dict[tuple[str, Any, str], list[Any]] = {}
        self._sensor_of: dict[str, tuple[str, str]] = {}
        visible_types: dict[tuple[str, str], DeviceType] = {}
        for kind in types:
            if viewer.may_see(kind.tenant, kind.classification):
                visible_types[(kind.tenant, kind.id)] = kind
                self._add(_sensor(kind))
        things: dict[str, DeviceEntry] = {}
        for device in devices:
            its_type = visible_types.get((device.tenant, device.type))
            if its_type is None or device.data_subject is not None:
                continue
            things[device.id] = device
            self._sensor_of[device.id] = (device.tenant, device.type)
            self._add(_thing(device, its_type))
            if device.latitude is not None and device.longitude is not None:
                self._add(_location(device))
                self._add(_historical_location(device))
        quantities: set[str] = set()
        with_streams: set[str] = set()
        for facts in sorted(streams, key=lambda f: (f.device_id, f.quantity)):
            owner = things.get(facts.device_id)
            if owner is None:
                continue
            device = owner
            self._add(_datastream(device, facts))
            quantities.add(facts.quantity)
            with_streams.add(device.id)
            self._link("Thing", device.id, "Datastreams", (device.id, facts.quantity))
            self._link(
                "Sensor", (device.tenant, device.type), "Datastreams", (device.id, facts.quantity)
            )
            self._link(
                "ObservedProperty", facts.quantity, "Datastreams", (device.id, facts.quantity)
            )
        for quantity in sorted(quantities):
            self._add(_observed_property(quantity))
        for device_id in sorted(with_streams):
            self._add(_feature(things[device_id]))

    def _add(self, entity: Entity) -> None:
        table = self.sets[entity.kind]
        if entity.id in table:
            log.warning(
                "two %s entities share the id %d; the first keeps it", entity.kind, entity.id
            )
            return
        table[entity.id] = entity
        self._by_key[(entity.kind, entity.key)] = entity

    def _link(self, kind: str, key: Any, navigation: str, child: Any) -> None:
        self._children.setdefault((kind, key, navigation), []).append(child)

    def by_key(self, kind: str, key: Any) -> Entity | None:
        """The visible entity of ``kind`` with this cityhub key, or None."""
        return self._by_key.get((kind, key))

    def get(self, kind: str, entity_id: int) -> Entity | None:
        """The visible entity of ``kind`` with this ``@iot.id``, or None."""
        return self.sets[kind].get(entity_id)

    def all(self, kind: str) -> list[Entity]:
        """Every visible entity of ``kind``, in id order."""
        return sorted(self.sets[kind].values(), key=lambda e: e.id)

    def related(self, entity: Entity, navigation: str) -> list[Entity]:
        """The registry-backed entities ``navigation`` reaches from ``entity`` (Observations
        are not here); a to-one navigation gives a list of at most one."""
        target = RELATIONS[entity.kind][navigation]
        kind = entity.kind
        if kind == "Datastream":
            device_id, quantity = entity.key
            key: Any = {
                "Thing": device_id,
                "Sensor": self._sensor_of.get(device_id),
                "ObservedProperty": quantity,
            }[navigation]
            return _present(self.by_key(target, key))
        if kind in ("Thing", "Sensor", "ObservedProperty") and navigation == "Datastreams":
            keys = self._children.get((kind, entity.key, navigation), [])
            return [e for k in keys if (e := self.by_key("Datastream", k)) is not None]
        # Thing, Location, HistoricalLocation and FeatureOfInterest share the device as key.
        return _present(self.by_key(target, entity.key))

    def visible_devices(self) -> list[str]:
        """The ids of every visible Thing (what Observations are limited to)."""
        return [e.key for e in self.sets["Thing"].values()]


def _present(entity: Entity | None) -> list[Entity]:
    return [] if entity is None else [entity]


def _thing(device: DeviceEntry, device_type: DeviceType) -> Entity:
    where = f" in area {device.area}" if device.area else ""
    props = {
        "name": device.name,
        "description": f"{device_type.name} {device.id}{where}",
        "properties": {
            "device_id": device.id,
            "tenant": device.tenant,
            "device_type": device.type,
            "area": device.area,
            "tags": list(device.tags),
            "active": device.active,
        },
    }
    return Entity("Thing", entity_id("Thing", device.id), props, device.id)


def _point(device: DeviceEntry) -> dict[str, Any]:
    coordinates = [device.longitude, device.latitude]
    if device.altitude is not None:
        coordinates.append(device.altitude)
    return {"type": "Point", "coordinates": coordinates}


def _location(device: DeviceEntry) -> Entity:
    props = {
        "name": f"{device.name} location",
        "description": f"Where device {device.id} is installed",
        "encodingType": GEOJSON,
        "location": _point(device),
    }
    return Entity("Location", entity_id("Location", device.id), props, device.id)


def _historical_location(device: DeviceEntry) -> Entity:
    # The registry keeps the current location only: its one HistoricalLocation is the time the
    # device's record (and so its location) was last written.
    props = {"time": _parse_time(device.updated_at)}
    return Entity(
        "HistoricalLocation", entity_id("HistoricalLocation", device.id), props, device.id
    )


def _sensor(device_type: DeviceType) -> Entity:
    key = (device_type.tenant, device_type.id)
    props = {
        "name": device_type.name,
        "description": f"Device type {device_type.id} of tenant {device_type.tenant}",
        "encodingType": "application/json",
        "metadata": f"/api/v1/tenants/{device_type.tenant}/device-types/{device_type.id}",
        "properties": {
            "tenant": device_type.tenant,
            "device_type": device_type.id,
            "classification": device_type.classification.value,
            "decoder": device_type.decoder,
        },
    }
    return Entity("Sensor", entity_id("Sensor", f"{key[0]}/{key[1]}"), props, key)


def _observed_property(quantity: str) -> Entity:
    props = {
        "name": quantity,
        "definition": definition_of(quantity),
        "description": describe(quantity),
    }
    return Entity("ObservedProperty", entity_id("ObservedProperty", quantity), props, quantity)


def _observation_type(facts: StreamFacts) -> str:
    if not facts.numeric:
        return OM + "OM_Observation"
    if facts.quantity == "count":
        return OM + "OM_CountObservation"
    return OM + "OM_Measurement"


def _datastream(device: DeviceEntry, facts: StreamFacts) -> Entity:
    key = (device.id, facts.quantity)
    props = {
        "name": f"{device.name} {facts.quantity}",
        "description": f"{describe(facts.quantity)} measured by device {device.id}",
        "unitOfMeasurement": unit_of_measurement(facts.unit),
        "observationType": _observation_type(facts),
        "phenomenonTime": f"{_iso(facts.first)}/{_iso(facts.last)}",
        "properties": {"device_id": device.id, "quantity": facts.quantity},
    }
    return Entity("Datastream", entity_id("Datastream", f"{key[0]}:{key[1]}"), props, key)


def _feature(device: DeviceEntry) -> Entity:
    if device.latitude is not None and device.longitude is not None:
        feature: dict[str, Any] = _point(device)
    else:
        feature = {"type": "Feature", "geometry": None, "properties": {"area": device.area}}
    props = {
        "name": device.name,
        "description": f"What device {device.id} observes: its location",
        "encodingType": GEOJSON,
        "feature": feature,
    }
    return Entity("FeatureOfInterest", entity_id("FeatureOfInterest", device.id), props, device.id)


def iso(value: datetime) -> str:
    """A time as SensorThings writes it (ISO 8601, UTC, ``Z``)."""
    return _iso(value)
