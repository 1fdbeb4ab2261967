"""Subscriptions under an agreement on the real stack (issue 13): ``cityhub run`` (bridge, worker,
API, delivery).

``port`` offers the temperature of its harbour weather station (not its humidity, not its dock
station); ``city`` asks through the API and ``port`` approves. ``city``'s webhook and live
stream then receive exactly the offered items (the webhook's signed as every delivery);
``uni``'s webhook and ``city``'s Kafka-topic subscription (read directly, so never re-checked)
receive none of ``port``'s items; the delivered items are counted for the agreement. While
``city``'s receiver refuses, items wait in its delivery's queue; ``port`` revokes, and none of
those queued items is delivered once the receiver answers again (nor anything else of
``port``'s); the revocation took effect within 5 s.

Personal items: ``demo`` offers its footfall counters' readings under its own processing
activity; ``city``'s webhook, which names no activity, receives them, and each delivery is in
``demo``'s processing log under ``demo``'s activity, not in ``city``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from cityhub.connectors.decoders.cayenne import encode_lpp
from cityhub.schemas.processing_log import PROCESSING_ACTIVITY_ID, RECIPIENT, TENANT
from cityhub.schemas.registry import (
    Role,
    TenantSpec,
)
from cityhub.schemas.settings import KafkaSettings, MqttSettings, Settings
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.devtools.simulator import build_fleet
from cityhub.streams.devtools.simulator import simulate as run_simulation
from cityhub.streams.devtools.simulator.registration import register_fleet
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

from .harbour import seed
from .hub import BOOTSTRAP, MQTT_HOST, MQTT_PORT, Hub, publish, read_topic
from .subscribers import Api, SseReader, WebhookReceiver, wait_for
from .uplinks import chirpstack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

REVOKED_WITHIN_S = 5.0
OFFER: dict[str, Any] = {
    "id": "harbour-temperature",
    "title": "Harbour temperature",
    "description": "The temperature at the harbour's weather station",
    "selection": {"areas": ["harbour"], "quantities": ["temperature"]},
    "kinds": ["observations"],
    "purposes": ["heat plan"],
}


@contextlib.asynccontextmanager
async def running_hub(workdir: Path) -> AsyncIterator[tuple[Hub, Api, dict[str, str]]]:
    hub = Hub(
        workdir,
        command="run",
        extra_env={
            "CITYHUB_SUBSCRIPTIONS__WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
            # A refusing receiver keeps its batch retrying (queued) rather than dead-lettered.
            "CITYHUB_DELIVERY__WEBHOOK_MAX_ATTEMPTS": "1000",
            "CITYHUB_DELIVERY__WEBHOOK_BACKOFF_CAP_SECONDS": "0.5",
        },
    )
    keys, euis = await seed(hub.prefix)
    await asyncio.to_thread(hub.start)
    try:
        yield hub, Api(hub, keys), euis
    finally:
        await asyncio.to_thread(hub.stop)


class Uplinks:
    """Both stations' uplinks (temperature and humidity each), numbered."""

    def __init__(self, euis: dict[str, str]) -> None:
        self.euis = euis
        self.count = 0

    async def send(self, rounds: int) -> None:
        messages = []
        for _ in range(rounds):
            self.count += 1
            payload = encode_lpp([(1, "temperature", 20.0), (2, "relative_humidity", 60.0)])
            for eui in self.euis.values():
                messages.append(chirpstack(eui, self.count, payload=payload))
        await publish(messages)


def ports(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in items if i.get("tenant") == "port"]


async def test_a_webhook_receives_the_offered_items_until_the_agreement_is_revoked(
    tmp_path: Path,
) -> None:
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        async with running_hub(tmp_path) as (hub, api, euis):
            await _scenario(hub, api, receiver, Uplinks(euis))
    finally:
        await receiver.stop()


async def _scenario(hub: Hub, api: Api, receiver: WebhookReceiver, uplinks: Uplinks) -> None:
    for tenant in ("city", "uni"):
        hook = await api.subscribe(
            tenant,
            tenant,
            {
                "id": "everything",
                "name": "Everything it may see",
                "delivery": {"kind": "webhook", "url": receiver.url(tenant)},
            },
        )
        receiver.secrets[tenant] = hook["secret"]
    await api.subscribe(
        "city",
        "city",
        {"id": "lake", "name": "Read directly", "delivery": {"kind": "kafka"}},
    )
    await api.subscribe("city", "city", {"id": "live", "name": "Live", "delivery": {"kind": "sse"}})
    live = SseReader(api, "city", "city", "live")
    live.start()
    await asyncio.wait_for(live.connected.wait(), 30)
    assert live.status == 200
    try:
        await _shared_then_revoked(hub, api, receiver, uplinks, live)
    finally:
        await live.stop()


