"""The contract of a compacted-topic store (``streams/compacted.py``) and of the registry and
subscriptions stores built on it: the same tests against the in-memory stores
(``tests/unit/test_compacted_store_memory.py``) and the Kafka stores
(``tests/integration/test_compacted_store_kafka.py``), each test module giving the suite its
``backend`` fixture (the pattern of faststream's ``tests/brokers/base/``).

A backend opens store instances on one topic (as API instances and workers share the Kafka
topic) and writes raw records from outside any store (another producer: malformed records).
Every test runs for both kinds of record, registry tenants and subscriptions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
from pydantic import BaseModel

from cityhub.schemas.registry import Tenant
from cityhub.schemas.registry import record_key as registry_key
from cityhub.schemas.subscription import SubscriptionSpec, build_subscription
from cityhub.schemas.subscription import record_key as subscription_key
from cityhub.streams.registry.view import RegistryView
from cityhub.streams.service_errors import Unavailable
from cityhub.streams.subscriptions.view import SubscriptionView

TS = "2026-01-01T00:00:00.000Z"
WAIT_S = 10.0
"""How long a store may take to see another instance's write (Kafka round trips)."""


class Store(Protocol):
    """What the suite uses of a store: the interface both implementations share."""

    @property
    def view(self) -> Any: ...

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def put(self, record: Any) -> int: ...

    async def put_many(self, records: Any) -> int: ...

    async def delete(self, key: str) -> int: ...

    async def wait_beyond(self, offset: int, timeout: float) -> bool: ...


@dataclass(frozen=True)
class Kind:
    """A kind of record: how the suite makes record ``i`` at a version and finds it again."""

    name: str
    record: Callable[[int, int], BaseModel]
    key: Callable[[int], str]
    version_in: Callable[[Any, int], int | None]
    """The version of record ``i`` the view holds (None: absent)."""


def _tenant(i: int, version: int) -> BaseModel:
    return Tenant(id=f"t{i}", name=f"v{version}", created_at=TS, updated_at=TS)


def _tenant_version(view: RegistryView, i: int) -> int | None:
    found = view.tenant(f"t{i}")
    return None if found is None else int(found.name[1:])


def _subscription(i: int, version: int) -> BaseModel:
    spec = SubscriptionSpec.model_validate(
        {"id": f"s{i}", "name": f"v{version}", "delivery": {"kind": "kafka"}}
    )
    return build_subscription(spec, tenant="acme", now=TS)[0]


def _subscription_version(view: SubscriptionView, i: int) -> int | None:
    found = view.get("acme", f"s{i}")
    return None if found is None else int(found.name[1:])


REGISTRY = Kind(
    "registry",
    _tenant,
    lambda i: registry_key(Tenant(id=f"t{i}", name="k", created_at=TS, updated_at=TS)),
    _tenant_version,
)
SUBSCRIPTIONS = Kind(
    "subscriptions",
    _subscription,
    lambda i: subscription_key(_subscription(i, 0)),  # type: ignore[arg-type]
    _subscription_version,
)
KINDS = [REGISTRY, SUBSCRIPTIONS]


class Backend(Protocol):
    kind: Kind

    async def open(self) -> Store:
        """A new started store instance on the backend's topic."""
        ...

    async def write_raw(self, key: str, value: bytes | None) -> None:
        """Write a record to the topic from outside any store, and return once it is there."""
        ...


