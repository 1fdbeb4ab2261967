"""Shared set-up of the API's unit tests (no tests here): the API over an in-memory registry
with two tenants, a device type in each, and a key of every role."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from cityhub.schemas.registry import DeviceTypeSpec, Role, TenantSpec
from cityhub.streams.api.app import build_api
from cityhub.streams.delivery.sse import LiveStreams
from cityhub.streams.registry.devices import DEFAULT_DEVICES_PER_TENANT
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore

APP_KEY = "8A1C5F3B2D7E4A6C9B0F1E2D3C4B5A69"
"""A LoRaWAN app key that must never come back in any response."""


@dataclass
class Api:
    client: TestClient[Any, Any]
    registry: Registry
    store: InMemoryRegistryStore
    keys: dict[str, str]
    """Secrets by name: admin, op_a, op_b, sub_a, sub_b."""
    subscriptions: Subscriptions

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def call(
        self, method: str, path: str, who: str | None = "op_a", **kw: Any
    ) -> tuple[int, Any, CIMultiDict[str]]:
        """(status, parsed JSON body or None, headers) of one request as ``who``."""
        headers = dict(kw.pop("headers", {}))
        if who is not None:
            headers.update(self.auth(who))
        async with self.client.request(method, path, headers=headers, **kw) as response:
            text = await response.text()
            doc = None
            if response.content_type in {"application/json", "application/problem+json"}:
                doc = await response.json(content_type=None)
            for secret in self.keys.values():
                if secret not in (doc or {}).get("secret", ""):
                    assert secret not in text, "a key secret leaked into a response"
            assert APP_KEY.lower() not in text.lower(), "an app key leaked into a response"
            return response.status, doc, CIMultiDict(response.headers)


async def seed(registry: Registry) -> dict[str, str]:
    """Tenants acme and beta, device type ``th`` in each, and keys of every role."""
    system = Principal.system()
    keys: dict[str, str] = {}
    for tenant in ("acme", "beta"):
        await registry.create_tenant(system, TenantSpec(id=tenant, name=tenant.title()))
        await registry.create_type(system, tenant, DeviceTypeSpec(id="th", name="Thermo"))
    for name, tenant, role in (
        ("admin", "acme", Role.ADMIN),
        ("op_a", "acme", Role.OPERATOR),
        ("op_b", "beta", Role.OPERATOR),
        ("sub_a", "acme", Role.SUBSCRIBER),
        ("sub_b", "beta", Role.SUBSCRIBER),
    ):
        _, secret = await registry.create_key(system, tenant, role, name)
        keys[name] = secret
    return keys


@asynccontextmanager
async def seeded_registry(
    devices_per_tenant: int = DEFAULT_DEVICES_PER_TENANT,
) -> AsyncIterator[tuple[Registry, InMemoryRegistryStore, dict[str, str]]]:
    """A registry over a started in-memory store, seeded (``seed``): the registry, its store
    and the keys' secrets by name; the store is stopped at the end."""
    store = InMemoryRegistryStore()
    await store.start()
    try:
        registry = Registry(store, devices_per_tenant=devices_per_tenant)
        yield registry, store, await seed(registry)
    finally:
        await store.stop()


async def public_resolver(host: str, port: int) -> Sequence[str]:
    """Every name resolves to one public address (no DNS in unit tests)."""
    return ["93.184.216.34"]


@asynccontextmanager
async def running_api(
    *,
    max_body_bytes: int = 64 * 1024,
    max_import_bytes: int = 256 * 1024,
    live: LiveStreams | None = None,
    devices_per_tenant: int = DEFAULT_DEVICES_PER_TENANT,
) -> AsyncIterator[Api]:
    """The API on a test server over a seeded in-memory registry and in-memory subscriptions
    (webhook host names resolve to a public address; IP literals are checked as they are), and
    ``live`` serving its live streams, if given."""
    async with seeded_registry(devices_per_tenant) as (registry, store, keys):
        subscriptions = Subscriptions(
            InMemorySubscriptionStore(), registry.view, resolver=public_resolver
        )
        app = build_api(
            registry,
            max_body_bytes=max_body_bytes,
            max_import_bytes=max_import_bytes,
            subscriptions=subscriptions,
            live=live,
        )
        async with TestClient(TestServer(app)) as client:
            yield Api(client, registry, store, keys, subscriptions)


def device(device_id: str, **fields: Any) -> dict[str, Any]:
    """A valid device body of type ``th``."""
    doc: dict[str, Any] = {"id": device_id, "name": device_id.title(), "type": "th"}
    doc.update(fields)
    return doc