def live_items(live: SseReader) -> list[dict[str, Any]]:
    return ports([data for _, data in live.events])


async def _shared_then_revoked(
    hub: Hub, api: Api, receiver: WebhookReceiver, uplinks: Uplinks, live: SseReader
) -> None:
    status, offer = await api.call("POST", "/tenants/port/offers", "port-operator", OFFER)
    assert status == 201, offer
    ask = {"offer": "port/harbour-temperature", "purpose": "heat plan"}
    ask["ends_at"] = rfc3339(time.time() + 3600)
    status, asked = await api.call("POST", "/tenants/city/agreements", "city-operator", ask)
    assert status == 201, asked
    agreement = asked["id"]
    # Nothing is shared before the approval.
    await uplinks.send(2)
    await read_topic(
        hub.topics["observations"], until=lambda r: len(r) >= 8, timeout=60
    )  # both stations' readings are in
    path = f"/tenants/port/agreements/{agreement}"
    status, approved = await api.call("POST", f"{path}/approve", "port-operator")
    assert (status, approved["active"]) == (200, True), approved

    # Shared from within 5 seconds of the approval: send until the first shared item arrives.
    async def first_shared() -> bool:
        await uplinks.send(1)
        return await wait_for(lambda: ports(receiver.items("city")), 1.0)

    assert await wait_for_async(first_shared, 30), hub.log_tail()
    await uplinks.send(5)
    assert await wait_for(lambda: len(ports(receiver.items("city"))) >= 5, 30)
    shared = ports(receiver.items("city"))
    assert {(i["device_id"], i["quantity"]) for i in shared} == {("harbour-1", "temperature")}
    # The live stream too.
    assert await wait_for(lambda: len(live_items(live)) >= 5, 30)
    assert {(i["device_id"], i["quantity"]) for i in live_items(live)} == {
        ("harbour-1", "temperature")
    }
    assert receiver.bad_signatures == 0
    # Not a third tenant, not a subscription read from its Kafka topic.
    assert ports(receiver.items("uni")) == []
    lake = await read_topic(f"{hub.prefix}.sub.city.lake", until=lambda r: False, timeout=3)
    assert ports(lake) == []

    # Counted per agreement, visible to both parties.
    async def usage(who: str, tenant: str) -> int:
        _, doc = await api.call("GET", f"/tenants/{tenant}/agreements/{agreement}", who)
        return int(doc["usage"]["delivered"])

    delivered = len(shared)
    counted = await wait_for_async(lambda: _at_least(usage("port-operator", "port"), delivered), 30)
    assert counted, "the provider never saw the deliveries counted"
    assert await usage("city-operator", "city") >= delivered

    # Queued, then revoked: the receiver refuses, items wait (retried), the provider revokes.
    receiver.modes["city"] = 503
    await uplinks.send(5)
    await asyncio.sleep(3.0)  # routed to city's topic and taken into its delivery's queue

    def refused() -> float:
        return hub.metric(
            "cityhub_subscription_failed_total", tenant="city", subscription="everything"
        )

    assert await wait_for(lambda: refused() > 0, 10), "the refusing receiver was never tried"
    before = len(ports(receiver.items("city")))
    revoked_at = time.time()
    live_before = len(live_items(live))
    status, revoked = await api.call(
        "POST", f"{path}/revoke", "port-operator", {"reason": "the pilot ended"}
    )
    assert (status, revoked["state"]) == (200, "revoked"), revoked
    await asyncio.sleep(REVOKED_WITHIN_S)
    receiver.modes["city"] = "ok"
    await uplinks.send(3)  # and new ones after the revocation
    await asyncio.sleep(6.0)
    after = [d for d in receiver.received.get("city", []) if d.at > revoked_at]
    assert [i for d in after for i in ports(d.body["items"])] == []
    assert len(ports(receiver.items("city"))) == before
    # The live stream had streamed what was routed before (3 s earlier); nothing after.
    assert live_items(live)[live_before:] == []
    # The queued items were there and dropped by the delivery's check, not lost on the way.
    assert hub.metric("cityhub_agreement_items_not_delivered_total", reason="ended") >= 5


async def _at_least(value: Awaitable[int], wanted: int) -> bool:
    return await value >= wanted


