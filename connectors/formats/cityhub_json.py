"""cityhub's own JSON ingest (format ``cityhub-json``) for plain MQTT sensors, published on
``cityhub/ingest/{device_id}``.

The payload is either

* a JSON **array**: a SenML pack (RFC 8428), resolved as described in
  ``cityhub.connectors.formats.senml``; or
* a JSON **object**, the generic form::

      {
        "time": "2024-05-01T10:00:00Z",   # optional: RFC 3339, or epoch seconds / milliseconds
        "temperature": 21.5,              # any other key is a measured field ...
        "humidity": 40,
        "battery": {"value": 3.6, "unit": "V"},   # ... with an explicit unit if need be
        "gps": {"latitude": 52.37, "longitude": 4.89}  # nested objects become gps.latitude ...
      }

  or, to keep metadata apart from values::

      {"ts": 1714557600000, "firmware": "1.4.2", "values": {"pm2_5": 8.1, "pm10": 14}}

  The time is read from ``time``, else ``ts``, else ``timestamp`` (a number above 1e11 is
  milliseconds); a time that is not RFC 3339 with ASCII digits, or not from 1970-01-01T00:00:00Z
  up to 2100-01-01T00:00:00Z, is an ``InvalidTimestamp`` (a ``SchemaMismatch``). When
  ``values`` is an object, only its fields are measured and the other top-level keys are
  metadata, ignored; otherwise every top-level key except the time keys is a field. Fields
  become measurements by ``measurements_from_fields`` (catalogued names get a quantity and
  unit; numbers, booleans and short strings are kept; lists are skipped).

The device id is the topic's last segment. Without a time in the payload the observation
time is the receive time.
"""

from __future__ import annotations

from typing import Any, Final

from cityhub.connectors.formats.base import Uplink
from cityhub.connectors.formats.jsondoc import (
    canonical_time,
    epoch_time,
    load_json,
    mismatch,
    shown,
)
from cityhub.connectors.formats.senml import ingest_device, resolve_senml
from cityhub.schemas.errors import SchemaMismatch

NAME: Final = "cityhub-json"
TIME_KEYS: Final = ("time", "ts", "timestamp")
VALUES_KEY: Final = "values"


def _observed_at(doc: dict[str, Any]) -> str | None:
    for key in TIME_KEYS:
        value = doc.get(key)
        if value is None:
            continue
        kind = type(value)
        if kind is str:
            return canonical_time(value, key)
        if kind is int or kind is float:
            return epoch_time(value, key)
        raise mismatch(key, "an RFC 3339 string or epoch seconds/milliseconds", value)
    return None


def generic_uplink(device_id: str, doc: dict[str, Any]) -> Uplink:
    """The Uplink of a generic JSON object (shape in the module docstring): its time as
    ``observed_at`` and its fields as ``decoded``. Raises ``SchemaMismatch`` for a bad time or
    a ``values`` that is not an object."""
    values = doc.get(VALUES_KEY)
    if values is not None and type(values) is not dict:
        raise mismatch(VALUES_KEY, "an object", values)
    if values is None:
        values = {k: v for k, v in doc.items() if k not in TIME_KEYS}
    return Uplink(
        network="mqtt",
        device_id=device_id,
        observed_at=_observed_at(doc),
        decoded=values,
    )


class CityhubJsonFormat:
    """The ``cityhub-json`` format: SenML pack or generic object on ``.../{device_id}``."""

    name = NAME

    def partition_key(self, topic: str, payload: bytes) -> str:
        """The topic's last segment (the device id); the whole topic if that is empty."""
        return ingest_device(topic) or topic

    def parse(self, topic: str, payload: bytes, received_at: float) -> Uplink:
        """Parse a SenML pack or a generic object; see the module docstring."""
        device = ingest_device(topic)
        if device is None:
            raise SchemaMismatch(f"topic {shown(topic)}: expected cityhub/ingest/{{device_id}}")
        doc = load_json(payload, "cityhub-json message")
        kind = type(doc)
        if kind is list:
            return Uplink(
                network="mqtt",
                device_id=device,
                measurements=tuple(resolve_senml(doc, received_at)),
            )
        if kind is dict:
            return generic_uplink(device, doc)
        raise SchemaMismatch(
            f"cityhub-json message: expected a JSON object or a SenML array, got {kind.__name__}"
        )
