"""The window aggregate: count, min, max, sum, mean and last of one quantity of one device (or of
all devices of one area) over one tumbling window, as written to ``cityhub.aggregates``. JSON
Schema: ``schemas/json/aggregate.schema.json``; the windowing that produces it:
``streams/windows.py``.

A window's aggregate may be written more than once: ``revision`` 0 when the window closes, then
one more for each late observation that changes it within the grace period. Every revision
carries the same ``aggregate_id``, so the record with the highest revision of an id is the
current one, and a replay (same id, same revision, same content) is recognisable.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import orjson

AGGREGATE_VERSION = 1

Grouping = Literal["device", "area"]

# Fixed namespace for aggregate ids (uuid5 over the window's identity). Never change it: that
# would change every id and make replays unrecognisable.
AGGREGATE_ID_NAMESPACE = uuid.UUID("b3f0e6a2-4c1d-5e8f-9a7b-2d6c8e1f0a34")
_NAMESPACE_BYTES = AGGREGATE_ID_NAMESPACE.bytes


def aggregate_id(
    grouping: str, key: str, quantity: str, unit: str | None, size_s: int, start_us: int
) -> str:
    """Deterministic id (a UUIDv5) of one window: the same on every worker, in every replay and
    for every revision. ``start_us`` is the window start in microseconds since the epoch."""
    # orjson of a list is unambiguous (no separator can be forged by a device id or unit).
    identity = orjson.dumps([grouping, key, quantity, unit, size_s, start_us])
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + identity).digest()[:16]  # noqa: S324 - UUIDv5 is SHA-1
    )
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(digest)))


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One tumbling window's statistics over the numeric values of one group."""

    aggregate_id: str
    """Same for every revision of this window (see :func:`aggregate_id`)."""
    grouping: Grouping
    """``device``: one device's values; ``area``: the values of every device of one area."""
    key: str
    """The device id or the area, as ``grouping`` says."""
    quantity: str
    unit: str | None
    """Part of the group: values in different units are never mixed in one aggregate."""
    window_size: int
    """Seconds; windows are aligned to the Unix epoch (UTC)."""
    window_start: str
    """RFC 3339 UTC, inclusive."""
    window_end: str
    """RFC 3339 UTC, exclusive."""
    count: int
    min: float
    max: float
    sum: float
    """Correctly rounded sum of the values, independent of the order they came in."""
    mean: float
    """``sum / count``."""
    last: float
    """The value observed last (greatest ``observed_at``; on a tie, the greatest event id)."""
    last_observed_at: str
    last_event_id: str
    revision: int
    """0 when the window closed; +1 for each late re-emission within the grace period."""
    version: int = AGGREGATE_VERSION

    def kafka_key(self) -> bytes:
        """The record key on ``cityhub.aggregates``: grouping, key, quantity and window size, so
        that every window of one series goes to one partition, in order."""
        return f"{self.grouping}/{self.key}/{self.quantity}/{self.window_size}".encode()

    def to_json(self) -> bytes:
        """Serialise for Kafka."""
        return orjson.dumps(self)

    def to_dict(self) -> dict[str, Any]:
        return orjson.loads(self.to_json())  # type: ignore[no-any-return]
