"""A webhook subscription's own options on the real stack: batches of at most
``max_batch_size`` items in bodies of at most ``max_batch_bytes`` (a single larger item alone),
filled for up to ``max_wait_ms``, and each attempt cut off after ``timeout_s`` by a receiver that
hangs: the attempt is retried, the global settings play no part."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from cityhub.schemas.settings import MqttSettings, Settings
from cityhub.streams.devtools.simulator import simulate as run_simulation

from .hub import MQTT_HOST, MQTT_PORT, free_port, read_topic
from .subscribers import wait_for
from .test_subscriptions_e2e import DEVICES, running_hub

pytestmark = pytest.mark.integration

HANGS = 3
"""Requests each path leaves unanswered before it answers."""
TIMEOUT_S = 0.5
MAX_BYTES = 2500
LARGEST_ITEM = 1000
"""More than any simulated observation takes in a body (they measure 550 to 900 bytes)."""
MESSAGES = 240
TYPES = ["air_quality", "noise", "weather", "water_level"]


@dataclass
class Attempt:
    arrived: float
    webhook_id: str
    size: int
    items: int
    dropped_after: float | None = None
    """Seconds until the client gave up on a request the receiver left hanging."""


@dataclass
class HangingReceiver:
    """Records every POST (size, items, signature checked), leaves the first ``HANGS`` of each
    path unanswered, watching when the client drops them, then answers 204."""

    secrets: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    attempts: dict[str, list[Attempt]] = field(default_factory=dict)
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    bad_signatures: int = 0
    _runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        body = await request.read()
        try:
            Webhook(self.secrets[path]).verify(body, dict(request.headers))
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=401)
        doc = json.loads(body)
        seen = self.attempts.setdefault(path, [])
        attempt = Attempt(time.monotonic(), request.headers["webhook-id"], len(body), 0)
        attempt.items = len(doc["items"])
        seen.append(attempt)
        if len(seen) <= HANGS:
            transport = request.transport
            for _ in range(600):  # at most 30 s: the client is expected to drop it long before
                if transport is None or transport.is_closing():
                    attempt.dropped_after = time.monotonic() - attempt.arrived
                    break
                await asyncio.sleep(0.05)
            return web.Response(status=503)
        self.items.setdefault(path, []).extend(doc["items"])
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


def hook(sub_id: str, url: str, **options: Any) -> dict[str, Any]:
    return {
        "id": sub_id,
        "name": sub_id,
        "filter": {"device_types": TYPES},
        "delivery": {"kind": "webhook", "url": url, "timeout_s": TIMEOUT_S, **options},
    }


async def test_batches_follow_the_subscriptions_limits_and_timeout(tmp_path: Path) -> None:
    receiver = HangingReceiver()
    await receiver.start()
    # Fast retries; the global batch settings are set far off to show they play no part.
    env = {
        "CITYHUB_DELIVERY__WEBHOOK_BACKOFF_BASE_SECONDS": "0.05",
        "CITYHUB_DELIVERY__WEBHOOK_BACKOFF_CAP_SECONDS": "0.2",
        "CITYHUB_DELIVERY__BATCH_MAX_ITEMS": "1000",
        "CITYHUB_DELIVERY__BATCH_LINGER_SECONDS": "0",
    }
    limits = {
        # Three items per POST, filled for up to 400 ms.
        "items": {"max_batch_size": 3, "max_wait_ms": 400},
        # Small bodies: an observation is 550 to 900 bytes, so two or three fit.
        "bytes": {"max_batch_size": 1000, "max_batch_bytes": MAX_BYTES, "max_wait_ms": 400},
    }
    async with running_hub(tmp_path, **env) as (hub, api):
        for sub_id, options in limits.items():
            doc = await api.subscribe("demo", "demo", hook(sub_id, receiver.url(sub_id), **options))
            receiver.secrets[sub_id] = doc["secret"]
            assert doc["delivery"]["timeout_s"] == TIMEOUT_S
        assert await wait_for(lambda: hub.metric("cityhub_routed_subscriptions") == 2, 30)

        settings = Settings(mqtt=MqttSettings(host=MQTT_HOST, port=MQTT_PORT))
        await run_simulation(settings, DEVICES, 60.0, count=MESSAGES)
        want: dict[str, set[str]] = {}
        for sub_id in limits:
            routed = await read_topic(
                f"{hub.prefix}.sub.demo.{sub_id}", until=lambda r: False, timeout=3
            )
            want[sub_id] = {o["event_id"] for o in routed}
            assert len(want[sub_id]) > 30

        def delivered(sub_id: str) -> set[str]:
            return {i["event_id"] for i in receiver.items.get(sub_id, [])}

        def complete() -> bool:
            return all(delivered(s) >= want[s] for s in limits)

        assert await wait_for(complete, 60), {s: len(want[s] - delivered(s)) for s in limits}
        assert receiver.bad_signatures == 0

        # The timeout: each hanging attempt was dropped by the hub after timeout_s (the
        # global default would have been 10 s), and the same batch was tried again.
        for sub_id in limits:
            attempts = receiver.attempts[sub_id]
            hung = attempts[:HANGS]
            for attempt in hung:
                assert attempt.dropped_after is not None, sub_id
                assert TIMEOUT_S * 0.8 <= attempt.dropped_after < TIMEOUT_S + 1.5, attempt
            assert {a.webhook_id for a in attempts[: HANGS + 1]} == {attempts[0].webhook_id}
            gaps = [
                b.arrived - a.arrived for a, b in zip(hung, attempts[1 : HANGS + 1], strict=True)
            ]
            assert all(TIMEOUT_S * 0.8 <= gap < TIMEOUT_S + 1.5 for gap in gaps), gaps
            retried = hub.metric(
                "cityhub_subscription_retried_total", tenant="demo", subscription=sub_id
            )
            assert retried >= HANGS

        # The item bound, and linger filling the batches up to it.
        by_items = receiver.attempts["items"][HANGS:]
        assert max(a.items for a in by_items) == 3
        assert sum(a.items == 3 for a in by_items) > len(by_items) / 2, [a.items for a in by_items]
        # The byte bound: no body above it unless it holds a single item, and most bodies
        # filled so that another item would not have fitted (cut by bytes, not by items).
        by_bytes = receiver.attempts["bytes"][HANGS:]
        shapes = [(a.items, a.size) for a in by_bytes]
        assert all(size <= MAX_BYTES for items, size in shapes if items > 1), shapes
        assert max(items for items, _ in shapes) < 10, shapes
        filled = [size for items, size in shapes if size > MAX_BYTES - LARGEST_ITEM]
        assert len(filled) > len(shapes) / 2, shapes
    await receiver.stop()
