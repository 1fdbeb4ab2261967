"""CloudEvents deliveries end to end on the real stack: simulated devices publish over MQTT, the
hub (`cityhub run`) delivers, and every format is read back with the ``cloudevents`` SDK from
where a subscriber reads it: a webhook batch from a real HTTP receiver (signature checked with
``standardwebhooks``), MQTT structured and binary mode from Mosquitto by an MQTT 5 client, Kafka
structured and binary mode from the subscriptions' topics. Personal items: a subscription without
a processing activity gets none, one with an activity gets events without a ``subject``; another
tenant's subscription gets the public items only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from cloudevents.http import CloudEvent, from_json
from cloudevents.kafka import KafkaMessage, from_binary, from_structured
from standardwebhooks.webhooks import Webhook

from cityhub.schemas.registry import Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, MqttSettings, Settings
from cityhub.streams.devtools.simulator import build_fleet
from cityhub.streams.devtools.simulator import simulate as run_simulation
from cityhub.streams.devtools.simulator.registration import register_fleet
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

from .hub import BOOTSTRAP, MQTT_HOST, MQTT_PORT, Hub, free_port, read_topic
from .subscribers import Api, wait_for

pytestmark = pytest.mark.integration

DEVICES = 28
MESSAGES = 420
OIN = "00000001823288444000"
SOURCE = f"urn:nld:oin:{OIN}:systeem:cityhub"
TYPE = "nl.test.cityhub.observation.v1"


async def seed(prefix: str) -> dict[str, str]:
    """The simulated fleet in tenant demo, a tenant 'other', and keys."""
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    store = RegistryStore(settings)
    await store.start()
    try:
        registry = Registry(store)
        await register_fleet(registry, build_fleet(DEVICES))
        system = Principal.system()
        await registry.create_tenant(system, TenantSpec(id="other", name="Another operator"))
        keys = {}
        for name, tenant, role in (
            ("demo", "demo", Role.SUBSCRIBER),
            ("other", "other", Role.SUBSCRIBER),
            ("demo-operator", "demo", Role.OPERATOR),
        ):
            keys[name] = (await registry.create_key(system, tenant, role, name))[1]
        return keys
    finally:
        await store.stop()


@dataclass
class Post:
    content_type: str
    body: bytes


@dataclass
class RawReceiver:
    """Webhook receiver keeping each POST's content type and exact body, after checking its
    Standard Webhooks signature."""

    secrets: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    posts: dict[str, list[Post]] = field(default_factory=dict)
    bad_signatures: int = 0
    _runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def events(self, path: str) -> list[CloudEvent]:
        """Every event of every batch to ``path``, read by the SDK one by one."""
        return [
            from_json(orjson.dumps(event))
            for post in self.posts.get(path, [])
            for event in orjson.loads(post.body)
        ]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        body = await request.read()
        try:
            Webhook(self.secrets[path]).verify(body, dict(request.headers))
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=401)
        self.posts.setdefault(path, []).append(Post(request.headers["Content-Type"], body))
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


@contextlib.asynccontextmanager
async def mqtt5_collector(topic: str) -> AsyncIterator[list[aiomqtt.Message]]:
    """Collect the messages of ``topic`` with their MQTT 5 properties (a session that ends with
    the connection)."""
    got: list[aiomqtt.Message] = []
    async with aiomqtt.Client(
        MQTT_HOST,
        MQTT_PORT,
        identifier=f"ce-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        await client.subscribe(topic, qos=1)

        async def pump() -> None:
            async for message in client.messages:
                got.append(message)

        task = asyncio.create_task(pump())
        try:
            yield got
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def mqtt_event(message: aiomqtt.Message) -> CloudEvent:
    """The CloudEvent of an MQTT 5 message: structured when its Content Type is the event
    format's, else binary (attributes in User Properties, the MQTT binding)."""
    assert isinstance(message.payload, bytes)
    props = message.properties
    content_type = getattr(props, "ContentType", None)
    if content_type == "application/cloudevents+json":
        return from_json(message.payload)
    attributes = dict(getattr(props, "UserProperty", []))
    attributes["datacontenttype"] = content_type
    return CloudEvent.create(attributes, json.loads(message.payload))


