"""A device's live page (``/console/devices/{id}/live``) streams only while its session may
still see the device: a revoked key or a deleted device ends it even while observations flow,
with an ``end`` event (the page then closes its stream instead of reconnecting). An operator
signed in with OpenID Connect, who has no key, keeps a quiet stream open."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from cityhub.streams.registry.principals import Principal

from .console_support import Browser, running_console
from .test_console_oidc import Provider, _settings, _start

Deliver = Callable[[list[tuple[bytes, bytes]]], None]


def reading(device: str, value: float) -> tuple[bytes, bytes]:
    doc = {
        "device_id": device,
        "tenant": "acme",
        "quantity": "temperature",
        "value": value,
        "unit": "Cel",
        "observed_at": "2026-12-04T10:00:00Z",
    }
    return device.encode(), orjson.dumps(doc)


class Feed:
    """The live reader of the console's tests: hands its ``deliver`` to the test."""

    def __init__(self) -> None:
        self.deliver: Deliver | None = None
        self.ready = asyncio.Event()

    async def read(self, deliver: Deliver, positioned: asyncio.Event) -> None:
        self.deliver = deliver
        self.ready.set()
        positioned.set()
        await asyncio.Event().wait()

    @contextlib.asynccontextmanager
    async def flowing(self, device: str) -> AsyncIterator[None]:
        """A reading of ``device`` every 10 ms while the block runs."""

        async def pump() -> None:
            await self.ready.wait()
            value = 0.0
            while True:
                assert self.deliver is not None
                self.deliver([reading(device, value)])
                value += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(pump())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def events_until_end(response: aiohttp.ClientResponse) -> list[str]:
    """The event names the stream sends until the server ends it (at most 5 s)."""

    async def read() -> list[str]:
        return [
            line.decode().removeprefix("event: ").strip()
            async for line in response.content
            if line.startswith(b"event: ")
        ]

    return await asyncio.wait_for(read(), 5)


async def observations_seen(response: aiohttp.ClientResponse, count: int) -> None:
    seen = 0
    while seen < count:
        line = await asyncio.wait_for(response.content.readline(), 5)
        assert line, "the stream ended"
        assert line != b"event: end\n"
        seen += line == b"event: observation\n"


def key_id(browser: Browser, name: str) -> str:
    return browser.keys[name].removeprefix("chk_").split("_")[0]


async def test_a_busy_stream_ends_once_its_key_is_revoked() -> None:
    feed = Feed()
    async with running_console(read=feed.read) as browser, feed.flowing("a-1"):
        await browser.sign_in("op_a")
        async with browser.client.get("/console/devices/a-1/live") as response:
            assert response.status == 200
            await observations_seen(response, 3)
            await browser.registry.revoke_key(Principal.system(), key_id(browser, "op_a"))
            events = await events_until_end(response)
        assert events[-1] == "end"
        await asyncio.sleep(0.05)
        assert browser.live.watching == 0


async def test_a_stream_ends_once_its_device_is_deleted_and_not_for_another() -> None:
    feed = Feed()
    async with running_console(read=feed.read) as browser, feed.flowing("a-1"):
        await browser.sign_in("op_a")
        async with browser.client.get("/console/devices/a-1/live") as response:
            await observations_seen(response, 3)
            await browser.registry.delete_device(Principal.system(), "acme", "a-2")
            await browser.registry.delete_device(Principal.system(), "beta", "b-1")
            await observations_seen(response, 150)  # 1.5 s: past the guard's interval
            await browser.registry.delete_device(Principal.system(), "acme", "a-1")
            assert (await events_until_end(response))[-1] == "end"


async def test_an_openid_connect_operators_quiet_stream_stays_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, the stream took a session without a key for a revoked one at its first
    keep-alive, and ended every operator's quiet live page after 15 s."""
    monkeypatch.setattr("cityhub.streams.delivery.guarded_stream.KEEPALIVE_S", 0.05)
    monkeypatch.setattr("cityhub.streams.delivery.guarded_stream.GUARD_INTERVAL_S", 0.05)
    idp = Provider()
    server = TestServer(idp.app())
    await server.start_server()
    feed = Feed()
    async with running_console(_settings(server), read=feed.read) as browser:
        state = await _start(browser, idp)
        page = await browser.get(f"/console/oidc/callback?code=good-code&state={state}")
        assert page.status == 303
        async with browser.client.get("/console/devices/a-1/live") as response:
            assert response.status == 200
            keepalives = 0
            while keepalives < 5:  # quiet for several keep-alives and checks
                line = await asyncio.wait_for(response.content.readline(), 5)
                assert line, "the stream ended"
                assert line != b"event: end\n"
                keepalives += line == b": keep-alive\n"
            assert feed.deliver is not None
            feed.deliver([reading("a-1", 21.5)])
            await observations_seen(response, 1)
    await server.close()


async def test_a_stream_stops_when_sign_outs_cannot_be_checked_and_says_so() -> None:
    """Fail closed, as pages do, but with the reason: the session may well still be valid."""
    from cityhub.streams.console.signouts import MAX_STALENESS_S

    from .test_console_signouts import StaleView

    feed = Feed()
    store = StaleView(caught_up_at=time.time())
    await store._store.start()
    async with (
        running_console(read=feed.read, signouts=store) as browser,
        feed.flowing("a-1"),
    ):
        await browser.sign_in("op_a")
        async with browser.client.get(
            "/console/devices/a-1/live", headers={"Accept-Language": "en"}
        ) as response:
            await observations_seen(response, 3)
            store.caught_up_at = time.time() - MAX_STALENESS_S - 1
            rest = await asyncio.wait_for(response.content.read(), 5)
        assert b"event: end\ndata: Live view stopped: the server cannot check" in rest
