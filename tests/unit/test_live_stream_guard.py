"""An open live stream (``GET .../subscriptions/{id}/events``) ends once its client may no
longer read it: its key revoked, the subscription paused or deleted. Through the API app over
in-memory stores, with a stream fed without Kafka but written by ``LiveStreams`` itself, while
items keep flowing (a busy stream must not escape the check) and while none do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import aiohttp
from aiohttp import web
from prometheus_client import REGISTRY

from cityhub.connectors.sinks.base import Item
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import Subscription
from cityhub.streams.delivery.guarded_stream import StreamGuard
from cityhub.streams.delivery.queue import DeliveryQueue
from cityhub.streams.delivery.sse import LiveStreams
from cityhub.streams.registry.principals import Principal

from .test_api_support import Api, running_api

SUBS = "/api/v1/tenants/acme/subscriptions"
ITEM = b'{"event_id":"e","device_id":"a-1","quantity":"temperature","value":1.0}'


class FedStreams(LiveStreams):
    """Live streams whose items come from a task in this process instead of Kafka; the writing,
    the screening and the guard are LiveStreams' own. ``flowing``: a new item every 10 ms."""

    def __init__(self, settings: Settings, *, flowing: bool) -> None:
        super().__init__(settings)
        self.flowing = flowing

    async def _serve(
        self,
        request: web.Request,
        record: Subscription,
        last_event_id: str | None,
        from_time: datetime | None,
        guard: StreamGuard | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b": connected\n\n")
        queue = DeliveryQueue(100, drop_oldest=True)
        fetcher = asyncio.create_task(self._feed(queue))
        try:
            with contextlib.suppress(ConnectionError):
                await self._write(request, response, queue, record, fetcher, guard)
        finally:
            fetcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetcher
        return response

    async def _feed(self, queue: DeliveryQueue) -> None:
        offset = 0
        while True:
            if self.flowing:
                queue.put(Item(0, offset, 1_800_000_000_000, b"a-1", ITEM))
                offset += 1
            await asyncio.sleep(0.01)


@asynccontextmanager
async def live_api(*, flowing: bool) -> AsyncIterator[Api]:
    """The API over a seeded in-memory registry (tenants acme and beta; keys admin, op_a, op_b,
    sub_a, sub_b) with a live subscription ``live`` of acme's, created by sub_a."""
    async with running_api(live=FedStreams(Settings(), flowing=flowing)) as api:
        body = {"id": "live", "name": "Live", "delivery": {"kind": "sse"}}
        assert (await api.call("POST", SUBS, "sub_a", json=body))[0] == 201
        yield api


@asynccontextmanager
async def open_stream(api: Api, who: str) -> AsyncIterator[aiohttp.ClientResponse]:
    response = await api.client.get(f"{SUBS}/live/events", headers=api.auth(who))
    try:
        assert response.status == 200
        assert await response.content.readline() == b": connected\n"
        yield response
    finally:
        response.release()


async def rest_of(response: aiohttp.ClientResponse) -> list[bytes]:
    """The lines the stream sends until the server ends it (at most 5 s)."""

    async def read() -> list[bytes]:
        return [line async for line in response.content]

    return await asyncio.wait_for(read(), 5)


def closing_line(lines: list[bytes]) -> str:
    closed = [line for line in lines if line.startswith(b": closed: ")]
    assert len(closed) == 1, lines[-5:]
    assert lines[-2:] == [closed[0], b"\n"]  # the last thing the stream sends
    return closed[0].decode().removeprefix(": closed: ").strip()


def ended(tenant: str, subscription: str) -> float:
    value = REGISTRY.get_sample_value(
        "cityhub_subscription_live_streams_ended_total",
        {"tenant": tenant, "subscription": subscription},
    )
    return value or 0.0


async def key_id_of(api: Api, who: str) -> str:
    return api.keys[who].removeprefix("chk_").split("_", 1)[0]


async def test_a_busy_stream_ends_once_its_key_is_revoked() -> None:
    async with live_api(flowing=True) as api, open_stream(api, "sub_a") as response:
        first = await response.content.readuntil(b"\n\n")
        assert b"data: " in first  # items are flowing
        before = ended("acme", "live")
        await api.registry.revoke_key(Principal.system(), await key_id_of(api, "sub_a"))
        why = closing_line(await rest_of(response))
        assert "revoked" in why
        assert api.keys["sub_a"] not in why
        assert ended("acme", "live") == before + 1
        # Reconnecting is refused: a browser's EventSource stops there.
        again = await api.client.get(f"{SUBS}/live/events", headers=api.auth("sub_a"))
        assert again.status == 401
        again.release()


async def test_an_idle_stream_ends_once_its_subscription_is_paused_or_deleted() -> None:
    async with live_api(flowing=False) as api:
        async with open_stream(api, "sub_a") as response:
            status, _, _ = await api.call("POST", f"{SUBS}/live/pause", "sub_a")
            assert status == 200
            assert "paused" in closing_line(await rest_of(response))
        assert (await api.call("POST", f"{SUBS}/live/resume", "sub_a"))[0] == 200
        async with open_stream(api, "sub_a") as response:
            assert (await api.call("DELETE", f"{SUBS}/live", "sub_a"))[0] == 204
            assert "not found" in closing_line(await rest_of(response))


async def test_another_keys_revocation_leaves_the_stream_open() -> None:
    async with live_api(flowing=True) as api, open_stream(api, "sub_a") as response:
        await api.registry.revoke_key(Principal.system(), await key_id_of(api, "op_a"))
        await api.registry.revoke_key(Principal.system(), await key_id_of(api, "sub_b"))
        events = 0
        while events < 200:  # 2 s of items, past the guard's interval
            chunk = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)
            assert not chunk.startswith(b": closed")
            events += 1


async def test_a_client_that_goes_away_from_a_quiet_stream_frees_its_slot_within_seconds() -> None:
    """Not only at the next keep-alive (15 s): the slot counts against the stream quotas."""
    live = FedStreams(Settings(), flowing=False)
    async with running_api(live=live) as api:
        # As the hub serves (streams/runtime/host.py): a client that goes away does not
        # cancel its handler (aiohttp's test server would).
        runner = api.client.server.runner
        assert runner is not None
        assert runner.server is not None
        runner.server.handler_cancellation = False
        body = {"id": "live", "name": "Live", "delivery": {"kind": "sse"}}
        assert (await api.call("POST", SUBS, "sub_a", json=body))[0] == 201
        async with open_stream(api, "sub_a"):
            assert live.open_streams("acme", "live") == 1
        before = ended("acme", "live")
        for _ in range(50):  # 5 s at most
            if live.open_streams("acme", "live") == 0:
                break
            await asyncio.sleep(0.1)
        assert live.open_streams("acme", "live") == 0
        assert ended("acme", "live") == before  # gone by itself: not ended by the hub
