"""Shared set-up of the console's unit tests (no tests here): the API with the console mounted,
over the seeded in-memory registry of ``test_api_support``, and a browser-like client that keeps
the session cookie and sends each form's CSRF token."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.console_settings import ConsoleSettings
from cityhub.schemas.registry import DeviceSpec, Location
from cityhub.streams.api.aggregates import AGGREGATES_KEY
from cityhub.streams.api.app import build_api
from cityhub.streams.api.device_health import DEVICE_HEALTH_KEY
from cityhub.streams.console.app import build_console
from cityhub.streams.console.live import LiveObservations
from cityhub.streams.console.services import ConsoleServices
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore

from .test_api_support import public_resolver, seed

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
KEK = os.urandom(32)


@dataclass
class Page:
    status: int
    text: str
    headers: Any
    location: str | None


@dataclass
class Browser:
    client: TestClient[Any, Any]
    registry: Registry
    keys: dict[str, str]
    live: LiveObservations
    csrf: str = ""
    batches: list[Any] = field(default_factory=list)

    async def _page(self, response: ClientResponse) -> Page:
        text = await response.text()
        found = _CSRF.search(text)
        if found:
            self.csrf = found.group(1)
        for secret in self.keys.values():
            assert secret not in text, "a key secret was rendered"
            assert secret not in response.headers.get("Location", ""), "a key secret in a URL"
        return Page(response.status, text, response.headers, response.headers.get("Location"))

    async def get(self, path: str, **kw: Any) -> Page:
        async with self.client.get(path, allow_redirects=False, **kw) as response:
            return await self._page(response)

    async def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True, **kw: Any
    ) -> Page:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf", self.csrf)
        async with self.client.post(path, data=form, allow_redirects=False, **kw) as response:
            return await self._page(response)

    async def sign_in(self, who: str) -> Page:
        await self.get("/console/sign-in")
        page = await self.post("/console/sign-in", {"key": self.keys[who]})
        assert page.status == 303, page.text
        await self.get("/console/devices")  # a fresh CSRF token for the signed-in session
        return page


async def _no_reader(deliver: Any, positioned: Any) -> None:
    positioned.set()
    import asyncio

    await asyncio.Event().wait()


@asynccontextmanager
async def running_console(
    settings: ConsoleSettings | None = None,
    read: Any = None,
    health: Any = None,
    aggregates: Any = None,
) -> AsyncIterator[Browser]:
    """The API with the console over tenants acme and beta (devices a-1, a-2 and b-1);
    ``health(registry)`` gives the device-health queries to serve, if any."""
    store = InMemoryRegistryStore()
    await store.start()
    registry = Registry(store)
    keys = await seed(registry)
    system = Principal.system()
    for tenant, device_id, name in (
        ("acme", "a-1", "Dam square"),
        ("acme", "a-2", "Canal bank"),
        ("beta", "b-1", "Beta street"),
    ):
        await registry.create_device(
            system,
            tenant,
            DeviceSpec(
                id=device_id,
                name=name,
                type="th",
                area="centrum",
                tags=["air"],
                location=Location(latitude=52.37, longitude=4.89),
            ),
        )
    subscriptions = Subscriptions(
        InMemorySubscriptionStore(), registry.view, resolver=public_resolver
    )
    settings = settings or ConsoleSettings()
    live = LiveObservations(
        read or _no_reader,
        per_session=settings.live_streams_per_session,
        total=settings.live_streams,
        buffer=settings.live_buffer,
        idle_stop_seconds=0.05,
    )
    services = ConsoleServices(registry=registry, subscriptions=subscriptions, live=live)
    console = build_console(services, settings, KEK)
    app = build_api(registry, subscriptions=subscriptions, console=console)
    if health is not None:
        app[DEVICE_HEALTH_KEY] = health(store)
    if aggregates is not None:  # instead of the Kafka reader, before the app starts
        app[AGGREGATES_KEY] = aggregates
    async with TestClient(TestServer(app)) as client:
        yield Browser(client, registry, keys, live)
    await store.stop()
