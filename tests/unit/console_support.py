"""Shared set-up of the console's unit tests (no tests here): the API with the console mounted,
over the seeded in-memory registry of ``test_api_support`` and an in-memory sign-out store, and
a browser-like client that keeps the session cookie and sends each form's CSRF token."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.console_settings import ConsoleSettings
from cityhub.schemas.registry import DeviceSpec, Location
from cityhub.schemas.settings import AggregationSettings
from cityhub.streams.aggregation.memory import InMemoryAggregates
from cityhub.streams.aggregation.query import QueryLimits
from cityhub.streams.api.aggregates import AGGREGATES_KEY
from cityhub.streams.api.app import build_api
from cityhub.streams.api.device_health import DEVICE_HEALTH_KEY
from cityhub.streams.console.app import build_console
from cityhub.streams.console.live import LiveObservations
from cityhub.streams.console.services import ConsoleServices
from cityhub.streams.console.session import COOKIE_NAME
from cityhub.streams.console.signouts import InMemorySignOutStore, SignOutRecords
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
    signouts: SignOutRecords
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

    @property
    def app(self) -> web.Application:
        app = self.client.app
        assert app is not None
        return app

    def cookie(self) -> str:
        """This browser's session cookie as it holds it now ("" without one)."""
        for morsel in self.client.session.cookie_jar:
            if morsel.key == COOKIE_NAME:
                return morsel.value
        return ""

    async def copy_get(self, cookie: str, path: str = "/console/devices") -> Page:
        """``path`` of this browser's process from another browser that holds only ``cookie``
        (a copy of a session cookie; none if empty) and keeps nothing it is sent."""
        headers = {"Cookie": f"{COOKIE_NAME}={cookie}"} if cookie else {}
        async with (
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as elsewhere,
            elsewhere.get(
                self.client.make_url(path), allow_redirects=False, headers=headers
            ) as response,
        ):
            return await self._page(response)

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
    signouts: SignOutRecords | None = None,
) -> AsyncIterator[Browser]:
    """The API with the console over tenants acme and beta (devices a-1, a-2 and b-1);
    ``health(registry)`` gives the device-health queries to serve, if any; ``signouts`` the
    sign-out store (default: an in-memory one of its own)."""
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
    browser = _browser(registry, keys, settings or ConsoleSettings(), read, signouts)
    if health is not None:
        browser.app[DEVICE_HEALTH_KEY] = health(store)
    # An empty topic of its own unless one is given: a unit test never reads the stack's
    # Kafka or history store (set before the app starts).
    browser.app[AGGREGATES_KEY] = aggregates or InMemoryAggregates(
        QueryLimits.from_settings(AggregationSettings())
    )
    async with browser.client:
        yield browser
    await store.stop()


@asynccontextmanager
async def another_process(browser: Browser, signouts: SignOutRecords) -> AsyncIterator[Browser]:
    """A second API process beside ``browser``'s, as behind a load balancer: the same registry
    and KEK, its own console with ``signouts`` (give it the first's topic), its own client with
    no cookies of its own."""
    other = _browser(browser.registry, browser.keys, ConsoleSettings(), None, signouts)
    async with other.client:
        yield other


def _browser(
    registry: Registry,
    keys: dict[str, str],
    settings: ConsoleSettings,
    read: Any,
    signouts: SignOutRecords | None,
) -> Browser:
    """The API with the console over ``registry``, on a test client not started yet."""
    subscriptions = Subscriptions(
        InMemorySubscriptionStore(), registry.view, resolver=public_resolver
    )
    live = LiveObservations(
        read or _no_reader,
        per_session=settings.live_streams_per_session,
        total=settings.live_streams,
        buffer=settings.live_buffer,
        idle_stop_seconds=0.05,
    )
    signouts = signouts if signouts is not None else InMemorySignOutStore()
    services = ConsoleServices(
        registry=registry, signouts=signouts, subscriptions=subscriptions, live=live
    )
    console = build_console(services, settings, KEK)
    app = build_api(registry, subscriptions=subscriptions, console=console)
    return Browser(TestClient(TestServer(app)), registry, keys, live, signouts)