class CompactedStoreContract:
    """The suite. A subclass named ``Test...`` gives it a ``backend`` fixture
    (parametrised over ``KINDS``)."""

    async def test_a_write_is_visible_to_the_writers_next_read(self, backend: Backend) -> None:
        store = await backend.open()
        assert store.ready
        for i in range(10):
            offset = await store.put(backend.kind.record(i, 1))
            assert store.view.offset >= offset
            assert backend.kind.version_in(store.view, i) == 1

    async def test_put_many_writes_in_order_and_returns_the_last_offset(
        self, backend: Backend
    ) -> None:
        store = await backend.open()
        first = await store.put(backend.kind.record(0, 1))
        records = [backend.kind.record(i, 2) for i in range(1, 51)]
        last = await store.put_many(records)
        assert last == first + 50
        assert store.view.offset >= last
        assert [backend.kind.version_in(store.view, i) for i in range(51)] == [1] + [2] * 50

    async def test_an_empty_put_many_writes_nothing(self, backend: Backend) -> None:
        store = await backend.open()
        before = store.view.offset
        assert await store.put_many([]) == -1
        assert store.view.offset == before

    async def test_the_last_write_of_a_key_wins(self, backend: Backend) -> None:
        store = await backend.open()
        offsets = [await store.put(backend.kind.record(7, version)) for version in range(1, 6)]
        assert offsets == sorted(offsets)
        assert len(set(offsets)) == 5
        assert backend.kind.version_in(store.view, 7) == 5
        await store.put_many([backend.kind.record(7, 6), backend.kind.record(7, 7)])
        assert backend.kind.version_in(store.view, 7) == 7

    async def test_a_tombstone_deletes(self, backend: Backend) -> None:
        store = await backend.open()
        await store.put(backend.kind.record(1, 1))
        await store.put(backend.kind.record(2, 1))
        offset = await store.delete(backend.kind.key(1))
        assert store.view.offset >= offset
        assert backend.kind.version_in(store.view, 1) is None
        assert backend.kind.version_in(store.view, 2) == 1
        # Deleting what is not there is harmless, and a deleted key can be written again.
        await store.delete(backend.kind.key(99))
        await store.put(backend.kind.record(1, 2))
        assert backend.kind.version_in(store.view, 1) == 2
        assert store.view.malformed == 0

    async def test_a_store_started_later_rebuilds_the_view(self, backend: Backend) -> None:
        first = await backend.open()
        await first.put_many([backend.kind.record(i, 1) for i in range(20)])
        await first.put(backend.kind.record(3, 2))
        await first.delete(backend.kind.key(5))
        second = await backend.open()
        assert second.ready
        assert second.view.offset == first.view.offset
        expected = [backend.kind.version_in(first.view, i) for i in range(20)]
        assert [backend.kind.version_in(second.view, i) for i in range(20)] == expected
        assert expected[3] == 2
        assert expected[5] is None

    async def test_a_restarted_store_catches_up_with_what_it_missed(self, backend: Backend) -> None:
        writer = await backend.open()
        reader = await backend.open()
        await writer.put(backend.kind.record(1, 1))
        assert await reader.wait_beyond(reader.view.offset - 1, WAIT_S)
        await reader.stop()
        assert not reader.ready
        await writer.put(backend.kind.record(1, 2))
        offset = await writer.put(backend.kind.record(2, 1))
        await reader.start()
        assert reader.ready
        assert await reader.wait_beyond(offset - 1, WAIT_S)
        assert backend.kind.version_in(reader.view, 1) == 2
        assert backend.kind.version_in(reader.view, 2) == 1

    async def test_a_stopped_store_refuses_writes(self, backend: Backend) -> None:
        store = await backend.open()
        await store.stop()
        with pytest.raises(Unavailable):
            await store.put(backend.kind.record(1, 1))
        with pytest.raises(Unavailable):
            await store.delete(backend.kind.key(1))

    async def test_wait_beyond_wakes_on_another_instances_write(self, backend: Backend) -> None:
        writer = await backend.open()
        watcher = await backend.open()
        seen = watcher.view.offset
        assert not await watcher.wait_beyond(seen, 0.05)  # nothing written: times out
        offset = await writer.put(backend.kind.record(1, 1))
        assert await watcher.wait_beyond(seen, WAIT_S)
        assert watcher.view.offset >= offset
        assert backend.kind.version_in(watcher.view, 1) == 1
        assert await watcher.wait_beyond(seen, 0)  # already past: no wait

    async def test_malformed_records_are_skipped_and_counted(self, backend: Backend) -> None:
        store = await backend.open()
        await store.put(backend.kind.record(1, 1))
        good = backend.kind.record(2, 1).model_dump_json().encode()
        await backend.write_raw(backend.kind.key(1), b"{broken")
        await backend.write_raw(backend.kind.key(1), b'{"kind": "unheard-of"}')
        await backend.write_raw(backend.kind.key(1), good)  # a record under another's key
        await backend.write_raw("what/ever/else", None)  # a tombstone of no known key
        after = await store.put(backend.kind.record(3, 1))
        assert store.view.offset >= after
        assert store.view.malformed >= 3
        assert backend.kind.version_in(store.view, 1) == 1  # the bad records changed nothing
        assert backend.kind.version_in(store.view, 2) is None
        assert backend.kind.version_in(store.view, 3) == 1
        # A store started now skips them the same way.
        again = await backend.open()
        assert again.view.malformed == store.view.malformed
        assert [backend.kind.version_in(again.view, i) for i in (1, 2, 3)] == [1, None, 1]
