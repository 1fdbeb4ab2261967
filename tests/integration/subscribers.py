"""Subscribers for integration tests: a webhook receiver that checks signatures with the
independent ``standardwebhooks`` package, a Server-Sent Events reader, an MQTT collector, and an
async API client. Loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aiomqtt
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from .hub import MQTT_HOST, MQTT_PORT, Hub, free_port


@dataclass
class Delivery:
    at: float
    webhook_id: str
    body: dict[str, Any]


@dataclass
class WebhookReceiver:
    """An HTTP server on 127.0.0.1; ``mode`` per path: ``ok``, ``hang``, or a status code."""

    secrets: dict[str, str] = field(default_factory=dict)
    """Signing secret per path, to verify with."""
    modes: dict[str, str | int] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    received: dict[str, list[Delivery]] = field(default_factory=dict)
    bad_signatures: int = 0
    _runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def items(self, path: str) -> list[dict[str, Any]]:
        return [i for d in self.received.get(path, []) for i in d.body["items"]]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        mode = self.modes.get(path, "ok")
        if mode == "hang":
            await asyncio.sleep(3600)
        if isinstance(mode, int):
            return web.Response(status=mode, text="refused by the test")
        body = await request.read()
        try:
            Webhook(self.secrets[path]).verify(body, dict(request.headers))
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=401)
        self.received.setdefault(path, []).append(
            Delivery(time.time(), request.headers["webhook-id"], json.loads(body))
        )
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Api:
    """An async client of one hub's API with named keys."""

    def __init__(self, hub: Hub, keys: dict[str, str]) -> None:
        self.hub, self.keys = hub, keys
        self.base = f"http://127.0.0.1:{hub.port}/api/v1"

    async def call(self, method: str, path: str, who: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.keys[who]}"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.base + path, json=body, headers=headers) as response,
        ):
            text = await response.read()
            return response.status, json.loads(text) if text else None

    async def send(
        self, method: str, path: str, who: str, body: bytes, content_type: str
    ) -> tuple[int, Any]:
        """``call`` with a body as given (an import's CSV or JSON file)."""
        headers = {"Authorization": f"Bearer {self.keys[who]}", "Content-Type": content_type}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.base + path, data=body, headers=headers) as response,
        ):
            text = await response.read()
            return response.status, json.loads(text) if text else None

    async def sta(self, path: str, who: str) -> tuple[int, Any]:
        """GET ``path`` under the SensorThings root (``/sta/v1.1``)."""
        url = f"http://127.0.0.1:{self.hub.port}/sta/v1.1{path}"
        headers = {"Authorization": f"Bearer {self.keys[who]}"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers=headers) as response,
        ):
            return response.status, json.loads(await response.read())

    async def subscribe(self, who: str, tenant: str, spec: dict[str, Any]) -> dict[str, Any]:
        status, doc = await self.call("POST", f"/tenants/{tenant}/subscriptions", who, spec)
        assert status == 201, doc
        return dict(doc)

    async def declare_crowd_safety(self) -> dict[str, Any]:
        """Declares the demo tenant's ``crowd-safety`` processing activity (public task,
        footfall), which a subscription to the simulated fleet's personal footfall must name; its
        document as the API returned it."""
        status, activity = await self.call(
            "POST",
            "/tenants/demo/processing-activities",
            "demo-operator",
            {
                "slug": "crowd-safety",
                "name": "Crowd safety",
                "purpose": "Keep crowds in the centre safe.",
                "legal_basis": "PublicTask",
                "personal_data_categories": ["footfall"],
                "retention": "P1D",
                "controller": "Municipality of Demo",
            },
        )
        assert status == 201, activity
        return dict(activity)


@dataclass
class SseReader:
    """Reads a live stream into ``events`` (id, data) until stopped."""

    api: Api
    who: str
    tenant: str
    subscription: str
    last_event_id: str | None = None
    query: str = ""
    """Appended to the stream's URL (``?fromTime=...``)."""
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    closed: str | None = None
    """Why the hub ended the stream (its ``: closed: <why>`` line), if it did."""
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self.api.keys[self.who]}"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        url = (
            f"{self.api.base}/tenants/{self.tenant}/subscriptions/{self.subscription}/events"
            f"{self.query}"
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers) as response,
        ):
            self.status = response.status
            self.connected.set()
            if response.status != 200:
                return
            event_id, data = "", ""
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line.startswith(": closed: "):
                    self.closed = line[10:]
                elif line == "" and data:
                    self.events.append((event_id, json.loads(data)))
                    event_id, data = "", ""

    async def ended(self) -> None:
        """Returns once the server has ended the stream."""
        assert self._task is not None
        await asyncio.shield(self._task)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


@contextlib.asynccontextmanager
async def mqtt_collector(topic: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Collect JSON messages published to ``topic`` (a clean session, ended on exit)."""
    got: list[dict[str, Any]] = []
    async with aiomqtt.Client(
        MQTT_HOST, MQTT_PORT, identifier=f"collect-{uuid.uuid4().hex[:8]}"
    ) as client:
        await client.subscribe(topic, qos=1)

        async def pump() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                got.append(json.loads(message.payload))

        task = asyncio.create_task(pump())
        try:
            yield got
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def wait_for(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())
