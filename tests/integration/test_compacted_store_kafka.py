"""The compacted-store contract (``tests/contracts/compacted_store.py``) against the Kafka stores
on the local stack: instances tailing one compacted topic of a fresh topic prefix."""

from __future__ import annotations

import asyncio
import time
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


async def test_the_view_says_when_it_last_held_all_of_its_topic() -> None:
    """What the privacy gate's freshness rests on: an idle view keeps saying it is caught up
    (empty fetches carry the high watermark), and a record written is applied before it does
    again."""
    made = KafkaBackend(REGISTRY)
    try:
        store: Any = await made.open()
        assert store.caught_up_at > 0
        first = store.caught_up_at
        await asyncio.sleep(1.5)
        assert store.caught_up_at > first  # idle, and still known to be current
        await made.write_raw("tenant/fresh", b"not a record")
        before = time.time()
        deadline = before + 5
        while store.caught_up_at <= before and time.time() < deadline:
            await asyncio.sleep(0.05)
        assert store.caught_up_at > before
        assert store.view.malformed == 1  # ... and the record was applied by then
    finally:
        await made.close()
