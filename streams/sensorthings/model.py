"""The SensorThings entities a key may see, built from the registry and the Datastreams seen
in history: Things (devices), Locations and HistoricalLocations (a device's registered
location, one each), Sensors (device types), ObservedProperties (the catalogue's quantities
that have a visible Datastream), Datastreams (device x quantity) and FeaturesOfInterest (one
per device that has observations: its location, or a GeoJSON Feature without geometry).

Pure: plain data in (registry entries, device types, Datastream facts), a ``Graph`` out; each
entity's properties are built by ``documents.py``. Observations are not here: they live in the
history store (``observations.py``).

Visibility (the rule of the whole API): a tenant's key sees its own tenant's devices and types,
other tenants' ``public`` ones, and what its active agreements cover (``Viewer.grants``): a
Thing (with its Location, HistoricalLocation and FeatureOfInterest) for each device an agreement
selects, a Datastream for each of its quantities the agreement shares, the Sensor (device type)
of those Things, and nothing else of the provider. An admin key sees all; personal devices (a
``personal`` type, or a linked data subject) and personal types are left out for everyone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from cityhub.schemas.registry import Classification, DeviceType
from cityhub.schemas.sharing import ItemKind
from cityhub.streams.registry.view import DeviceEntry
from cityhub.streams.sensorthings.documents import (
    datastream_document,
    feature_document,
    historical_location_document,
    location_document,
    observed_property_document,
    sensor_document,
    thing_document,
)
from cityhub.streams.sensorthings.ids import entity_id
from cityhub.streams.sharing.grants import Grant, ItemFacts
from cityhub.streams.sharing.read_access import covering_quantity, device_grants

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


class Entity:
    """One entity: its type, ``@iot.id``, the cityhub key behind it (device id,
    ``(tenant, type)``, ``(device, quantity)``...) and its properties (Python values; times as
    ``datetime``), which are built the first time they are read: a page of 100 Things out of
    100 000 builds 100 documents."""

    __slots__ = ("_make", "_props", "id", "key", "kind")

    def __init__(
        self,
        kind: str,
        entity_id: int,
        props: dict[str, Any] | None,
        key: Any,
        make: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.kind = kind
        self.id = entity_id
        self.key = key
        self._props = props
        self._make = make

    @property
    def props(self) -> dict[str, Any]:
        """The entity's properties."""
        if self._props is None:
            self._props = self._make() if self._make is not None else {}
        return self._props

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entity) and (self.kind, self.id, self.key) == (
            other.kind,
            other.id,
            other.key,
        )

    def __hash__(self) -> int:
        return hash((self.kind, self.id))

    def __repr__(self) -> str:
        return f"Entity({self.kind}, {self.id}, {self.key!r})"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Whose view: a tenant's key (``tenant``) or an admin's (``tenant`` None: every tenant)."""

    tenant: str | None
    grants: tuple[Grant, ...] = ()
    """The tenant's active agreements at the time of the request."""

    def may_see(self, owner: str, classification: Classification) -> bool:
        """Whether the type (and so its devices) is visible without an agreement."""
        if classification is Classification.PERSONAL:
            return False
        return (
            self.tenant is None or owner == self.tenant or classification is Classification.PUBLIC
        )

    def grants_for(self, device: DeviceEntry, device_type: DeviceType) -> tuple[Grant, ...]:
        """The agreements under which the viewer sees some quantity of ``device`` (which
        quantity: ``covering_quantity``); none for a personal device or its own."""
        if not self.grants or self.tenant is None or device.tenant == self.tenant:
            return ()
        if not any(grant.provider == device.tenant for grant in self.grants):
            return ()
        if device_type.classification is Classification.PERSONAL or device.data_subject:
            return ()
        facts = ItemFacts(
            tenant=device.tenant,
            kind=ItemKind.OBSERVATIONS,
            quantity=None,
            classification=device_type.classification.value,
            device_id=device.id,
            device_type=device.type,
            area=device.area,
            tags=tuple(device.tags),
        )
        return device_grants(self.grants, facts)


def _id_key(kind: str, key: Any) -> str:
    """The text an entity's id is hashed from (``ids.py``)."""
    if kind == "Sensor":
        return f"{key[0]}/{key[1]}"
    if kind == "Datastream":
        return f"{key[0]}:{key[1]}"
    return str(key)


