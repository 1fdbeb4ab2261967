"""A new webhook subscription's first delivery on a running hub while uplinks flow: it arrives,
signed, within a generous bound of its creation. The bound only catches a regression to the
seconds of a consumer-group wait; ``bench.subscription_latency`` measures the figure (target:
under 1 s)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
from pathlib import Path

import pytest

from cityhub.schemas.registry import NETWORK_DECODER, DeviceSpec, DeviceTypeSpec, Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

from .hub import BOOTSTRAP, Hub, publish
from .subscribers import Api, WebhookReceiver, wait_for

pytestmark = pytest.mark.integration

TENANT, DEVICE_TYPE, DEVICES = "acme", "counter", 10
FIRST_DELIVERY_BOUND_S = 3.0
RATE = 50.0
"""Uplinks per second, for at most ``MAX_UPLINKS / RATE`` seconds."""
MAX_UPLINKS = 6000


async def seed(prefix: str) -> str:
    """A tenant with plain-MQTT counter devices; a subscriber key."""
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    store = RegistryStore(settings)
    await store.start()
    try:
        registry = Registry(store)
        system = Principal.system()
        await registry.create_tenant(system, TenantSpec(id=TENANT, name="Acme"))
        await registry.create_type(
            system, TENANT, DeviceTypeSpec(id=DEVICE_TYPE, name="Counter", decoder=NETWORK_DECODER)
        )
        for i in range(DEVICES):
            spec = DeviceSpec(id=f"lat-{i}", name=f"counter {i}", type=DEVICE_TYPE)
            await registry.create_device(system, TENANT, spec)
        return (await registry.create_key(system, TENANT, Role.SUBSCRIBER, "latency"))[1]
    finally:
        await store.stop()


def uplinks() -> list[tuple[str, bytes]]:
    return [
        (f"cityhub/ingest/lat-{n % DEVICES}", json.dumps({"count": n}).encode())
        for n in range(MAX_UPLINKS)
    ]


def secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode("ascii")


def spec(name: str, receiver: WebhookReceiver) -> dict[str, object]:
    receiver.secrets[name] = secret()  # chosen here: the first POST can be verified at once
    return {
        "id": name,
        "name": name,
        "filter": {"device_types": [DEVICE_TYPE]},
        "delivery": {
            "kind": "webhook",
            "url": receiver.url(name),
            "secret": receiver.secrets[name],
        },
    }


async def test_a_new_subscription_delivers_its_first_item_within_seconds(tmp_path: Path) -> None:
    receiver = WebhookReceiver()
    await receiver.start()
    hub = Hub(tmp_path, extra_env={"CITYHUB_SUBSCRIPTIONS__WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]'})
    flowing: asyncio.Task[int] | None = None
    try:
        key = await seed(hub.prefix)
        await asyncio.to_thread(hub.start)
        flowing = asyncio.create_task(publish(uplinks(), rate=RATE))
        api = Api(hub, {"sub": key})
        # Warm-up: the worker is up and routing once a first subscription receives something.
        await api.subscribe("sub", TENANT, spec("warm-up", receiver))
        assert await wait_for(lambda: receiver.received.get("warm-up"), 90), hub.log_tail()

        created = time.time()
        await api.subscribe("sub", TENANT, spec("fresh", receiver))
        assert await wait_for(lambda: receiver.received.get("fresh"), 30, interval=0.01)
        first = receiver.received["fresh"][0].at - created
        assert first < FIRST_DELIVERY_BOUND_S, f"first delivery after {first:.2f} s"
        assert receiver.bad_signatures == 0
        assert receiver.items("fresh")[0]["device_id"].startswith("lat-")
    finally:
        if flowing is not None:
            flowing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flowing
        await asyncio.to_thread(hub.stop)
        await receiver.stop()
