"""One uplink followed by its trace on the real stack: ``mosquitto_pub`` → bridge → Kafka raw →
normaliser → observations and a subscription's topic → a webhook that answers 500 once, and an
MQTT 5 subscriber. The same W3C trace id is in the Kafka headers of each record (each hop a span
of its own), in the webhook's ``traceparent`` header (the same span on the retry), in the MQTT
message's ``traceparent`` User Property, and in the hub's JSON log lines about it (the
delivery's retry); a bad uplink's trace is in its dead letter and in the worker's log line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from paho.mqtt.properties import Properties

from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import mqtt_topic
from cityhub.schemas.trace_context import TRACEPARENT, TraceContext, parse_traceparent
from cityhub.streams.devtools.simulator import Traffic, build_fleet

from .hub import BOOTSTRAP, MQTT_HOST, MQTT_PORT, free_port
from .subscribers import wait_for
from .test_subscriptions_e2e import DEVICES, running_hub

pytestmark = pytest.mark.integration

Record = tuple[str | None, bytes, TraceContext | None]
"""(key, value, the record's parsed ``traceparent``)."""


def one_uplink() -> tuple[str, str, bytes]:
    """(device id, MQTT topic, payload) of a public air-quality reading in cityhub's own JSON
    (its topic names the device, so a bad payload still has a device key)."""
    fleet = build_fleet(DEVICES)
    traffic = Traffic(fleet, seed=7)
    for i in range(1000):
        m = traffic.next_message(time.time() - 60 + i * 0.001)
        device = fleet.by_id(m.device_id)
        json_format = m.format.value in ("senml", "json")
        if device.kind.value == "air_quality" and json_format and not m.duplicate:
            return m.device_id, m.topic, m.payload
    raise AssertionError("the simulated fleet sent no air-quality JSON uplink")


def mosquitto_pub(topic: str, payload: bytes) -> None:
    """Publish once with QoS 1 as a clean-session client of its own (nothing left behind)."""
    subprocess.run(
        [
            "mosquitto_pub",
            *("-h", MQTT_HOST, "-p", str(MQTT_PORT), "-q", "1"),
            *("-i", f"trace-test-{uuid.uuid4().hex[:8]}", "-t", topic, "-s"),
        ],
        input=payload,
        check=True,
        timeout=30,
    )


async def read_records(
    topic: str, until: Callable[[list[Record]], bool], timeout: float = 60.0
) -> list[Record]:
    """``topic`` from the beginning, with each record's trace context, until ``until`` holds or
    ``timeout`` passes."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    await consumer.start()
    records: list[Record] = []
    try:
        deadline = time.monotonic() + timeout
        assigned = False
        while time.monotonic() < deadline and not (records and until(records)):
            if not assigned:
                parts = consumer.partitions_for_topic(topic)
                if not parts:
                    await consumer._client.force_metadata_update()
                    await asyncio.sleep(0.5)
                    continue
                tps = [TopicPartition(topic, p) for p in parts]
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                assigned = True
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for r in batch:
                    trace = next((v for k, v in r.headers if k == TRACEPARENT), None)
                    key = r.key.decode() if r.key else None
                    records.append((key, r.value or b"", parse_traceparent(trace)))
    finally:
        await consumer.stop()
    return records


class FailingOnceHook:
    """A webhook receiver on loopback that answers 500 to the first POST and 204 to the rest,
    keeping every request's ``traceparent`` header and body."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[tuple[str | None, dict[str, Any]]] = []
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.headers.get(TRACEPARENT), json.loads(await request.read())))
        return web.Response(status=500 if len(self.requests) == 1 else 204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@contextlib.asynccontextmanager
async def mqtt5_collector(topic: str) -> AsyncIterator[list[str | None]]:
    """The ``traceparent`` User Property of every message on ``topic`` (MQTT 5, a clean
    session of its own, ended on exit)."""
    got: list[str | None] = []
    async with aiomqtt.Client(
        MQTT_HOST,
        MQTT_PORT,
        identifier=f"trace-collect-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        await client.subscribe(topic, qos=1)

        async def pump() -> None:
            async for message in client.messages:
                props: Properties | None = message.properties
                pairs = getattr(props, "UserProperty", None) or []
                got.append(next((v for k, v in pairs if k == TRACEPARENT), None))

        task = asyncio.create_task(pump())
        try:
            yield got
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def json_lines(hub_dir: Path) -> list[dict[str, Any]]:
    """Every JSON log line the hub's processes wrote."""
    lines = []
    for path in sorted(hub_dir.glob("run-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict):
                    lines.append(doc)
    return lines


def trace_of(records: list[Record]) -> TraceContext:
    (trace,) = {r[2] for r in records}
    assert trace is not None
    return trace


async def test_one_uplinks_trace_reaches_every_hop_and_every_log_line_about_it(
    tmp_path: Path,
) -> None:
    device, topic, payload = one_uplink()
    hook = FailingOnceHook()
    await hook.start()
    started = time.monotonic()
    relative = f"trace-{uuid.uuid4().hex[:6]}"
    env = {
        "CITYHUB_LOG_FORMAT": "json",
        "CITYHUB_DELIVERY__WEBHOOK_BACKOFF_BASE_SECONDS": "0.2",
    }
    try:
        async with running_hub(tmp_path, **env) as (hub, api):
            only_this = {"device_ids": [device]}
            await api.subscribe(
                "demo",
                "demo",
                {
                    "id": "trace-hook",
                    "name": "One device to a webhook",
                    "filter": only_this,
                    "delivery": {"kind": "webhook", "url": f"http://127.0.0.1:{hook.port}/hook"},
                },
            )
            await api.subscribe(
                "demo",
                "demo",
                {
                    "id": "trace-mqtt",
                    "name": "One device to MQTT",
                    "filter": only_this,
                    "delivery": {"kind": "mqtt", "topic": relative},
                },
            )
            assert await wait_for(lambda: hub.metric("cityhub_routed_subscriptions") == 2, 30)
            root = Settings().delivery.mqtt_topic_root
            async with mqtt5_collector(mqtt_topic(root, "demo", relative)) as mqtt_traces:
                await asyncio.to_thread(mosquitto_pub, topic, payload)
                await asyncio.to_thread(mosquitto_pub, topic, b"{not json")
                assert await wait_for(lambda: len(hook.requests) >= 2 and mqtt_traces, 60), (
                    hook.requests,
                    hub.log_tail(),
                )

                # Kafka: raw (the bridge's trace), observations, the subscription's topic.
                raw = await read_records(hub.topics["raw"], lambda rs: len(rs) >= 2)
                assert [r[0] for r in raw] == [device, device]
                (good,) = [r for r in raw if b"not json" not in r[1]]
                (bad,) = [r for r in raw if b"not json" in r[1]]
                bridge, refused = good[2], bad[2]
                assert bridge is not None
                assert refused is not None
                assert refused.trace_id != bridge.trace_id
                observations = await read_records(
                    hub.topics["observations"], lambda rs: any(r[0] == device for r in rs)
                )
                mine = [r for r in observations if r[0] == device]
                normalised = trace_of(mine)  # every observation of the uplink: one span
                assert normalised.trace_id == bridge.trace_id
                assert normalised.span_id != bridge.span_id
                routed = await read_records(f"{hub.prefix}.sub.demo.trace-hook", bool)
                assert {r[2].trace_id for r in routed if r[2]} == {bridge.trace_id}
                assert len(routed) == len(mine)
                routing_spans = {r[2].span_id for r in routed if r[2]}
                assert len(routing_spans) == len(routed)
                assert normalised.span_id not in routing_spans

                # The webhook: its header on the failed attempt and on the retry, one span.
                headers = {parse_traceparent(h) for h, _ in hook.requests[:2]}
                (delivered,) = headers
                assert delivered is not None
                assert delivered.trace_id == bridge.trace_id
                assert delivered.span_id not in routing_spans | {normalised.span_id}
                assert hook.requests[0][1] == hook.requests[1][1]

                # MQTT: the User Property, a span of its own in the same trace.
                mqtt = [parse_traceparent(v) for v in mqtt_traces]
                assert mqtt
                assert all(m is not None and m.trace_id == bridge.trace_id for m in mqtt)

                # The dead letter of the bad uplink continues its trace.
                letters = await read_records(hub.topics["deadletter"], bool)
                (letter,) = [r for r in letters if r[0] == device]
                assert letter[2] is not None
                assert letter[2].trace_id == refused.trace_id

            # The log lines about either message name its trace: the delivery's retry (with
            # the webhook's span and the device) and the worker's dead letter.
            logs = json_lines(tmp_path)
            retry = [
                line
                for line in logs
                if line["logger"] == "cityhub.delivery" and "failed (attempt 1)" in line["message"]
            ]
            assert retry, hub.log_tail()
            assert retry[0]["trace_id"] == bridge.trace_id
            assert retry[0]["span_id"] == delivered.span_id
            assert retry[0]["device"] == device
            dead = [line for line in logs if line.get("trace_id") == refused.trace_id]
            assert [line["logger"] for line in dead] == ["cityhub.normaliser"], dead
            assert "went to the dead letters (malformed_json)" in dead[0]["message"]
            # Every line about the good uplink is one of the retry's: nothing else claims it.
            about = [line for line in logs if line.get("trace_id") == bridge.trace_id]
            assert about == retry
            # Lines about no message carry no trace (the hub's start, the subscriptions).
            assert any("trace_id" not in line for line in logs)
    finally:
        await hook.stop()
    print(f"followed one uplink through the hub in {time.monotonic() - started:.1f} s")
