"""The compacted-store contract (``tests/contracts/compacted_store.py``) against the Kafka stores
on the local stack: instances tailing one compacted topic of a fresh topic prefix."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.subscriptions.store import SubscriptionStore
from tests.contracts.compacted_store import KINDS, REGISTRY, CompactedStoreContract, Kind, Store

from .hub import BOOTSTRAP

pytestmark = pytest.mark.integration


class KafkaBackend:
    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.prefix = f"contract-{uuid.uuid4().hex[:10]}"
        self.settings = Settings(
            kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=self.prefix)
        )
        self.stores: list[Any] = []
        self._producer: AIOKafkaProducer | None = None

    async def open(self) -> Store:
        store_class: Any = RegistryStore if self.kind is REGISTRY else SubscriptionStore
        store = store_class(self.settings, client_id=f"{self.prefix}-{len(self.stores)}")
        await store.start()
        self.stores.append(store)
        return store  # type: ignore[no-any-return]

    async def write_raw(self, key: str, value: bytes | None) -> None:
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
            await self._producer.start()
        topic = self.stores[0].topic
        await self._producer.send_and_wait(topic, value, key=key.encode(), partition=0)

    async def close(self) -> None:
        for store in self.stores:
            await store.stop()
        if self._producer is not None:
            await self._producer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics() if t.startswith(self.prefix)]
            if mine:
                await admin.delete_topics(mine)
        finally:
            await admin.close()


@pytest.fixture(params=KINDS, ids=lambda kind: kind.name)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[KafkaBackend]:
    made = KafkaBackend(request.param)
    yield made
    await made.close()


class TestKafkaCompactedStore(CompactedStoreContract):
    pass
