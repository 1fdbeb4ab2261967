"""The canonical observation: one measured quantity of one uplink, as written to
``cityhub.observations``. JSON Schema: ``schemas/json/observation.schema.json``.

The shape maps onto SenML (RFC 8428: ``n`` = quantity, ``u`` = unit, ``v``/``vb``/``vs`` =
value, ``t`` = observed_at) and onto an NGSI-LD Property of the device entity
(``observedAt``, ``unitCode``), so both outside models stay one function away.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import orjson

OBSERVATION_VERSION = 1

# Fixed namespace for event ids: uuid5(namespace, identity) is the same on every worker, in
# every replay, for ever. Changing it changes every id: never do.
EVENT_ID_NAMESPACE = uuid.UUID("5f1c3b1e-8a8e-4b7f-9a51-6c1e0d2f7a10")
_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes

Value = float | int | bool | str


@dataclass(frozen=True, slots=True)
class Gateway:
    """A LoRaWAN gateway that heard the uplink, with its radio quality."""

    id: str
    rssi: float | None = None
    snr: float | None = None


@dataclass(frozen=True, slots=True)
class NetworkMeta:
    """Where the uplink came through: the network server and its LoRaWAN counters."""

    name: str
    """``tts``, ``chirpstack`` or ``mqtt`` (a plain MQTT sensor)."""
    application: str | None = None
    tenant: str | None = None
    f_cnt: int | None = None
    f_port: int | None = None
    gateways: tuple[Gateway, ...] = ()


@dataclass(frozen=True, slots=True)
class Location:
    latitude: float
    longitude: float
    altitude: float | None = None


@dataclass(slots=True)
class Observation:
    """One measured quantity of one uplink.

    Not frozen: a frozen dataclass sets each of these fields through ``object.__setattr__``,
    which was a tenth of the normaliser's time; treat instances as immutable all the same.
    """

    event_id: str
    device_id: str
    dev_eui: str | None
    quantity: str
    """Canonical quantity name, e.g. ``temperature``, ``relative_humidity``, ``pm2_5``."""
    field: str
    """The field as the device or its decoder named it, e.g. ``temperature_1``."""
    value: Value
    unit: str | None
    """SenML / UCUM unit symbol (``Cel``, ``%RH``, ``lx``); None when it is not known."""
    observed_at: str
    received_at: str
    format: str
    network: NetworkMeta
    # Filled by the device registry once it exists; present (empty) from the start so that the
    # schema and downstream consumers do not change when it arrives.
    tenant: str | None = None
    """The registered device's tenant (operator organisation); None when unregistered."""
    device_type: str | None = None
    """The registered device's type id, within its tenant."""
    location: Location | None = None
    area: str | None = None
    tags: tuple[str, ...] = ()
    classification: str | None = None
    registered: bool = True
    """False when the device is not in the registry and unknown devices are let through."""
    extra: dict[str, Any] = dataclass_field(default_factory=dict)
    quality: tuple[str, ...] = ()
    """Quality flags (``schemas.quality.QualityFlag`` names, in that order); empty: none raised.
    The value is kept as sent whatever the flags say; see docs/quality.md."""

    def to_json(self) -> bytes:
        """Serialise for Kafka (orjson serialises the dataclasses natively)."""
        return orjson.dumps(self, option=orjson.OPT_OMIT_MICROSECONDS)

    def to_dict(self) -> dict[str, Any]:
        return orjson.loads(self.to_json())  # type: ignore[no-any-return]


def event_id(identity: str, frame: str, field_name: str) -> str:
    """Deterministic id of one observation.

    ``identity`` is the device (DevEUI where known), ``frame`` tells the uplink apart from the
    device's others (frame counter and observation time), ``field_name`` the quantity within the
    uplink. A replay or a redelivered message therefore carries the same id and an idempotent
    consumer can drop it. One frame heard through two network servers does not (each stamps its
    own receive time): the normaliser's duplicate filter drops the second copy.
    """
    # uuid.uuid5 without building a UUID object: the same bytes, a third of the time (it runs
    # once per observation). tests/unit/test_observation.py checks it equals uuid.uuid5.
    digest = bytearray(
        hashlib.sha1(  # noqa: S324 - UUIDv5 is defined on SHA-1; not a security use
            _NAMESPACE_BYTES + f"{identity}\x1f{frame}\x1f{field_name}".encode()
        ).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_OWN_FIELDS = ("event_id", "quantity", "field", "value", "unit", "observed_at", "quality")
"""What tells the observations of one uplink apart; every other field they share."""
_SHARED_FIELDS = tuple(name for name in Observation.__dataclass_fields__ if name not in _OWN_FIELDS)


def encode_uplink(observations: list[Observation]) -> list[bytes]:
    """``[o.to_json() for o in observations]`` (the same documents, their fields in another
    order) for the observations one uplink made (``observations_from_uplink``, which gives them
    one ``network`` object, and the same device, times and registry fields): what they share is
    encoded once, not once per observation, which halves the cost of encoding an uplink of
    three. An observation whose ``network`` is another object is encoded whole."""
    if len(observations) < 2:
        return [o.to_json() for o in observations]
    first = observations[0]
    shared = orjson.dumps({name: getattr(first, name) for name in _SHARED_FIELDS})[1:]
    network = first.network
    out = []
    for o in observations:
        if o.network is not network:
            out.append(o.to_json())
            continue
        own = orjson.dumps(
            {
                "event_id": o.event_id,
                "quantity": o.quantity,
                "field": o.field,
                "value": o.value,
                "unit": o.unit,
                "observed_at": o.observed_at,
                "quality": o.quality,
            }
        )
        out.append(own[:-1] + b"," + shared)
    return out
