"""NGSI-LD entities of cityhub's devices: ids, and the normalized and temporal representations.

Ids are URNs in the NGSI-LD namespace, ``urn:ngsi-ld:<Type>:<tenant>:<device id>``
(``urn:ngsi-ld:AirQualityObserved:city:aq-0042``): the tenant keeps two tenants' devices of
the same id apart, and neither ids nor tenants can hold a ``:``, so an id parses back.

Every device is a ``Device`` entity (``urn:ngsi-ld:Device:<tenant>:<device id>``). A device
whose type maps to an observed model (``AirQualityObserved``, ``NoiseLevelObserved``,
``WeatherObserved``, ``ParkingSpot``) is that entity too, which carries its quantities and a
``refDevice`` Relationship to its ``Device`` entity; its ``Device`` entity then carries only
what describes the device (name, location, ``controlledProperty``,
``dateLastValueReported``). A device of the generic ``Device`` model is one entity with all of
its quantities.

Pure: dicts in, dicts out.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cityhub.connectors.ngsi_ld.models import (
    AttributeRule,
    EntityMapping,
    SmartDataModel,
    attribute_value,
)
from cityhub.schemas.observation import Value

URN_PREFIX: Final = "urn:ngsi-ld:"
_ENTITY_ID = re.compile(
    r"^urn:ngsi-ld:(?P<type>[A-Za-z][A-Za-z0-9]{0,63}):(?P<tenant>[a-z0-9][a-z0-9._-]{0,62})"
    r":(?P<device>[a-z0-9][a-z0-9._-]{0,62})$"
)
_OBSERVED_DATE: Final = frozenset(
    {
        SmartDataModel.AIR_QUALITY_OBSERVED,
        SmartDataModel.NOISE_LEVEL_OBSERVED,
        SmartDataModel.WEATHER_OBSERVED,
    }
)
"""The models with a ``dateObserved``: the time of the latest observation shown."""


@dataclass(frozen=True, slots=True)
class GeoPoint:
    longitude: float
    latitude: float
    altitude: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What the registry says about a device that its entities show."""

    tenant: str
    device_id: str
    name: str
    mapping: EntityMapping
    location: GeoPoint | None = None
    area: str | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """One observation of a device, as an attribute shows it."""

    quantity: str
    value: Value
    unit: str | None
    observed_at: str
    """RFC 3339, UTC."""
    instance_id: str | None = None
    """The observation's event id: an attribute instance's ``instanceId`` (``urn:uuid:...``)."""


@dataclass(frozen=True, slots=True)
class EntityRef:
    """An entity id taken apart."""

    type: str
    tenant: str
    device_id: str


def entity_id(entity_type: str, tenant: str, device_id: str) -> str:
    """``urn:ngsi-ld:<Type>:<tenant>:<device id>``."""
    return f"{URN_PREFIX}{entity_type}:{tenant}:{device_id}"


def parse_entity_id(text: str) -> EntityRef | None:
    """The parts of one of cityhub's entity ids; None for anything else."""
    match = _ENTITY_ID.match(text)
    if match is None:
        return None
    return EntityRef(match["type"], match["tenant"], match["device"])


def entity_types(mapping: EntityMapping) -> tuple[SmartDataModel, ...]:
    """The entity types a device of ``mapping`` is shown as: its model, and ``Device``."""
    if mapping.model is SmartDataModel.DEVICE:
        return (SmartDataModel.DEVICE,)
    return (mapping.model, SmartDataModel.DEVICE)


def carries_readings(mapping: EntityMapping, entity_type: str) -> bool:
    """Whether the entity of ``entity_type`` carries the device's quantities."""
    return entity_type == mapping.model.value


def date_time(text: str) -> dict[str, str]:
    """A DateTime value, typed as NGSI-LD asks for one inside a Property's ``value``."""
    return {"@type": "DateTime", "@value": text}


def property_of(rule: AttributeRule, reading: Reading, *, instance: bool = False) -> dict[str, Any]:
    """The Property of one reading under ``rule``: its value, ``observedAt``, ``unitCode``;
    with ``instance``, its ``instanceId`` (the temporal representation)."""
    value, unit_code = attribute_value(rule, reading.value, reading.unit)
    prop: dict[str, Any] = {"type": "Property", "value": value, "observedAt": reading.observed_at}
    if unit_code is not None:
        prop["unitCode"] = unit_code
    if instance and reading.instance_id is not None:
        prop["instanceId"] = f"urn:uuid:{reading.instance_id}"
    return prop


