"""The properties of each registry-backed SensorThings entity (its document, without the
``@iot`` annotations and links the service adds): a Thing, its Location, HistoricalLocation and
FeatureOfInterest from the device's registry entry, a Sensor from a device type, an
ObservedProperty from a quantity of the catalogue (``vocabulary.py``) and a Datastream from the
device and what history says about the pair (``StreamFacts``).

Pure: plain data in, a dict of Python values out (times as ``datetime``, which ``iso`` writes
as SensorThings does). ``model.py``'s ``Graph`` calls these the first time an entity's
properties are read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cityhub.schemas.registry import DeviceType
from cityhub.streams.registry.view import DeviceEntry
from cityhub.streams.sensorthings.vocabulary import definition_of, describe, unit_of_measurement

if TYPE_CHECKING:
    from cityhub.streams.sensorthings.model import StreamFacts

OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"
GEOJSON = "application/geo+json"


def iso(value: datetime) -> str:
    """A time as SensorThings writes it (ISO 8601, UTC, ``Z``)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def thing_document(device: DeviceEntry, device_type: DeviceType) -> dict[str, Any]:
    where = f" in area {device.area}" if device.area else ""
    return {
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


def _point(device: DeviceEntry) -> dict[str, Any]:
    coordinates = [device.longitude, device.latitude]
    if device.altitude is not None:
        coordinates.append(device.altitude)
    return {"type": "Point", "coordinates": coordinates}


def location_document(device: DeviceEntry) -> dict[str, Any]:
    return {
        "name": f"{device.name} location",
        "description": f"Where device {device.id} is installed",
        "encodingType": GEOJSON,
        "location": _point(device),
    }


def historical_location_document(device: DeviceEntry) -> dict[str, Any]:
    # The registry keeps the current location only: its one HistoricalLocation is the time the
    # device's record (and so its location) was last written.
    return {"time": _parse_time(device.updated_at)}


def sensor_document(device_type: DeviceType) -> dict[str, Any]:
    return {
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


def observed_property_document(quantity: str) -> dict[str, Any]:
    return {
        "name": quantity,
        "definition": definition_of(quantity),
        "description": describe(quantity),
    }


def _observation_type(facts: StreamFacts) -> str:
    if not facts.numeric:
        return OM + "OM_Observation"
    if facts.quantity == "count":
        return OM + "OM_CountObservation"
    return OM + "OM_Measurement"


def datastream_document(device: DeviceEntry, facts: StreamFacts) -> dict[str, Any]:
    return {
        "name": f"{device.name} {facts.quantity}",
        "description": f"{describe(facts.quantity)} measured by device {device.id}",
        "unitOfMeasurement": unit_of_measurement(facts.unit),
        "observationType": _observation_type(facts),
        "phenomenonTime": f"{iso(facts.first)}/{iso(facts.last)}",
        "properties": {"device_id": device.id, "quantity": facts.quantity},
    }


def feature_document(device: DeviceEntry) -> dict[str, Any]:
    if device.latitude is not None and device.longitude is not None:
        feature: dict[str, Any] = _point(device)
    else:
        feature = {"type": "Feature", "geometry": None, "properties": {"area": device.area}}
    return {
        "name": device.name,
        "description": f"What device {device.id} observes: its location",
        "encodingType": GEOJSON,
        "feature": feature,
    }
