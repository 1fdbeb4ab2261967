"""Stable numeric ``@iot.id`` values of SensorThings entities.

Pure. SensorThings leaves the type of an id to the service, but clients (and the OGC test
suite, which reads every id as a Java ``long``) expect numbers, and cityhub's own keys are
strings or UUIDs. So:

- a registry-backed entity's id is the first 6 bytes of BLAKE2b over ``<kind>:<key>`` (48 bits,
  exact in JavaScript's numbers too): ``entity_id("Thing", "air-1")``. The keys: Thing,
  Location, HistoricalLocation and FeatureOfInterest: the device id; Sensor:
  ``<tenant>/<device type>``; ObservedProperty: the quantity; Datastream:
  ``<device id>:<quantity>``. A collision between two visible entities of one kind is logged
  and the first one keeps the id (at 100 000 devices the odds are about 2 in 100 000);
- an Observation's id is the top 63 bits of its event id (a UUID), so that it maps back to a
  range of UUIDs the primary key index finds, and orders as the event ids do. Above 2**53 a
  JavaScript client loses digits of it: follow ``@iot.selfLink`` there, never rebuild URLs.
"""

from __future__ import annotations

import hashlib
import uuid

ENTITY_ID_BITS = 48
OBSERVATION_ID_BITS = 63
MAX_OBSERVATION_ID = (1 << OBSERVATION_ID_BITS) - 1


def entity_id(kind: str, key: str) -> int:
    """The id of a registry-backed entity of ``kind`` (singular: ``Thing``) with ``key``."""
    digest = hashlib.blake2b(f"{kind}:{key}".encode(), digest_size=ENTITY_ID_BITS // 8).digest()
    return int.from_bytes(digest, "big")


def observation_id(event_id: str | uuid.UUID) -> int:
    """The id of the observation with this event id: the UUID's top 63 bits."""
    value = event_id.int if isinstance(event_id, uuid.UUID) else uuid.UUID(event_id).int
    return value >> (128 - OBSERVATION_ID_BITS)


def event_id_bounds(observation: int) -> tuple[uuid.UUID, uuid.UUID]:
    """The smallest and largest event id whose observation id is ``observation`` (inclusive);
    ValueError if it is not a valid observation id."""
    if not 0 <= observation <= MAX_OBSERVATION_ID:
        raise ValueError("not an observation id")
    shift = 128 - OBSERVATION_ID_BITS
    low = observation << shift
    return uuid.UUID(int=low), uuid.UUID(int=low | ((1 << shift) - 1))