def latest_by_attribute(
    mapping: EntityMapping, readings: Iterable[Reading]
) -> dict[str, tuple[AttributeRule, Reading]]:
    """The latest reading of each attribute (two quantities on one attribute: the later)."""
    latest: dict[str, tuple[AttributeRule, Reading]] = {}
    for reading in readings:
        rule = mapping.rule(reading.quantity)
        held = latest.get(rule.attribute)
        if held is None or held[1].observed_at < reading.observed_at:
            latest[rule.attribute] = (rule, reading)
    return latest


def _describing(device: DeviceFacts) -> dict[str, Any]:
    attrs: dict[str, Any] = {"name": {"type": "Property", "value": device.name}}
    if device.location is not None:
        point = device.location
        coordinates: list[float] = [point.longitude, point.latitude]
        if point.altitude is not None:
            coordinates.append(point.altitude)
        attrs["location"] = {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": coordinates},
        }
    if device.area is not None:
        attrs["areaServed"] = {"type": "Property", "value": device.area}
    return attrs


def entity(
    device: DeviceFacts,
    entity_type: str,
    readings: Sequence[Reading],
    *,
    attrs: Collection[str] | None = None,
) -> dict[str, Any] | None:
    """The normalized representation of the device's entity of ``entity_type``, from its
    latest readings (no ``@context``: the answer adds it).

    ``attrs`` (NGSI-LD's ``attrs``) keeps only those attributes and matches only an entity
    that has at least one of them: None is returned for one that has none."""
    mapping = device.mapping
    doc: dict[str, Any] = {
        "id": entity_id(entity_type, device.tenant, device.device_id),
        "type": entity_type,
    }
    doc.update(_describing(device))
    latest = latest_by_attribute(mapping, readings)
    if carries_readings(mapping, entity_type):
        for attribute, (rule, reading) in sorted(latest.items()):
            doc[attribute] = property_of(rule, reading)
        if mapping.has_ref_device:
            doc["refDevice"] = {
                "type": "Relationship",
                "object": entity_id(SmartDataModel.DEVICE.value, device.tenant, device.device_id),
            }
        if latest and entity_type in _OBSERVED_DATE:
            newest = max(reading.observed_at for _, reading in latest.values())
            doc["dateObserved"] = {"type": "Property", "value": date_time(newest)}
    else:
        if latest:
            doc["controlledProperty"] = {"type": "Property", "value": sorted(latest)}
            newest = max(reading.observed_at for _, reading in latest.values())
            doc["dateLastValueReported"] = {"type": "Property", "value": date_time(newest)}
    if attrs is None:
        return doc
    kept = {name: value for name, value in doc.items() if name in attrs}
    if not kept:
        return None
    return {"id": doc["id"], "type": doc["type"], **kept}


def temporal_entity(
    device: DeviceFacts,
    entity_type: str,
    readings: Iterable[Reading],
    *,
    attrs: Collection[str] | None = None,
) -> dict[str, Any]:
    """The temporal representation of the device's entity of ``entity_type``: each attribute
    an array of its instances (``observedAt``, ``unitCode``, ``instanceId``), newest first,
    in the order ``readings`` come; only those of ``attrs`` when given."""
    doc: dict[str, Any] = {
        "id": entity_id(entity_type, device.tenant, device.device_id),
        "type": entity_type,
    }
    if not carries_readings(device.mapping, entity_type):
        return doc
    for reading in readings:
        rule = device.mapping.rule(reading.quantity)
        if attrs is not None and rule.attribute not in attrs:
            continue
        doc.setdefault(rule.attribute, []).append(property_of(rule, reading, instance=True))
    return doc


def fragment(device: DeviceFacts, reading: Reading) -> dict[str, Any]:
    """The entity fragment one observation makes: its entity's id and type and the one
    attribute it updates (what a notification's ``data`` carries)."""
    mapping = device.mapping
    rule = mapping.rule(reading.quantity)
    return {
        "id": entity_id(mapping.model.value, device.tenant, device.device_id),
        "type": mapping.model.value,
        rule.attribute: property_of(rule, reading),
    }
