"""A new delivery kind is one file and one registration: a toy kind defined in this module,
registered by this test only, is checked and created through the API, documented in its OpenAPI
document, and delivered to by the delivery manager from the subscription's Kafka topic on the
local stack, with nothing else in cityhub changed."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel, Field

from cityhub.connectors.sinks import InvalidDeliverySpec
from cityhub.connectors.sinks.base import BatchLimits, DeliverySpec, Item, Sink, SpecContext
from cityhub.connectors.sinks.memory import registered
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.subscription import Subscription
from cityhub.streams.api.app import build_api
from cityhub.streams.delivery.manager import DeliveryManager
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore
from cityhub.streams.subscriptions.topics import SubscriptionTopics
from tests.unit.test_api_support import seed

from .hub import BOOTSTRAP
from .subscribers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


# --- the whole plugin: one spec model, one sink, one kind ----------------------------------------


class ToyDelivery(DeliverySpec):
    """Collects items in memory, prefixed by a greeting."""

    kind: Literal["toy"] = "toy"
    greeting: str = Field(default="hello", max_length=20)


class ToySink:
    def __init__(self, greeting: str, received: list[str]) -> None:
        self.batch_limits = BatchLimits(max_items=10)
        self._greeting = greeting
        self._received = received
        self._stopped = False

    async def start(self) -> None:
        return None

    async def send(self, items: Sequence[Item], msg_id: str) -> None:
        if self._stopped:
            raise RuntimeError("stopped")
        self._received += [f"{self._greeting} {json.loads(i.value)['event_id']}" for i in items]

    async def stop(self) -> None:
        self._stopped = True


class ToyKind:
    kind = "toy"
    spec_model: type[DeliverySpec] = ToyDelivery
    public_model: type[BaseModel] = ToyDelivery

    def __init__(self) -> None:
        self.received: list[str] = []

    async def check(self, spec: DeliverySpec, context: SpecContext) -> None:
        assert isinstance(spec, ToyDelivery)
        if spec.greeting == "boo":
            raise InvalidDeliverySpec("rude", errors=[("delivery.greeting", "be polite")])

    def build(self, record: Subscription, settings: Settings) -> Sink:
        assert isinstance(record.delivery, ToyDelivery)
        return ToySink(record.delivery.greeting, self.received)


# --- the test ---------------------------------------------------------------------------------


@pytest.fixture
async def hub() -> AsyncIterator[tuple[TestClient[Any, Any], dict[str, str], ToyKind, Any]]:
    """The API and a delivery manager over one subscriptions store, on the real Kafka, with the
    toy kind registered for this test only."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    toy = ToyKind()
    with registered(toy):
        registry = Registry(InMemoryRegistryStore())
        keys = await seed(registry)
        store = InMemorySubscriptionStore()
        topics = SubscriptionTopics(settings)
        service = Subscriptions(store, registry.view, settings=settings, ensure_topic=topics.ensure)
        manager = DeliveryManager(settings, store)
        runner = asyncio.create_task(manager.run())
        try:
            async with TestClient(TestServer(build_api(registry, subscriptions=service))) as api:
                yield api, keys, toy, (prefix, manager)
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await topics.delete(f"{prefix}.sub.acme.toy-1")
            await topics.close()


async def test_a_toy_kind_is_created_through_the_api_and_delivered_to(
    hub: tuple[TestClient[Any, Any], dict[str, str], ToyKind, Any],
) -> None:
    api, keys, toy, (prefix, manager) = hub
    auth = {"Authorization": f"Bearer {keys['sub_a']}"}
    url = "/api/v1/tenants/acme/subscriptions"

    rude = {"id": "toy-0", "name": "Toy", "delivery": {"kind": "toy", "greeting": "boo"}}
    async with api.post(url, json=rude, headers=auth) as response:
        assert response.status == 400
        problem = await response.json(content_type=None)
        assert problem["errors"] == [{"field": "delivery.greeting", "message": "be polite"}]

    spec = {"id": "toy-1", "name": "Toy", "delivery": {"kind": "toy", "greeting": "hi"}}
    async with api.post(url, json=spec, headers=auth) as response:
        assert response.status == 201, await response.text()
        created = await response.json()
    # Every delivery has an encoding (cityhub's own bodies unless the spec names another).
    assert created["delivery"] == {"kind": "toy", "encoding": "cityhub", "greeting": "hi"}
    assert created["topic"] == f"{prefix}.sub.acme.toy-1"

    async with api.get("/api/v1/openapi.json") as response:
        doc = await response.json()
    create = doc["components"]["schemas"]["SubscriptionSpec"]["properties"]["delivery"]
    assert "toy" in create["discriminator"]["mapping"]

    assert await wait_for(lambda: ("acme", "toy-1") in manager.tasks, 10)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()
    try:
        for n in range(3):
            value = json.dumps({"event_id": f"e{n}"}).encode()
            await producer.send_and_wait(created["topic"], value, key=b"dev-1")
    finally:
        await producer.stop()
    assert await wait_for(lambda: len(toy.received) >= 3, 30), toy.received
    assert toy.received == ["hi e0", "hi e1", "hi e2"]
