"""The registry store on the real Kafka with the registry's services: a later instance rebuilds a
registry of 500 devices, keys and tombstones, and the topic is compacted. Each test has its own
topic prefix. What every compacted store promises (read-your-writes, tombstones, malformed
records) is the contract suite's (``tests/contracts/compacted_store.py``)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec, Role, Tenant, TenantSpec
from cityhub.schemas.settings import Settings
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

pytestmark = pytest.mark.integration

TS = "2025-01-01T00:00:00.000Z"


@pytest.fixture
def settings() -> Settings:
    base = Settings()
    prefix = f"test-registry-{uuid.uuid4().hex[:10]}"
    return base.model_copy(update={"kafka": base.kafka.model_copy(update={"topic_prefix": prefix})})


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RegistryStore]:
    s = RegistryStore(settings)
    await s.start()
    yield s
    await s.stop()


def tenant(tenant_id: str, name: str = "T") -> Tenant:
    return Tenant(id=tenant_id, name=name, created_at=TS, updated_at=TS)


async def test_a_store_started_later_sees_everything(
    settings: Settings, store: RegistryStore
) -> None:
    registry = Registry(store)
    admin = Principal.system()
    await registry.create_tenant(admin, TenantSpec(id="city", name="City"))
    _, secret = await registry.create_key(admin, "city", Role.OPERATOR, "ops")
    await registry.create_type(admin, "city", DeviceTypeSpec(id="aq", name="AQ"))
    rows = [
        DeviceSpec(id=f"d-{i:04d}", name="d", type="aq", dev_eui=f"{i:016x}") for i in range(500)
    ]
    report = await registry.import_devices(admin, "city", rows)
    assert report.created == 500
    await registry.delete_device(admin, "city", "d-0007")

    again = RegistryStore(settings, client_id="cityhub-registry-second")
    await again.start()
    try:
        assert again.ready
        assert again.view.offset == store.view.offset
        assert again.view.counts_by_kind() == store.view.counts_by_kind()
        assert again.view.device_count("city") == 499
        assert again.view.device_by_id("d-0007") is None
        entry = again.view.device_by_eui(f"{42:016x}")
        assert entry is not None
        assert entry.id == "d-0042"
        who = Registry(again).authenticate(secret)
        assert who.tenant == "city"
        # Writes through one instance reach the other's view too.
        await registry.create_device(admin, "city", DeviceSpec(id="late", name="l", type="aq"))
        for _ in range(100):
            if again.view.device_by_id("late") is not None:
                break
            await asyncio.sleep(0.05)
        assert again.view.device_by_id("late") is not None
    finally:
        await again.stop()


async def test_the_registry_topic_is_compacted(settings: Settings, store: RegistryStore) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, store.topic)]
        )
        entries = _configs(described)
        topics = await admin.describe_topics([store.topic])
    finally:
        await admin.close()
    assert entries["cleanup.policy"] == "compact"
    assert float(entries["min.cleanable.dirty.ratio"]) <= 0.5
    assert int(entries["segment.ms"]) <= 24 * 3600 * 1000
    assert len(topics[0]["partitions"]) == 1


def _configs(described: list[Any]) -> dict[str, str]:
    """Topic config names and values from aiokafka's DescribeConfigs response."""
    response = described[0]
    configs: dict[str, str] = {}
    for resource in response.resources:
        for entry in resource[4]:
            configs[entry[0]] = entry[1]
    return configs


def test_records_are_json_with_their_kind() -> None:
    assert json.loads(tenant("x").model_dump_json())["kind"] == "tenant"
