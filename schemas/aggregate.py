"""The window aggregate: count, min, max, sum, mean and last of one quantity of one device (or of
all devices of one area) over one tumbling window, as written to ``cityhub.aggregates``. JSON
Schema: ``schemas/json/aggregate.schema.json``; the windowing that produces it:
``streams/aggregation/windows.py``.

A window's aggregate may be written more than once: ``revision`` 0 when the window closes, then
one more for each late observation that changes it within the grace period. Every revision
carries the same ``aggregate_id``, so the record with the highest revision of an id is the
current one, and a replay (same id, same revision, same content) is recognisable.

Privacy: an aggregate carries the ``tenant`` of its devices and the most restrictive
``classification`` of the observations in it (see :func:`most_restrictive`), so that the
subscription filter's tenant rule applies to aggregates as it does to observations. No
aggregate mixes tenants: the tenant is part of every group, device groups included (a device
moved to another tenant within a window gives one aggregate per tenant).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from cityhub.schemas.timefmt import parse_rfc3339

AGGREGATE_VERSION = 3
"""3: coverage (``readings``, ``flagged``, ``expected``, ``coverage``); the statistics may be
null when every reading was flagged and flagged ones are kept out of them."""

MAX_WINDOW_SECONDS = 366 * 24 * 3600
"""The longest window (366 days). With the instants that ``cityhub.schemas.timefmt`` takes (up
to 2100), every window's end stays far inside what datetime and RFC 3339 can hold."""

Grouping = Literal["device", "area"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)

# Fixed namespace for aggregate ids (uuid5 over the window's identity). Never change it: that
# would change every id and make replays unrecognisable.
AGGREGATE_ID_NAMESPACE = uuid.UUID("b3f0e6a2-4c1d-5e8f-9a7b-2d6c8e1f0a34")
_NAMESPACE_BYTES = AGGREGATE_ID_NAMESPACE.bytes


_RESTRICTIVENESS = {"public": 0, None: 1, "internal": 2, "personal": 3}
"""How restrictive a classification is. An unclassified observation (None) is below
``internal``: the tenant rule shows it to its own tenant only, as ``internal``; but above
``public``, so that one unclassified observation keeps an otherwise public window from other
tenants (None lowest would publish it inside a ``public`` aggregate)."""


def restrictiveness(classification: str | None) -> tuple[int, str]:
    """Sort key of a classification, least restrictive first; a value cityhub does not know
    ranks above ``personal`` (ties between unknown ones by name, so the order is total)."""
    rank = _RESTRICTIVENESS.get(classification)
    if rank is None:
        return (4, str(classification))
    return (rank, "")


def most_restrictive(a: str | None, b: str | None) -> str | None:
    """The more restrictive of two classifications (order: public < None < internal <
    personal < any unknown value); commutative and associative, so a window's classification
    does not depend on the order its observations arrived in."""
    if a == b:
        return a
    return a if restrictiveness(a) >= restrictiveness(b) else b


def aggregate_id(
    grouping: str,
    tenant: str | None,
    key: str,
    quantity: str,
    unit: str | None,
    size_s: int,
    start_us: int,
) -> str:
    """Deterministic id (a UUIDv5) of one window: the same on every worker, in every replay and
    for every revision. ``start_us`` is the window start in microseconds since the epoch."""
    # orjson of a list is unambiguous (no separator can be forged by a device id or unit).
    identity = orjson.dumps([grouping, tenant, key, quantity, unit, size_s, start_us])
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
    tenant: str | None
    """The tenant owning the devices (part of the group); None for unregistered devices, whose
    aggregates (device grouping only) no subscription sees."""
    classification: str | None
    """The most restrictive classification of the observations counted (see
    :func:`most_restrictive`)."""
    device_id: str | None
    """Device grouping: the device; area grouping: None."""
    area: str | None
    """Area grouping: the area; device grouping: the area of the device's last observation in
    the window (the one ``last`` comes from), None when it had none."""
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
    """The readings in min, max, sum and mean: every reading, or (with
    ``aggregation.exclude_flagged``) those without a quality flag; 0 when none is left."""
    min: float | None
    max: float | None
    sum: float | None
    """Correctly rounded sum of the values, independent of the order they came in."""
    mean: float | None
    """``sum / count``; min, max, sum and mean are None when ``count`` is 0."""
    last: float
    """The value observed last (greatest ``observed_at``; on a tie, the greatest event id)."""
    last_observed_at: str
    last_event_id: str
    revision: int
    """0 when the window closed; +1 for each late re-emission within the grace period."""
    readings: int = 0
    """Every distinct numeric reading of the window, flagged ones included."""
    flagged: int = 0
    """The readings that carry at least one quality flag."""
    expected: float | None = None
    """The readings the devices' expected reporting intervals promised over the window (see
    ``cityhub.streams.aggregation.coverage``); None when nothing is expected."""
    coverage: float | None = None
    """``readings / expected``, at most 1; None when ``expected`` is None."""
    version: int = AGGREGATE_VERSION

    def kafka_key(self) -> bytes:
        """The record key on ``cityhub.aggregates``: the group, ``device/<device id>`` or
        ``area/<tenant>/<area>`` (tenant ids hold no ``/``; an area without a tenant, which
        cityhub does not produce, gets an empty one). Every quantity, size and window of one
        group goes to one partition, in order, so a reader of one group scans one partition."""
        if self.grouping == "device":
            return f"device/{self.key}".encode()
        return f"area/{self.tenant or ''}/{self.key}".encode()

    def timestamp_ms(self) -> int:
        """The Kafka record timestamp: the window end, in milliseconds since the epoch.

        Computed from the start and the size: the start of a window is at or before one of its
        observations, inside the range that ``parse_rfc3339`` takes, while the end may pass it
        (a window that starts in 2099 ends in 2100, at most ``MAX_WINDOW_SECONDS`` later)."""
        start = (parse_rfc3339(self.window_start) - _EPOCH) // _ONE_MS
        return start + self.window_size * 1000

    def to_json(self) -> bytes:
        """Serialise for Kafka."""
        return orjson.dumps(self)

    def to_dict(self) -> dict[str, Any]:
        return orjson.loads(self.to_json())  # type: ignore[no-any-return]
