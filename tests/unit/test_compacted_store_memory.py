"""The compacted-store contract (``tests/contracts/compacted_store.py``) against the in-memory
stores: instances sharing one ``InMemoryTopic``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cityhub.streams.compacted import InMemoryTopic
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore
from tests.contracts.compacted_store import KINDS, REGISTRY, CompactedStoreContract, Kind, Store


class MemoryBackend:
    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.topic = InMemoryTopic()
        self.stores: list[Any] = []

    async def open(self) -> Store:
        store_class: Any = (
            InMemoryRegistryStore if self.kind is REGISTRY else InMemorySubscriptionStore
        )
        store = store_class(topic=self.topic)
        await store.start()
        self.stores.append(store)
        return store  # type: ignore[no-any-return]

    async def write_raw(self, key: str, value: bytes | None) -> None:
        self.topic.append(key, value)


@pytest.fixture(params=KINDS, ids=lambda kind: kind.name)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[MemoryBackend]:
    made = MemoryBackend(request.param)
    yield made
    for store in made.stores:
        await store.stop()


class TestInMemoryCompactedStore(CompactedStoreContract):
    pass


async def test_a_store_on_its_own_topic_keeps_the_log_of_its_writes() -> None:
    store = InMemoryRegistryStore()
    await store.put(REGISTRY.record(1, 1))
    await store.delete(REGISTRY.key(1))
    assert [key for key, _ in store.log] == [REGISTRY.key(1)] * 2
    assert store.log[1][1] is None
