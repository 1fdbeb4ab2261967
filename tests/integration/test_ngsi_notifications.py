"""NGSI-LD webhook deliveries end to end on the real stack: simulated devices publish over MQTT,
the hub (``cityhub run``) delivers signed webhook batches in the ``ngsi-ld`` (Notification) and
``ngsi-ld-upsert`` (a broker's batch upsert) encodings to a real HTTP receiver. Every body is
expanded by a JSON-LD processor (pyld, core context from the local copy) and holds exactly the
observations the filter selects, as the entities of their type's Smart Data Model; a personal
subscription (with a processing activity, so the gate lets its items through) gets
Notifications without any of them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pyld import jsonld

from cityhub.connectors.ngsi_ld.context import CORE_CONTEXT_URL, core_context_document
from cityhub.connectors.ngsi_ld.entities import DeviceFacts, Reading, fragment
from cityhub.connectors.ngsi_ld.models import EntityMapping
from cityhub.schemas.registry import (
    Classification,
    DeviceTypeSpec,
    NgsiLdSpec,
    Role,
    SmartDataModel,
    TenantSpec,
)
from cityhub.schemas.settings import KafkaSettings, MqttSettings, Settings
from cityhub.streams.devtools.simulator import build_fleet
from cityhub.streams.devtools.simulator import simulate as run_simulation
from cityhub.streams.devtools.simulator.registration import register_fleet
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

from .hub import BOOTSTRAP, MQTT_HOST, MQTT_PORT, Hub, read_topic
from .subscribers import Api, WebhookReceiver, wait_for

pytestmark = pytest.mark.integration

DEVICES = 28
MESSAGES = 300
NGSI = "https://uri.etsi.org/ngsi-ld/"
ENV = "https://smartdatamodels.org/dataModel.Environment/"
MODELS = {
    "noise": SmartDataModel.NOISE_LEVEL_OBSERVED,
    "air_quality": SmartDataModel.AIR_QUALITY_OBSERVED,
}


def loader(url: str, options: Any = None) -> dict[str, Any]:
    assert url == CORE_CONTEXT_URL, f"the processor asked for {url}"
    return {"contextUrl": None, "documentUrl": url, "document": core_context_document()}


async def seed(prefix: str) -> dict[str, str]:
    """The demo tenant with its noise and air quality types shown as their Smart Data Models
    (made before the fleet's, which keeps them), the fleet, and keys."""
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    store = RegistryStore(settings)
    await store.start()
    try:
        registry = Registry(store)
        system = Principal.system()
        await registry.create_tenant(system, TenantSpec(id="demo", name="Demo"))
        for type_id, model in MODELS.items():
            spec = DeviceTypeSpec(
                id=type_id,
                name=type_id,
                classification=Classification.PUBLIC,
                ngsi_ld=NgsiLdSpec(model=model),
            )
            await registry.create_type(system, "demo", spec)
        await register_fleet(registry, build_fleet(DEVICES))
        keys = {}
        for name, role in (("demo", Role.SUBSCRIBER), ("demo-operator", Role.OPERATOR)):
            keys[name] = (await registry.create_key(system, "demo", role, name))[1]
        return keys
    finally:
        await store.stop()


def expected_fragment(observation: dict[str, Any]) -> tuple[str, str, str, Any]:
    """(entity id, attribute, observedAt, value) that an observation's fragment must show."""
    mapping = EntityMapping(MODELS[observation["device_type"]])
    device = DeviceFacts(observation["tenant"], observation["device_id"], "", mapping)
    reading = Reading(
        observation["quantity"],
        observation["value"],
        observation["unit"],
        observation["observed_at"],
    )
    shown = fragment(device, reading)
    attribute = next(k for k in shown if k not in ("id", "type"))
    return shown["id"], attribute, reading.observed_at, shown[attribute]["value"]


def newest(observations: list[dict[str, Any]]) -> set[tuple[str, str, str, Any]]:
    """What a broker that took every upsert holds: per entity attribute, the fragment of the
    newest observation, the later one in topic order (a device's order) on a tie. Two readings
    of one device at one instant may share an attribute (the channels of a quantity, e.g. the
    ``analog_in`` inputs of a Cayenne LPP uplink): the upsert keeps only the later one."""
    held: dict[tuple[str, str], tuple[str, str, str, Any]] = {}
    for observation in observations:
        shown = expected_fragment(observation)
        old = held.get(shown[:2])
        if old is None or old[2] <= shown[2]:
            held[shown[:2]] = shown
    return set(held.values())


def fragments_of(bodies: list[Any]) -> list[dict[str, Any]]:
    found = []
    for body in bodies:
        found += body["data"] if isinstance(body, dict) else body
    return found


def shown(fragments: list[dict[str, Any]]) -> set[tuple[str, str, str, Any]]:
    out = set()
    for f in fragments:
        for name, value in f.items():
            if (
                isinstance(value, dict)
                and value.get("type") == "Property"
                and "observedAt" in value
            ):
                out.add((f["id"], name, value["observedAt"], value["value"]))
    return out


async def test_ngsi_ld_notifications_and_upserts_from_the_real_stack(tmp_path: Path) -> None:
    receiver = WebhookReceiver()
    await receiver.start()
    hub = Hub(
        tmp_path,
        command="run",
        extra_env={"CITYHUB_SUBSCRIPTIONS__WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]'},
    )
    keys = await seed(hub.prefix)
    await asyncio.to_thread(hub.start)
    try:
        api = Api(hub, keys)
        for path, types, encoding in (
            ("noise", ["noise"], "ngsi-ld"),
            ("air", ["air_quality"], "ngsi-ld-upsert"),
        ):
            spec = {
                "id": f"{path}-ld",
                "name": path,
                "filter": {"device_types": types},
                "delivery": {"kind": "webhook", "url": receiver.url(path), "encoding": encoding},
            }
            created = await api.subscribe("demo", "demo", spec)
            assert created["delivery"]["encoding"] == encoding
            receiver.secrets[path] = created["secret"]
        await api.declare_crowd_safety()
        foot = await api.subscribe(
            "demo",
            "demo",
            {
                "id": "foot-ld",
                "name": "foot",
                "filter": {"device_types": ["footfall"]},
                "processing_activity": "crowd-safety",
                "delivery": {"kind": "webhook", "url": receiver.url("foot"), "encoding": "ngsi-ld"},
            },
        )
        receiver.secrets["foot"] = foot["secret"]
        assert await wait_for(lambda: hub.metric("cityhub_routed_subscriptions") == 3, 30)

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
        want = {
            t: {expected_fragment(o) for o in observations if o["device_type"] == t}
            for t in ("noise", "air_quality")
        }
        assert all(want.values()), hub.log_tail()
        air_newest = newest([o for o in observations if o["device_type"] == "air_quality"])
        feet = [o for o in observations if o["device_type"] == "footfall"]
        assert feet, hub.log_tail()

        def bodies(path: str) -> list[Any]:
            return [d.body for d in receiver.received.get(path, [])]

        assert await wait_for(lambda: shown(fragments_of(bodies("noise"))) >= want["noise"], 60)
        # The upsert promises each entity attribute's newest value, not every observation (it
        # merges a batch's fragments of one entity): wait for those.
        assert await wait_for(lambda: shown(fragments_of(bodies("air"))) >= air_newest, 60)
        assert await wait_for(lambda: len(bodies("foot")) > 0, 60)

        # Exactly what the filters select (the upsert keeps each entity's newest value of a
        # batch, so it shows a subset of the air quality observations, never anything else).
        assert shown(fragments_of(bodies("noise"))) == want["noise"]
        assert shown(fragments_of(bodies("air"))) <= want["air_quality"]
        assert receiver.bad_signatures == 0
        expanded_terms: set[str] = set()
        for body in bodies("noise"):
            assert body["type"] == "Notification"
            assert body["subscriptionId"] == "urn:ngsi-ld:Subscription:demo:noise-ld"
            node = jsonld.expand(body, {"documentLoader": loader})[0]
            assert node["@type"] == [NGSI + "Notification"]
            for entity in node[NGSI + "data"]:
                assert entity["@type"] == [ENV + "NoiseLevelObserved"]
                expanded_terms |= set(entity)
        assert ENV + "LAeq" in expanded_terms  # sound_level as the model's own attribute
        for body in bodies("air"):
            ids = [entity["id"] for entity in body]
            assert len(ids) == len(set(ids))  # an upsert names each entity once
            for entity in body:
                node = jsonld.expand(entity, {"documentLoader": loader})[0]
                assert node["@type"] == [ENV + "AirQualityObserved"]
        # Personal items reach the subscription (it has an activity) but no notification
        # shows any of them.
        assert fragments_of(bodies("foot")) == []
    finally:
        await asyncio.to_thread(hub.stop)
        await receiver.stop()
