"""The ``ngsi-ld`` and ``ngsi-ld-upsert`` body encodings of webhook subscriptions
(``cityhub.connectors.sinks.encodings``).

- ``ngsi-ld``: each batch is one NGSI-LD Notification (``notification.notification_body``):
  what an NGSI-LD subscriber (a notification endpoint, QuantumLeap, a broker's federation
  endpoint) takes.
- ``ngsi-ld-upsert``: each batch is the JSON array that a context broker's batch upsert takes
  (``POST /ngsi-ld/v1/entityOperations/upsert?options=update`` of Orion-LD or Scorpio): point
  the webhook's URL there and the broker holds every device's current values.

Both are ``application/ld+json`` with the ``@context`` inline (cityhub's terms and the core
context's URL), so that a receiver needs no access to the hub.

Each observation becomes the fragment of its device's entity with the one attribute it updates
(and the device's ``location`` when the observation carries one); a device aggregate becomes
the fragment of its window's latest value (``last`` at ``last_observed_at``); an area
aggregate, which no entity stands for, and a personal item (classification ``personal`` or a
data subject: its values are sealed, and standard interfaces never show them) are left out.
A batch of only such items is a Notification with empty ``data`` (an empty upsert array).

Which Smart Data Model a device is shown as is its type's (``DeviceType.ngsi_ld``): the
process that delivers gives the encoding its registry view's lookup (``use_device_types``);
without one (a process that runs no registry) every device is shown as the generic
``Device`` with the default attribute names.

Pure: JSON in, JSON out (the clock gives ``notifiedAt``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import orjson

from cityhub.connectors.ngsi_ld.entities import DeviceFacts, GeoPoint, Reading, fragment
from cityhub.connectors.ngsi_ld.models import mapping_for
from cityhub.connectors.ngsi_ld.notification import notification_body, upsert_body
from cityhub.connectors.sinks.base import Item
from cityhub.connectors.sinks.encodings import EncodedBody, EncodedMessage, EncodingContext
from cityhub.schemas.registry import DeviceType
from cityhub.schemas.timefmt import rfc3339

LD_JSON: Final = "application/ld+json"
PERSONAL: Final = "personal"

DeviceTypeOf = Callable[[str, str], DeviceType | None]
"""``(tenant, type id) -> DeviceType | None``: the registry view's ``device_type``."""


def _point(doc: dict[str, Any]) -> GeoPoint | None:
    location = doc.get("location")
    if not isinstance(location, dict):
        return None
    lon, lat = location.get("longitude"), location.get("latitude")
    if not isinstance(lon, int | float) or not isinstance(lat, int | float):
        return None
    alt = location.get("altitude")
    return GeoPoint(float(lon), float(lat), float(alt) if isinstance(alt, int | float) else None)


def item_fragment(
    item: Item, source: str, device_type_of: DeviceTypeOf | None
) -> dict[str, Any] | None:
    """The entity fragment of one item, or None for one that shows nothing (module docstring);
    an item that is not the JSON object it should be is None too."""
    try:
        doc = orjson.loads(item.value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    if doc.get("classification") == PERSONAL or doc.get("data_subject") is not None:
        return None
    tenant, device_id = doc.get("tenant"), doc.get("device_id")
    if not isinstance(tenant, str) or not isinstance(device_id, str):
        return None
    if source == "aggregates":
        if doc.get("grouping") != "device":
            return None
        value, observed_at = doc.get("last"), doc.get("last_observed_at")
    else:
        value, observed_at = doc.get("value"), doc.get("observed_at")
    quantity, unit = doc.get("quantity"), doc.get("unit")
    if (
        not isinstance(value, int | float | str | bool)
        or not isinstance(observed_at, str)
        or not isinstance(quantity, str)
    ):
        return None
    type_id = doc.get("device_type")
    device_type = None
    if device_type_of is not None and isinstance(type_id, str):
        device_type = device_type_of(tenant, type_id)
    device = DeviceFacts(tenant, device_id, device_id, mapping_for(device_type), _point(doc))
    reading = Reading(quantity, value, unit if isinstance(unit, str) else None, observed_at)
    out = fragment(device, reading)
    if device.location is not None:
        point = device.location
        coordinates = [point.longitude, point.latitude]
        if point.altitude is not None:
            coordinates.append(point.altitude)
        out["location"] = {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": coordinates},
        }
    return out


def batch_key(items: Sequence[Item]) -> str:
    """What tells a batch apart, the same on every attempt of it: its records' places."""
    places = ",".join(f"{i.partition}:{i.offset}" for i in items)
    return hashlib.sha256(places.encode()).hexdigest()


class NgsiLdEncodingBase:
    """What the two NGSI-LD encodings share (webhook batches only)."""

    kinds: frozenset[str] | None = frozenset({"webhook"})
    media_type = LD_JSON

    def __init__(
        self,
        device_type_of: DeviceTypeOf | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._device_type_of = device_type_of
        self._clock = clock

    def use_device_types(self, device_type_of: DeviceTypeOf | None) -> None:
        """Name each device's model by its type (the registry view's ``device_type``)."""
        self._device_type_of = device_type_of

    def _fragments(self, items: Sequence[Item], context: EncodingContext) -> list[dict[str, Any]]:
        found = (item_fragment(i, context.source, self._device_type_of) for i in items)
        return [f for f in found if f is not None]

    def _body(self, items: Sequence[Item], context: EncodingContext) -> Any:
        raise NotImplementedError

    def encode_batch(self, items: Sequence[Item], context: EncodingContext) -> EncodedBody:
        return EncodedBody(LD_JSON, orjson.dumps(self._body(items, context)))

    def batch_overhead(self, context: EncodingContext) -> int:
        return len(orjson.dumps(self._body((), context)))

    def item_size(self, item: Item, context: EncodingContext) -> int:
        # Exact for the Notification (fragment and comma); an upper bound for an upsert
        # array, whose items each carry the inline context too.
        return len(orjson.dumps(self._body([item], context))) - self.batch_overhead(context) + 1

    def encode_message(self, item: Item, context: EncodingContext) -> EncodedMessage:
        raise TypeError(f"{self.__class__.__name__} encodes webhook batches only")


class NgsiLdNotification(NgsiLdEncodingBase):
    """``ngsi-ld``: a Notification per batch."""

    name = "ngsi-ld"

    def __repr__(self) -> str:
        return "NgsiLdNotification()"

    def _body(self, items: Sequence[Item], context: EncodingContext) -> Any:
        return notification_body(
            tenant=context.tenant,
            subscription_id=context.subscription_id,
            batch_key=batch_key(items),
            notified_at=rfc3339(self._clock()),
            fragments=self._fragments(items, context),
        )


class NgsiLdUpsert(NgsiLdEncodingBase):
    """``ngsi-ld-upsert``: a batch upsert's array of entity fragments per batch."""

    name = "ngsi-ld-upsert"

    def __repr__(self) -> str:
        return "NgsiLdUpsert()"

    def _body(self, items: Sequence[Item], context: EncodingContext) -> Any:
        return upsert_body(self._fragments(items, context))
