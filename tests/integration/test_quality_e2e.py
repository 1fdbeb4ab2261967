"""Quality flags on the real stack: a street sensor publishes over MQTT, `cityhub run`
normalises its uplinks, and the observations arrive on <prefix>.observations, every one of
them, with the flags its values earn (out of range, spike, flat line, the device's own fault);
a subscription that takes only unflagged observations, and one that leaves out spikes, get
exactly those; the flags are counted in the hub's metrics."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec, Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

from .hub import BOOTSTRAP, Hub, publish, read_topic
from .subscribers import Api, wait_for

pytestmark = pytest.mark.integration

DEVICE = "street-1"
READINGS = 10


async def seed(prefix: str) -> dict[str, str]:
    """Tenant ``city`` with a street-sensor type and one plain MQTT device, and a subscriber key."""
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    store = RegistryStore(settings)
    await store.start()
    try:
        registry = Registry(store)
        system = Principal.system()
        await registry.create_tenant(system, TenantSpec(id="city", name="City"))
        await registry.create_type(
            system, "city", DeviceTypeSpec(id="street", name="Street sensor")
        )
        await registry.create_device(
            system, "city", DeviceSpec(id=DEVICE, name="Street sensor 1", type="street")
        )
        return {"city": (await registry.create_key(system, "city", Role.SUBSCRIBER, "city"))[1]}
    finally:
        await store.stop()


def uplinks(start: float) -> list[tuple[str, bytes]]:
    """Ten readings ten minutes apart, sent at once (their own times say when): a wild
    temperature, a spike, a fault report, and a noise level stuck at 55 dB throughout."""
    out = []
    for i in range(READINGS):
        fields: dict[str, Any] = {"temperature": 10.0 + i * 0.1, "laeq": 55.0}
        if i == 2:
            fields["temperature"] = -80.0
        if i == 5:
            fields["temperature"] = 45.0
        if i == 7:
            fields["error"] = True
        payload = {"time": rfc3339(start + i * 600), **fields}
        out.append((f"cityhub/ingest/{DEVICE}", json.dumps(payload).encode()))
    return out


def sub(sub_id: str, quality: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"id": sub_id, "name": sub_id, "delivery": {"kind": "kafka"}}
    if quality is not None:
        spec["filter"] = {"quality": quality}
    return spec


async def test_flagged_uplinks_arrive_flagged_and_filtered_subscriptions_skip_them(
    tmp_path: Path,
) -> None:
    hub = Hub(
        tmp_path,
        command="run",
        extra_env={
            "CITYHUB_QUALITY__LIMITS": '{"sound_level": {"flat_line_seconds": 3000}}',
            # No history store: this test reads topics only (and leaves no schema behind).
            "CITYHUB_HISTORY__ENABLED": "false",
            "CITYHUB_HISTORY__DB_SCHEMA": "quality_e2e_unused",
        },
    )
    keys = await seed(hub.prefix)
    await asyncio.to_thread(hub.start)
    try:
        api = Api(hub, keys)
        everything = await api.subscribe("city", "city", sub("everything", None))
        clean = await api.subscribe("city", "city", sub("clean", "unflagged"))
        no_spikes = await api.subscribe("city", "city", sub("no-spikes", {"exclude": ["spike"]}))
        assert await wait_for(lambda: hub.metric("cityhub_routed_subscriptions") == 3, 30)

        await publish(uplinks(time.time() - 3 * 3600))
        expected = 2 * READINGS + 1  # temperature and noise each time, and the error field
        observations = await read_topic(
            f"{hub.prefix}.observations", until=lambda r: len(r) >= expected, timeout=60
        )
        assert len(observations) == expected, hub.log_tail()
        by_time = sorted(observations, key=lambda o: (o["observed_at"], o["quantity"]))

        def flags(quantity: str) -> list[list[str]]:
            return [o["quality"] for o in by_time if o["quantity"] == quantity]

        assert flags("temperature") == [
            [],
            [],
            ["out_of_range", "spike"],
            [],
            [],
            ["spike"],
            [],
            ["device_fault"],
            [],
            [],
        ]
        assert flags("sound_level") == [
            *([[]] * 6),
            ["flat_line"],
            ["flat_line", "device_fault"],
            ["flat_line"],
            ["flat_line"],
        ]
        assert flags("error") == [["device_fault"]]
        # every value as the device sent it, flagged or not
        assert [o["value"] for o in by_time if o["quantity"] == "temperature"][2] == -80.0

        def ids(items: list[dict[str, Any]]) -> set[str]:
            return {i["event_id"] for i in items}

        want_all = ids(observations)
        want_clean = ids([o for o in observations if not o["quality"]])
        want_no_spikes = ids([o for o in observations if "spike" not in o["quality"]])
        assert want_clean < want_no_spikes < want_all
        got_all = await read_topic(
            everything["topic"], until=lambda r: ids(r) >= want_all, timeout=60
        )
        got_clean = await read_topic(
            clean["topic"], until=lambda r: ids(r) >= want_clean, timeout=60
        )
        got_no_spikes = await read_topic(
            no_spikes["topic"], until=lambda r: ids(r) >= want_no_spikes, timeout=60
        )
        assert ids(got_all) == want_all
        assert ids(got_clean) == want_clean
        assert ids(got_no_spikes) == want_no_spikes
        assert await wait_for(
            lambda: (
                hub.metric("cityhub_quality_flags_total", flag="spike", quantity="temperature") == 2
            ),
            30,
        ), hub.metrics()
        assert hub.metric("cityhub_quality_flags_total", flag="flat_line") == 4
    finally:
        await asyncio.to_thread(hub.stop)