class Graph:
    """Every registry-backed entity one viewer may see, found by id or by key.

    Built lazily: the constructor only sorts out which devices, types and Datastreams are
    visible (one pass over each); the ids of a kind are hashed the first time that kind is
    listed or looked up by id, an entity is made the first time it is reached, and its
    properties the first time they are read."""

    def __init__(
        self,
        devices: Iterable[DeviceEntry],
        types: Iterable[DeviceType],
        streams: Iterable[StreamFacts],
        viewer: Viewer,
    ) -> None:
        every_type = {(t.tenant, t.id): t for t in types}
        visible = {
            k: t for k, t in every_type.items() if viewer.may_see(t.tenant, t.classification)
        }
        self._types: dict[tuple[str, str], DeviceType] = dict(visible)
        self._things: dict[str, DeviceEntry] = {}
        self._shared: dict[Any, Grant] = {}
        """Device id (Things) or (device id, quantity) (Datastreams) -> the agreement under
        which the viewer sees it: what ``agreement_of`` counts."""
        of_device: dict[str, tuple[Grant, ...]] = {}
        for device in devices:
            if device.data_subject is not None:
                continue
            type_key = (device.tenant, device.type)
            if type_key in visible:
                self._things[device.id] = device
                continue
            device_type = every_type.get(type_key)
            grants = () if device_type is None else viewer.grants_for(device, device_type)
            if device_type is not None and grants:
                self._things[device.id] = device
                self._shared[device.id] = grants[0]
                of_device[device.id] = grants
                self._types[type_key] = device_type  # the Sensor of a shared Thing
        self._streams: dict[str, dict[str, StreamFacts]] = {}
        for facts in streams:
            thing = self._things.get(facts.device_id)
            if thing is None:
                continue
            if thing.id in of_device:
                grant = covering_quantity(of_device[thing.id], facts.quantity)
                if grant is None:
                    continue  # a quantity the agreement does not share
                self._shared[(thing.id, facts.quantity)] = grant
            self._streams.setdefault(facts.device_id, {})[facts.quantity] = facts
        self._quantities = {q for by_quantity in self._streams.values() for q in by_quantity}
        self._entities: dict[tuple[str, Any], Entity | None] = {}
        self._ids: dict[str, dict[int, Any]] = {}
        self._order: dict[str, list[int]] = {}
        self._reverse: dict[str, dict[Any, int]] = {}
        self._of_type: dict[tuple[str, str], list[str]] | None = None
        self._of_quantity: dict[str, list[str]] | None = None

    # --- which keys exist ---------------------------------------------------------------
    def _keys(self, kind: str) -> Iterable[Any]:
        if kind == "Thing":
            return self._things
        if kind in ("Location", "HistoricalLocation"):
            return (d.id for d in self._things.values() if d.latitude is not None)
        if kind == "FeatureOfInterest":
            return self._streams
        if kind == "Sensor":
            return self._types
        if kind == "ObservedProperty":
            return self._quantities
        if kind == "Datastream":
            return ((d, q) for d, by_q in self._streams.items() for q in by_q)
        return ()

    def _make(self, kind: str, key: Any, number: int | None = None) -> Entity | None:
        device = self._things.get(key) if isinstance(key, str) else None
        make: Callable[[], dict[str, Any]]
        if kind == "Thing" and device is not None:
            make = partial(thing_document, device, self._types[(device.tenant, device.type)])
        elif kind == "Location" and device is not None and device.latitude is not None:
            make = partial(location_document, device)
        elif kind == "HistoricalLocation" and device is not None and device.latitude is not None:
            make = partial(historical_location_document, device)
        elif kind == "FeatureOfInterest" and device is not None and key in self._streams:
            make = partial(feature_document, device)
        elif kind == "Sensor" and key in self._types:
            make = partial(sensor_document, self._types[key])
        elif kind == "ObservedProperty" and key in self._quantities:
            make = partial(observed_property_document, key)
        elif kind == "Datastream" and isinstance(key, tuple):
            facts = self._streams.get(key[0], {}).get(key[1])
            if facts is None:
                return None
            make = partial(datastream_document, self._things[key[0]], facts)
        else:
            return None
        if number is None:
            number = entity_id(kind, _id_key(kind, key))
        return Entity(kind, number, None, key, make)

    def _id_table(self, kind: str) -> dict[int, Any]:
        table = self._ids.get(kind)
        if table is None:
            table = {}
            for key in self._keys(kind):
                number = entity_id(kind, _id_key(kind, key))
                if number in table:
                    log.warning("two %s entities share the id %d; the first keeps it", kind, number)
                    continue
                table[number] = key
            self._ids[kind] = table
        return table

    # --- look-ups -------------------------------------------------------------------------
    def by_key(self, kind: str, key: Any, number: int | None = None) -> Entity | None:
        """The visible entity of ``kind`` with this cityhub key (and id, when known), or
        None."""
        try:
            return self._entities[(kind, key)]
        except KeyError:
            entity = self._make(kind, key, number)
            self._entities[(kind, key)] = entity
            return entity
        except TypeError:  # an unhashable key: nothing has it
            return None

    def get(self, kind: str, entity_id: int) -> Entity | None:
        """The visible entity of ``kind`` with this ``@iot.id``, or None."""
        key = self._id_table(kind).get(entity_id)
        return None if key is None else self.by_key(kind, key, entity_id)

    def _sorted_ids(self, kind: str) -> list[int]:
        ordered = self._order.get(kind)
        if ordered is None:
            ordered = self._order[kind] = sorted(self._id_table(kind))
        return ordered

    def count(self, kind: str) -> int:
        """How many visible entities of ``kind`` there are."""
        return len(self._id_table(kind))

    def page(self, kind: str, skip: int, size: int) -> list[Entity]:
        """The entities of ``kind`` from the ``skip``-th in id order, at most ``size``: only
        they are made."""
        table = self._id_table(kind)
        chosen = self._sorted_ids(kind)[skip : skip + size]
        found = (self.by_key(kind, table[number], number) for number in chosen)
        return [e for e in found if e is not None]

    def all(self, kind: str) -> list[Entity]:
        """Every visible entity of ``kind``, in id order."""
        return self.page(kind, 0, self.count(kind))

    def related(self, entity: Entity, navigation: str) -> list[Entity]:
        """The registry-backed entities ``navigation`` reaches from ``entity`` (Observations
        are not here); a to-one navigation gives a list of at most one."""
        target = RELATIONS[entity.kind][navigation]
        kind = entity.kind
        if kind == "Datastream":
            device_id, quantity = entity.key
            device = self._things.get(device_id)
            key: Any = {
                "Thing": device_id,
                "Sensor": None if device is None else (device.tenant, device.type),
                "ObservedProperty": quantity,
            }[navigation]
            return _present(self.by_key(target, key))
        if navigation == "Datastreams":
            return self._streams_of(entity)
        # Thing, Location, HistoricalLocation and FeatureOfInterest share the device as key.
        return _present(self.by_key(target, entity.key))

    def _streams_of(self, entity: Entity) -> list[Entity]:
        if entity.kind == "Thing":
            devices = [entity.key]
            wanted: str | None = None
        elif entity.kind == "Sensor":
            if self._of_type is None:
                self._of_type = {}
                for device in self._things.values():
                    self._of_type.setdefault((device.tenant, device.type), []).append(device.id)
            devices, wanted = self._of_type.get(entity.key, []), None
        else:  # an ObservedProperty
            if self._of_quantity is None:
                self._of_quantity = {}
                for device_id, by_quantity in self._streams.items():
                    for quantity in by_quantity:
                        self._of_quantity.setdefault(quantity, []).append(device_id)
            devices, wanted = self._of_quantity.get(entity.key, []), entity.key
        ids = self._key_ids("Datastream")
        found = []
        for device_id in devices:
            for quantity in self._streams.get(device_id, {}):
                if wanted is None or quantity == wanted:
                    key = (device_id, quantity)
                    stream = self.by_key("Datastream", key, ids.get(key))
                    if stream is not None:
                        found.append(stream)
        return sorted(found, key=lambda e: e.id)

    def _key_ids(self, kind: str) -> dict[Any, int]:
        reverse = self._reverse.get(kind)
        if reverse is None:
            table = self._id_table(kind)
            reverse = self._reverse[kind] = {key: number for number, key in table.items()}
        return reverse

    def agreement_of(self, entity: Entity) -> str | None:
        """The agreement under which the viewer sees ``entity`` (a Thing, Location,
        HistoricalLocation, FeatureOfInterest, Datastream or Observation of another tenant's
        device), or None (its own, a public one, a Sensor or an ObservedProperty)."""
        if entity.kind in ("Sensor", "ObservedProperty"):
            return None
        try:
            grant = self._shared.get(entity.key)
        except TypeError:  # an unhashable key
            return None
        return None if grant is None else grant.agreement_id

    def visible_devices(self) -> list[str]:
        """The ids of every visible Thing (what Observations are limited to)."""
        return list(self._things)


def _present(entity: Entity | None) -> list[Entity]:
    return [] if entity is None else [entity]
