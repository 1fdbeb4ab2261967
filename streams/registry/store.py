"""Where the registry's records live: the compacted ``<prefix>.registry`` topic.

``RegistryStore`` produces records (keyed by ``record_key``, JSON values, tombstones to delete)
and tails the topic from the beginning, without a consumer group, into a ``RegistryView``: every
instance holds the whole registry, and a restart rebuilds it. ``put`` and ``delete`` return once
the local view has applied the write (read-your-writes), so the caller's next read sees it.

``InMemoryRegistryStore`` has the same interface over a view and a counter, for tests that need
no Kafka (the service's, the API's). Both are the generic ones of ``streams/compacted.py``
with the registry's topic, view, key and gauges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from prometheus_client import Counter, Gauge

from cityhub.schemas.registry import Record, record_key
from cityhub.streams.compacted_stores import InMemorySpecStore, SpecStore, TopicSpec
from cityhub.streams.registry.view import RegistryView

RECORDS = Gauge("cityhub_registry_records", "Records in the registry view, by kind.", ["kind"])
DEVICES = Gauge("cityhub_registry_devices", "Registered devices, by tenant.", ["tenant"])
APPLIED = Counter("cityhub_registry_apply", "Registry topic records applied to the in-memory view.")
MALFORMED = Counter(
    "cityhub_registry_malformed", "Registry topic records skipped because they were malformed."
)


class RecordStore(Protocol):
    """What the registry service needs from a store."""

    @property
    def view(self) -> RegistryView:
        """The materialised registry (read it, never apply to it)."""
        ...

    @property
    def ready(self) -> bool:
        """True once the view caught up with the topic as it was at start."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def put(self, record: Record) -> int:
        """Write a record; return its offset once the view has applied it."""
        ...

    async def put_many(self, records: Sequence[Record]) -> int:
        """Write records in order; return the last offset (-1 if none) once the view has
        applied them all. One wait for the whole batch, not one per record."""
        ...

    async def delete(self, key: str) -> int:
        """Write a tombstone for ``key``; return its offset once the view has applied it."""
        ...


def _describe(view: RegistryView) -> str:
    return ", ".join(f"{n} {k}" for k, n in view.counts_by_kind().items())


def _update_gauges(view: RegistryView, applied: int, malformed: int) -> None:
    if applied:
        APPLIED.inc(applied)
    if malformed:
        MALFORMED.inc(malformed)
    for kind, n in view.counts_by_kind().items():
        RECORDS.labels(kind=kind).set(n)
    for tenant, n in view.device_counts().items():
        DEVICES.labels(tenant=tenant).set(n)


REGISTRY_TOPIC: TopicSpec[RegistryView, Record] = TopicSpec(
    topic=lambda topics: topics.registry,
    new_view=RegistryView,
    key_of=record_key,
    what="registry",
    client_id="cityhub-registry",
    on_applied=_update_gauges,
    describe=_describe,
)


class RegistryStore(SpecStore[RegistryView, Record]):
    """The registry on Kafka: a producer for writes, a group-less consumer tailing the topic."""

    spec = REGISTRY_TOPIC


class InMemoryRegistryStore(InMemorySpecStore[RegistryView, Record]):
    """A ``RecordStore`` without Kafka: writes apply to the view at once, offsets count up.

    For tests of the service, the API and the normaliser. Records go through their JSON, as on
    the topic, so a test sees what an instance reading Kafka would see.
    """

    spec = REGISTRY_TOPIC


__all__ = [
    "InMemoryRegistryStore",
    "RecordStore",
    "RegistryStore",
]