async def kafka_events(
    topic: str, *, until: Any, timeout: float = 60.0
) -> list[tuple[dict[str, bytes], CloudEvent]]:
    """Every record of ``topic`` from the beginning, read by the SDK's Kafka binding (binary
    when there are ``ce_`` headers, else structured), with its headers."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    await consumer.start()
    got: list[tuple[dict[str, bytes], CloudEvent]] = []
    try:
        deadline = time.monotonic() + timeout
        assigned = False
        while time.monotonic() < deadline:
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
                for record in batch:
                    headers = dict(record.headers)
                    message = KafkaMessage(headers, record.key, record.value)
                    binary = any(name.startswith("ce_") for name in headers)
                    got.append(
                        (headers, from_binary(message) if binary else from_structured(message))
                    )
            if until(got):
                break
    finally:
        await consumer.stop()
    return got


def ids(events: list[CloudEvent]) -> set[str]:
    return {str(e["id"]) for e in events}


def data_of(event: CloudEvent) -> dict[str, Any]:
    data = event.get_data()
    assert isinstance(data, dict)
    return data


def check_profile(event: CloudEvent, *, personal: bool = False) -> None:
    """The NL GOV attributes of one observation event, against its own data."""
    data = data_of(event)
    assert event["specversion"] == "1.0"
    assert event["id"] == data["event_id"]
    assert event["source"] == SOURCE
    assert event["type"] == TYPE
    assert event["time"] == data["received_at"]
    if personal:
        assert "subject" not in event.get_attributes()
    else:
        assert event["subject"] == data["device_id"]


async def test_every_cloudevents_mode_reads_back_with_the_sdk(tmp_path: Path) -> None:
    receiver = RawReceiver()
    await receiver.start()
    hub = Hub(
        tmp_path,
        command="run",
        extra_env={
            "CITYHUB_SUBSCRIPTIONS__WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
            "CITYHUB_CLOUDEVENTS__OIN": OIN,
            "CITYHUB_CLOUDEVENTS__TYPE_PREFIX": "nl.test.cityhub",
        },
    )
    keys = await seed(hub.prefix)
    await asyncio.to_thread(hub.start)
    try:
        api = Api(hub, keys)

        async def subscribe(sub_id: str, types: list[str], delivery: dict[str, Any]) -> Any:
            spec = {
                "id": sub_id,
                "name": sub_id,
                "filter": {"device_types": types},
                "delivery": delivery,
            }
            return await api.subscribe("demo", "demo", spec)

        # A kind that does not take the encoding is refused, naming the field.
        status, problem = await api.call(
            "POST",
            "/tenants/demo/subscriptions",
            "demo",
            {
                "id": "bad",
                "name": "bad",
                "delivery": {
                    "kind": "webhook",
                    "url": receiver.url("bad"),
                    "encoding": "cloudevents-binary",
                },
            },
        )
        assert status in (400, 422), problem
        assert "delivery.encoding" in json.dumps(problem)

        hook = await subscribe(
            "noise-ce",
            ["noise"],
            {"kind": "webhook", "url": receiver.url("noise"), "encoding": "cloudevents"},
        )
        receiver.secrets["noise"] = hook["secret"]
        assert hook["delivery"]["encoding"] == "cloudevents"
        structured_kafka = await subscribe(
            "air-ce", ["air_quality"], {"kind": "kafka", "encoding": "cloudevents"}
        )
        binary_kafka = await subscribe(
            "air-ce-bin", ["air_quality"], {"kind": "kafka", "encoding": "cloudevents-binary"}
        )
        await subscribe(
            "park-ce", ["parking"], {"kind": "mqtt", "topic": "park-ce", "encoding": "cloudevents"}
        )
        await subscribe(
            "park-ce-bin",
            ["parking"],
            {"kind": "mqtt", "topic": "park-ce-bin", "encoding": "cloudevents-binary"},
        )
        # Footfall is personal: without an activity nothing of it goes out, with one it goes
        # out without a subject.
        await api.declare_crowd_safety()
        for path, purpose in (("foot", "crowd-safety"), ("foot-none", None)):
            spec = {
                "id": f"{path}-ce",
                "name": path,
                "filter": {"device_types": ["footfall"]},
                "delivery": {
                    "kind": "webhook",
                    "url": receiver.url(path),
                    "encoding": "cloudevents",
                },
            }
            if purpose:
                spec["processing_activity"] = purpose
            receiver.secrets[path] = (await api.subscribe("demo", "demo", spec))["secret"]
        others = await api.subscribe(
            "other",
            "other",
            {
                "id": "all-ce",
                "name": "All we may see",
                "delivery": {"kind": "kafka", "encoding": "cloudevents-binary"},
            },
        )
        assert await wait_for(lambda: hub.metric("cityhub_routed_subscriptions") == 8, 30)

        async with (
            mqtt5_collector("cityhub/sub/demo/park-ce") as park_structured,
            mqtt5_collector("cityhub/sub/demo/park-ce-bin") as park_binary,
        ):
            settings = Settings(mqtt=MqttSettings(host=MQTT_HOST, port=MQTT_PORT))
            await run_simulation(settings, DEVICES, 200.0, count=MESSAGES)

            async def settled() -> list[dict[str, Any]]:
                seen, got = -1, []
                for _ in range(60):
                    got = await read_topic(
                        f"{hub.prefix}.observations", until=lambda r: False, timeout=1.0
                    )
                    if len(got) == seen:
                        return got
                    seen = len(got)
                return got

            observations = await settled()

            def expected(device_type: str) -> set[str]:
                return {o["event_id"] for o in observations if o["device_type"] == device_type}

            want = {t: expected(t) for t in ("noise", "air_quality", "parking", "footfall")}
            assert all(want.values()), hub.log_tail()
            public = {o["event_id"] for o in observations if o["classification"] == "public"}
            assert await wait_for(lambda: ids(receiver.events("noise")) >= want["noise"], 60)
            assert await wait_for(lambda: ids(receiver.events("foot")) >= want["footfall"], 60)
            assert await wait_for(
                lambda: ids([mqtt_event(m) for m in park_structured]) >= want["parking"], 60
            )
            assert await wait_for(
                lambda: ids([mqtt_event(m) for m in park_binary]) >= want["parking"], 60
            )
            for m in park_structured:
                assert getattr(m.properties, "ContentType", None) == "application/cloudevents+json"
            for m in park_binary:
                assert getattr(m.properties, "ContentType", None) == "application/json"

        def all_of(wanted: set[str]) -> Any:
            return lambda got: {str(e["id"]) for _, e in got} >= wanted

        kafka_structured = await kafka_events(
            structured_kafka["topic"], until=all_of(want["air_quality"])
        )
        kafka_binary = await kafka_events(binary_kafka["topic"], until=all_of(want["air_quality"]))
        other_events = await kafka_events(others["topic"], until=all_of(public))

        # Exactly what each filter selects (an id may come twice: at least once).
        assert ids(receiver.events("noise")) == want["noise"]
        assert ids([e for _, e in kafka_structured]) == want["air_quality"]
        assert ids([e for _, e in kafka_binary]) == want["air_quality"]
        assert ids([mqtt_event(m) for m in park_structured]) == want["parking"]
        assert ids([mqtt_event(m) for m in park_binary]) == want["parking"]
        # Every event carries the NL GOV attributes, from its own data.
        for event in receiver.events("noise"):
            check_profile(event)
        for event in [mqtt_event(m) for m in park_structured + park_binary]:
            check_profile(event)
        for headers, event in kafka_binary:
            check_profile(event)
            assert headers["content-type"] == b"application/json"
            assert headers["ce_id"] == str(event["id"]).encode()
        for headers, event in kafka_structured:
            # The SDK takes the record's content-type (the event format, as the Kafka binding
            # has it) for datacontenttype; the envelope's own says application/json.
            assert headers["content-type"] == b"application/cloudevents+json"
            check_profile(event)
        # Webhook batches: signed as ever, in the JSON batch format.
        assert receiver.bad_signatures == 0
        assert {p.content_type for p in receiver.posts["noise"]} == {
            "application/cloudevents-batch+json"
        }
        # Personal items: only to the subscription with an activity, and without a subject.
        assert ids(receiver.events("foot")) == want["footfall"]
        for event in receiver.events("foot"):
            check_profile(event, personal=True)
        assert receiver.posts.get("foot-none", []) == []
        # The other tenant: demo's public items and nothing else.
        assert ids([e for _, e in other_events]) == public
        assert {data_of(e)["classification"] for _, e in other_events} == {"public"}
    finally:
        await asyncio.to_thread(hub.stop)
        await receiver.stop()


async def test_aggregates_go_to_a_kafka_topic_as_one_event_per_revision(tmp_path: Path) -> None:
    """An hour of readings a day ago, straight onto the observations topic (as the aggregates'
    own test does): every window north may see reaches its binary-mode Kafka subscription as an
    aggregate event, its id the window's id and revision, its time the window's end."""
    from aiokafka import AIOKafkaProducer

    from cityhub.streams.subscriptions.filter import may_see

    from .test_aggregates import (
        DEVICES,
        ENV,
        expected,
        hour_a_day_ago,
        observation,
        produce,
        seed_tenants,
    )

    hub = Hub(tmp_path, command="run", extra_env={**ENV, "CITYHUB_CLOUDEVENTS__OIN": OIN})
    keys = await seed_tenants(hub.prefix)
    await asyncio.to_thread(hub.start)
    try:
        api = Api(hub, keys)
        sub = await api.subscribe(
            "north",
            "north",
            {
                "id": "windows-ce",
                "name": "Windows as CloudEvents",
                "source": "aggregates",
                "delivery": {"kind": "kafka", "encoding": "cloudevents-binary"},
            },
        )
        assert await wait_for(lambda: hub.metric("cityhub_routed_subscriptions") == 1, 30)
        base = hour_a_day_ago()
        stream = [
            observation(device, i, base + i * 60 * 1_000_000, "temperature", float(i % 7))
            for i in range(60)
            for device in DEVICES
        ]
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
        await producer.start()
        try:
            await produce(producer, hub.topics["observations"], stream)
        finally:
            await producer.stop()
        want = {
            aid: a
            for aid, a in expected(stream).items()
            if may_see("north", a["tenant"], a["classification"])
            and a["classification"] != "personal"
        }
        assert {a["grouping"] for a in want.values()} == {"device", "area"}

        def windows(got: list[tuple[dict[str, bytes], CloudEvent]]) -> set[str]:
            return {data_of(e)["aggregate_id"] for _, e in got}

        got = await kafka_events(sub["topic"], until=lambda g: windows(g) >= set(want), timeout=90)
        assert windows(got) == set(want)
        for headers, event in got:
            window = data_of(event)
            assert event["id"] == f"{window['aggregate_id']}.{window['revision']}"
            assert event["type"] == "nl.cityhub.aggregate.v1"
            assert event["source"] == SOURCE
            assert event["time"] == window["window_end"]
            assert event["subject"] == window["key"]  # the device, or the area
            assert headers["content-type"] == b"application/json"
            assert want[window["aggregate_id"]]["window_end"] == window["window_end"]
    finally:
        await asyncio.to_thread(hub.stop)