async def wait_for_async(
    predicate: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.2
) -> bool:
    """Until the coroutine ``predicate()`` is true, or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(interval)
    return False


async def seed_fleet(prefix: str) -> dict[str, str]:
    """The simulated fleet in tenant ``demo`` (its footfall counters are personal), a tenant
    ``city``; an operator key of each and a subscriber key of ``city``."""
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    store = RegistryStore(settings)
    await store.start()
    try:
        registry, system = Registry(store), Principal.system()
        await register_fleet(registry, build_fleet(FLEET))
        await registry.create_tenant(system, TenantSpec(id="city", name="City"))
        keys = {"city": (await registry.create_key(system, "city", Role.SUBSCRIBER, "sub"))[1]}
        for tenant in ("demo", "city"):
            keys[f"{tenant}-operator"] = (
                await registry.create_key(system, tenant, Role.OPERATOR, "operator")
            )[1]
        return keys
    finally:
        await store.stop()


FLEET = 28
PERSONAL_OFFER: dict[str, Any] = {
    "id": "crowds",
    "title": "Footfall in the centre",
    "description": "Counts of the footfall counters",
    "selection": {"device_types": ["footfall"]},
    "kinds": ["observations"],
    "classification": "personal",
    "processing_activity": "crowd-safety",
    "purposes": ["crowd safety"],
}


async def test_personal_items_go_under_the_providers_activity_and_are_logged_under_it(
    tmp_path: Path,
) -> None:
    receiver = WebhookReceiver()
    await receiver.start()
    hub = Hub(
        tmp_path,
        command="run",
        extra_env={"CITYHUB_SUBSCRIPTIONS__WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]'},
    )
    keys = await seed_fleet(hub.prefix)
    await asyncio.to_thread(hub.start)
    try:
        api = Api(hub, keys)
        # demo's own activity (PublicTask, footfall), naming city among its recipients.
        status, activity = await api.call(
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
                "recipients": ["city"],
            },
        )
        assert status == 201, activity
        # city's subscription names no activity of its own: the provider's is the purpose.
        hook = await api.subscribe(
            "city",
            "city",
            {
                "id": "crowds",
                "name": "Footfall of demo",
                "filter": {"device_types": ["footfall"]},
                "delivery": {"kind": "webhook", "url": receiver.url("crowds")},
            },
        )
        receiver.secrets["crowds"] = hook["secret"]
        status, offer = await api.call(
            "POST", "/tenants/demo/offers", "demo-operator", PERSONAL_OFFER
        )
        assert status == 201, offer
        ask = {"offer": "demo/crowds", "purpose": "crowd safety"}
        ask["ends_at"] = rfc3339(time.time() + 3600)
        status, asked = await api.call("POST", "/tenants/city/agreements", "city-operator", ask)
        assert status == 201, asked
        path = f"/tenants/demo/agreements/{asked['id']}/approve"
        status, approved = await api.call("POST", path, "demo-operator")
        assert status == 200, approved
        await asyncio.sleep(1.0)  # every process's view has the approval (bound: 5 s)
        settings = Settings(mqtt=MqttSettings(host=MQTT_HOST, port=MQTT_PORT))
        await run_simulation(settings, FLEET, 200.0, count=200)
        assert await wait_for(lambda: len(receiver.items("crowds")) >= 3, 60), hub.log_tail()
        got = receiver.items("crowds")
        assert {(i["tenant"], i["device_type"]) for i in got} == {("demo", "footfall")}
        assert receiver.bad_signatures == 0

        # The processing log: under the provider's tenant and activity, naming city's webhook.
        async def logged() -> list[dict[str, Any]]:
            status, page = await api.call(
                "GET", "/tenants/demo/processing-log?activity=crowd-safety", "demo-operator"
            )
            assert status == 200, page
            return [
                r
                for r in page["items"]
                if r["attributes"].get(RECIPIENT) == "subscription:city/crowds (webhook)"
            ]

        assert await wait_for_async(lambda: _nonempty(logged()), 30)
        records = await logged()
        assert {r["attributes"][PROCESSING_ACTIVITY_ID] for r in records} == {activity["id"]}
        assert {r["attributes"][TENANT] for r in records} == {"demo"}
        status, own = await api.call("GET", "/tenants/city/processing-log", "city-operator")
        assert (status, own["items"]) == (200, [])
    finally:
        await asyncio.to_thread(hub.stop)
        await receiver.stop()


async def _nonempty(found: Awaitable[list[Any]]) -> bool:
    return bool(await found)
