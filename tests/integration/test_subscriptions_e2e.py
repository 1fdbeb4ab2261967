"""Subscriptions end to end on the real stack: simulated devices publish over MQTT, the hub
(`cityhub run`: bridge, worker with routing, API, delivery) delivers to a Kafka-topic
subscriber, a signed webhook (verified by the independent ``standardwebhooks`` package), a live
SSE client and an MQTT subscriber, each getting exactly what its filter selects; a subscriber of
another tenant gets the public observations only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cityhub.schemas.registry import Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, MqttSettings, Settings
from cityhub.streams.devtools.simulator import build_fleet
from cityhub.streams.devtools.simulator import simulate as run_simulation
from cityhub.streams.devtools.simulator.registration import CLASSIFICATION, register_fleet
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

from .hub import BOOTSTRAP, MQTT_HOST, MQTT_PORT, Hub, read_topic
from .subscribers import Api, SseReader, WebhookReceiver, mqtt_collector, wait_for

pytestmark = pytest.mark.integration

DEVICES = 28
MESSAGES = 420
PUBLIC_TYPES = {k.value for k, c in CLASSIFICATION.items() if c.value == "public"}


async def seed(prefix: str) -> dict[str, str]:
    """The simulated fleet in tenant demo, a tenant 'other', and a subscriber key for each."""
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    store = RegistryStore(settings)
    await store.start()
    try:
        registry = Registry(store)
        await register_fleet(registry, build_fleet(DEVICES))
        system = Principal.system()
        await registry.create_tenant(system, TenantSpec(id="other", name="Another operator"))
        keys = {}
        for name, tenant in (("demo", "demo"), ("other", "other")):
            keys[name] = (await registry.create_key(system, tenant, Role.SUBSCRIBER, name))[1]
        keys["demo-operator"] = (
            await registry.create_key(system, "demo", Role.OPERATOR, "demo-operator")
        )[1]
        return keys
    finally:
        await store.stop()


async def revoke(prefix: str, secret: str) -> None:
    """Revoke the key of ``secret`` through the registry topic, as the CLI does."""
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    store = RegistryStore(settings)
    await store.start()
    try:
        key_id = secret.removeprefix("chk_").split("_", 1)[0]
        await Registry(store).revoke_key(Principal.system(), key_id)
    finally:
        await store.stop()


@contextlib.asynccontextmanager
async def running_hub(workdir: Path, **env: str) -> AsyncIterator[tuple[Hub, Api]]:
    hub = Hub(
        workdir,
        command="run",
        extra_env={
            "CITYHUB_SUBSCRIPTIONS__WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
            **env,
        },
    )
    keys = await seed(hub.prefix)
    await asyncio.to_thread(hub.start)
    try:
        yield hub, Api(hub, keys)
    finally:
        await asyncio.to_thread(hub.stop)


def of_type(*types: str) -> Callable[[dict[str, Any]], bool]:
    return lambda o: o.get("device_type") in types


async def test_every_delivery_gets_what_its_filter_selects(tmp_path: Path) -> None:
    receiver = WebhookReceiver()
    await receiver.start()
    async with running_hub(tmp_path) as (hub, api):
        kafka_sub = await api.subscribe(
            "demo",
            "demo",
            {
                "id": "air-kafka",
                "name": "Air quality to Kafka",
                "filter": {"device_types": ["air_quality"]},
                "delivery": {"kind": "kafka"},
            },
        )
        hook = await api.subscribe(
            "demo",
            "demo",
            {
                "id": "noise-hook",
                "name": "Noise to a webhook",
                "filter": {"device_types": ["noise"]},
                "delivery": {"kind": "webhook", "url": receiver.url("noise")},
            },
        )
        receiver.secrets["noise"] = hook["secret"]
        # Footfall is personal in the simulated fleet: its live stream serves an activity.
        activity = await api.declare_crowd_safety()
        await api.subscribe(
            "demo",
            "demo",
            {
                "id": "footfall-live",
                "name": "Footfall live",
                "filter": {"device_types": ["footfall"]},
                "delivery": {"kind": "sse"},
                "processing_activity": "crowd-safety",
            },
        )
        await api.subscribe(
            "demo",
            "demo",
            {
                "id": "parking-mqtt",
                "name": "Parking to MQTT",
                "filter": {"device_types": ["parking"]},
                "delivery": {"kind": "mqtt", "topic": "parking"},
            },
        )
        everything = await api.subscribe(
            "other",
            "other",
            {"id": "everything", "name": "All we may see", "delivery": {"kind": "kafka"}},
        )
        assert kafka_sub["topic"] == f"{hub.prefix}.sub.demo.air-kafka"
        assert (
            "secret"
            not in (await api.call("GET", "/tenants/demo/subscriptions/noise-hook", "demo"))[1]
        )
        # The other tenant finds none of demo's subscriptions, and cannot open its stream.
        assert (await api.call("GET", "/tenants/demo/subscriptions/noise-hook", "other"))[0] == 404
        assert await wait_for(lambda: hub.metric("cityhub_routed_subscriptions") == 5, 30)

        live = SseReader(api, "demo", "demo", "footfall-live")
        live.start()
        await asyncio.wait_for(live.connected.wait(), 30)
        assert live.status == 200
        intruder = SseReader(api, "other", "demo", "footfall-live")
        intruder.start()
        await asyncio.wait_for(intruder.connected.wait(), 30)
        assert intruder.status == 404

        async with mqtt_collector("cityhub/sub/demo/parking") as parked:
            settings = Settings(mqtt=MqttSettings(host=MQTT_HOST, port=MQTT_PORT))
            await run_simulation(settings, DEVICES, 200.0, count=MESSAGES)
            observations = await read_topic(
                f"{hub.prefix}.observations", until=lambda r: False, timeout=0.1
            )

            def expected(pred: Callable[[dict[str, Any]], bool]) -> set[str]:
                return {o["event_id"] for o in observations if pred(o)}

            # Wait until the observations stop growing: the worker is done with the run.
            async def settle() -> list[dict[str, Any]]:
                seen = -1
                got: list[dict[str, Any]] = []
                for _ in range(60):
                    got = await read_topic(
                        f"{hub.prefix}.observations", until=lambda r: False, timeout=1.0
                    )
                    if len(got) == seen:
                        return got
                    seen = len(got)
                return got

            observations = await settle()
            assert observations, hub.log_tail()
            want_air = expected(of_type("air_quality"))
            want_noise = expected(of_type("noise"))
            want_footfall = expected(of_type("footfall"))
            want_parking = expected(of_type("parking"))
            want_public = expected(lambda o: o.get("classification") == "public")
            assert all((want_air, want_noise, want_footfall, want_parking))

            def ids(items: list[dict[str, Any]]) -> set[str]:
                return {i["event_id"] for i in items}

            assert await wait_for(lambda: ids(receiver.items("noise")) >= want_noise, 60)
            assert await wait_for(lambda: ids(parked) >= want_parking, 60)
            assert await wait_for(lambda: ids([d for _, d in live.events]) >= want_footfall, 60)
            air = await read_topic(
                kafka_sub["topic"], until=lambda r: ids(r) >= want_air, timeout=60
            )
            public = await read_topic(
                everything["topic"], until=lambda r: ids(r) >= want_public, timeout=60
            )

        await live.stop()
        await intruder.stop()
        # A client that reconnects with Last-Event-ID resumes right after that event.
        resumed = SseReader(api, "demo", "demo", "footfall-live", last_event_id=live.events[9][0])
        resumed.start()
        rest = [d["event_id"] for _, d in live.events[10:]]
        assert await wait_for(lambda: len(resumed.events) >= len(rest), 30)
        await resumed.stop()
        assert [d["event_id"] for _, d in resumed.events] == rest
        # Exactly the filter: nothing more (duplicates of an event id may come: at least once).
        assert ids(air) == want_air
        assert ids(receiver.items("noise")) == want_noise
        assert ids(parked) == want_parking
        assert ids([d for _, d in live.events]) == want_footfall
        # The other tenant: every public observation of demo's devices, and nothing else.
        assert ids(public) == want_public
        assert {o["classification"] for o in public} == {"public"}
        assert {o["device_type"] for o in public} <= PUBLIC_TYPES
        # Webhooks: signed (checked by the receiver), batched, with the envelope.
        assert receiver.bad_signatures == 0
        first = receiver.received["noise"][0]
        assert first.webhook_id.startswith("msg_")
        assert first.body["type"] == "cityhub.observations"
        assert first.body["subscription"] == "noise-hook"
        # SSE ids are partition:offset, to resume with.
        assert all(event_id.startswith("0:") for event_id, _ in live.events)
        # Every personal item the live stream delivered is in the processing log, for its
        # activity and its recipient.
        logged = await read_topic(
            f"{hub.prefix}.processing-log",
            until=lambda r: (
                sum(x["attributes"]["dpl.cityhub.items"] for x in r) >= len(live.events)
            ),
            timeout=30,
        )
        assert {x["attributes"]["dpl.core.processing_activity_id"] for x in logged} == {
            activity["id"]
        }
        assert {x["attributes"]["dpl.cityhub.recipient"] for x in logged} == {
            "subscription:demo/footfall-live (sse)"
        }
        assert sum(x["attributes"]["dpl.cityhub.items"] for x in logged) >= len(live.events)
        assert hub.metric(
            "cityhub_subscription_delivered_total", tenant="demo", subscription="noise-hook"
        ) >= len(want_noise)
        # Revoking a key (here from another process, as `cityhub keys revoke` does) ends the
        # stream it opened: the API process learns it from Kafka and checks every second.
        last = SseReader(api, "demo", "demo", "footfall-live")
        last.start()
        await asyncio.wait_for(last.connected.wait(), 30)
        assert last.status == 200
        await revoke(hub.prefix, api.keys["demo"])
        await asyncio.wait_for(last.ended(), 15)
        assert last.closed is not None
        assert "revoked" in last.closed, last.closed
        # (The earlier readers' connections, closed by their clients, may still be open on the
        # server side until it next writes: they end too.)
        assert await wait_for(
            lambda: (
                hub.metric(
                    "cityhub_subscription_live_streams_ended_total",
                    tenant="demo",
                    subscription="footfall-live",
                )
                >= 1
            ),
            10,
        )
    await receiver.stop()
