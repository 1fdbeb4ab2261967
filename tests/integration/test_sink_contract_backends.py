"""The sink contract (``tests/contracts/sink.py``) against the real backends: the ``webhook``
kind against a receiver on loopback that checks every signature with the independent
``standardwebhooks`` package, the ``mqtt`` kind against the local Mosquitto (``cityhub stack
up``), read back by an independent client (aiomqtt). Every kind a delivery task serves has a
harness here, so a new built-in kind cannot skip the suite."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import orjson
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from cityhub.connectors.mqtt.session import MqttSession
from cityhub.connectors.sinks import Serving, get_sink, sink_kinds
from cityhub.connectors.sinks.base import Item
from cityhub.connectors.sinks.errors import FailureKind
from cityhub.schemas.settings import (
    DeliverySettings,
    MqttSettings,
    Settings,
    SubscriptionSettings,
)
from tests.contracts.sink import TENANT, Refusal, SinkContract

from .hub import MQTT_HOST, MQTT_PORT, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SECRET = "whsec_" + base64.b64encode(b"contract-secret-" + bytes(range(16))).decode()
WAIT_S = 5.0


def refused_item() -> Item:
    """An item a receiver refuses (the webhook receiver: it says so; MQTT: over Mosquitto's
    Maximum Packet Size of 2 MiB + 64 KiB on the stack)."""
    pad = "x" * (2 * 1024 * 1024 + 100 * 1024)
    return Item(0, 100, 0, b"dev-1", orjson.dumps({"event_id": "refuse-me", "pad": pad}))


async def poll(got: list[Any], count: int) -> list[Any]:
    deadline = time.monotonic() + WAIT_S
    while len(got) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return list(got)


class WebhookHarness:
    """A receiver on 127.0.0.1 that verifies each signature, answers 400 to a body with a
    refused item, and 204 otherwise."""

    kind = "webhook"
    secrets = (SECRET,)

    def __init__(self) -> None:
        self.port = free_port()
        self.items: list[Any] = []
        self.bad_signatures = 0
        self.settings = Settings.model_construct(
            subscriptions=SubscriptionSettings(webhook_allowed_hosts=("127.0.0.1",))
        )
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            Webhook(SECRET).verify(body, dict(request.headers))
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=401)
        doc = json.loads(body)
        if any(i.get("event_id") == "refuse-me" for i in doc["items"]):
            return web.Response(status=400, text="refused by the test")
        self.items.extend(doc["items"])
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def delivery(self) -> dict[str, Any]:
        return {
            "kind": "webhook",
            "url": f"http://127.0.0.1:{self.port}/hook",
            "secret": SECRET,
            "max_wait_ms": 0,
        }

    async def refusal(self) -> Refusal:
        return Refusal(self.delivery(), [refused_item()], FailureKind.HTTP_STATUS, False)

    async def received(self, count: int) -> list[Any]:
        got = await poll(self.items, count)
        assert self.bad_signatures == 0
        return got

    async def leftovers(self) -> list[str]:
        return []  # an unclosed connection pool fails the test as a ResourceWarning


class MqttHarness:
    """The local Mosquitto, with a topic root and client ids of this test's own, credentials
    that must never show, and a subscriber that reads what the sink publishes."""

    kind = "mqtt"

    def __init__(self) -> None:
        run = uuid.uuid4().hex[:10]
        self.password = f"contract-pw-{run}"
        self.secrets = (self.password,)
        self.root = f"contract/{run}"
        self.settings = Settings.model_construct(
            mqtt=MqttSettings.model_validate(
                {
                    "host": MQTT_HOST,
                    "port": MQTT_PORT,
                    "client_id": f"contract-{run}",
                    "username": "contract",
                    "password": self.password,
                }
            ),
            delivery=DeliverySettings(mqtt_topic_root=self.root, batch_linger_seconds=0),
        )
        self.payloads: list[Any] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        # The reader runs on an event loop of its own, in a thread, so that its tasks are not
        # taken for the sink's (the suite checks that a stopped sink leaves no task behind).
        ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._read(ready),))
        self._thread.start()
        assert await asyncio.to_thread(ready.wait, 10), "the MQTT reader did not subscribe"

    async def _read(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with aiomqtt.Client(
            MQTT_HOST,
            MQTT_PORT,
            identifier=f"contract-sub-{uuid.uuid4().hex[:8]}",
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as client:
            await client.subscribe(f"{self.root}/#", qos=1)
            ready.set()

            async def collect() -> None:
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    self.payloads.append(json.loads(message.payload))

            collector = asyncio.create_task(collect())
            await self._stop.wait()
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)

    def delivery(self) -> dict[str, Any]:
        return {"kind": "mqtt", "topic": "out", "qos": 1}

    async def refusal(self) -> Refusal:
        return Refusal(self.delivery(), [refused_item()], FailureKind.INVALID, False)

    async def received(self, count: int) -> list[Any]:
        return await poll(self.payloads, count)

    async def leftovers(self) -> list[str]:
        # The sink's client id (MqttTarget): a session left on the broker would queue for it.
        client_id = f"{self.settings.mqtt.client_id}-sub-{TENANT}.contract-{os.getpid()}"
        probe = self.settings.mqtt.model_copy(update={"client_id": client_id})
        async with MqttSession(
            probe, receive_maximum=1, clean_start=False, session_expiry_seconds=0
        ) as session:
            assert session.connack is not None
            present = session.connack.session_present
        return [f"a session of {client_id!r} on the broker"] if present else []


HARNESSES = {"webhook": WebhookHarness, "mqtt": MqttHarness}


@pytest.fixture(params=sorted(HARNESSES))
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    made = HARNESSES[request.param]()
    await made.start()
    try:
        yield made
    finally:
        await made.stop()


class TestRealSinks(SinkContract):
    pass


def test_every_kind_a_task_serves_has_a_harness_here() -> None:
    served = {k for k in sink_kinds() if get_sink(k).spec_model.serving is Serving.TASK}
    assert served == set(HARNESSES)
