"""The open-data publisher on the real stack (issue 13): ``cityhub run`` with k = 3.

Tenant ``city`` registers, through the API, three public air sensors in ``centrum``, two in
``noord``, one in ``oost`` and a personal indoor sensor in ``centrum``; the sensors send
temperature (all of them) and relative humidity (``noord`` only) over MQTT as ChirpStack
uplinks, within one minute (the dataset's window here). Once the window closes (the point
stage's idle clock moves the watermark past its end), the
compacted ``<prefix>.open-data`` topic holds exactly: ``centrum``'s temperature (3 devices, the
personal sensor's extreme value left out: the air-quality dataset takes no personal devices) and
the merged ``other-areas`` temperature of ``noord`` and ``oost`` (3 devices together); not
``noord``'s humidity (2 devices, nothing to merge it with: withheld, not even its count), and no
record names a device, a DevEUI or the tenant. The open API serves the two windows without a
key, and the publisher's metrics count what it decided.
Killed (SIGKILL) and started again, the hub writes the same two records again (equal values),
and nothing else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cityhub.connectors.decoders.cayenne import encode_lpp
from cityhub.schemas.open_data import MERGED_AREA
from cityhub.schemas.registry import Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

from .hub import BOOTSTRAP, Hub, publish, read_topic
from .subscribers import Api
from .uplinks import chirpstack, unique_eui

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# device id -> (area, temperature, type)
SENSORS: dict[str, tuple[str, float, str]] = {
    "centrum-1": ("centrum", 20.0, "air"),
    "centrum-2": ("centrum", 21.0, "air"),
    "centrum-3": ("centrum", 22.0, "air"),
    "noord-1": ("noord", 10.0, "air"),
    "noord-2": ("noord", 11.0, "air"),
    "oost-1": ("oost", 12.0, "air"),
    "home-1": ("centrum", 99.0, "indoor"),  # personal: never in the air-quality dataset
}
DATASETS = (
    '[{"id": "air-quality", "title": "Air quality", "description": "Per area, per minute.",'
    ' "quantities": ["temperature", "relative_humidity"], "window_seconds": 60}]'
)
ENV = {
    "CITYHUB_OPEN_DATA__DATASETS": DATASETS,
    "CITYHUB_OPEN_DATA__K": "3",
    "CITYHUB_OPEN_DATA__GRACE_SECONDS": "0",
    "CITYHUB_AGGREGATION__IDLE_CLOSE_SECONDS": "2",
}


async def seed(prefix: str) -> dict[str, str]:
    """Tenant ``city`` and its operator key (the registry's bootstrap, as an operator would)."""
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    store = RegistryStore(settings)
    await store.start()
    try:
        registry, system = Registry(store), Principal.system()
        await registry.create_tenant(system, TenantSpec(id="city", name="City"))
        _, key = await registry.create_key(system, "city", Role.OPERATOR, "operator")
        return {"city": key}
    finally:
        await store.stop()


async def register(api: Api) -> dict[str, str]:
    """The types and sensors, through the API; their DevEUIs by device id."""
    for spec in (
        {"id": "air", "name": "Air", "decoder": "cayenne-lpp", "classification": "public"},
        {
            "id": "indoor",
            "name": "Indoor",
            "decoder": "cayenne-lpp",
            "classification": "personal",
            "personal_data_category": "indoor climate",
        },
    ):
        status, doc = await api.call("POST", "/tenants/city/device-types", "city", spec)
        assert status == 201, doc
    euis = {}
    for device_id, (area, _, type_id) in SENSORS.items():
        euis[device_id] = unique_eui()
        body = {
            "id": device_id,
            "name": device_id,
            "type": type_id,
            "dev_eui": euis[device_id],
            "area": area,
        }
        status, doc = await api.call("POST", "/tenants/city/devices", "city", body)
        assert status == 201, doc
    return euis


def uplinks(euis: dict[str, str], start: datetime) -> Iterable[tuple[str, bytes]]:
    """Three rounds, a second apart, inside one minute's window."""
    for n in range(3):
        at = (start + timedelta(seconds=n)).isoformat(timespec="milliseconds")
        at = at.replace("+00:00", "Z")
        for device_id, (area, temperature, _) in SENSORS.items():
            items: list[tuple[int, str, Any]] = [(1, "temperature", temperature)]
            if area == "noord":
                items.append((2, "relative_humidity", 60.0))
            yield chirpstack(euis[device_id], n + 1, payload=encode_lpp(items), time=at)


async def served_windows(base: str, want: int) -> list[dict[str, Any]]:
    """The air-quality windows the open API serves, once it serves ``want`` (or after 20 s)."""
    items: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(f"{base}/datasets/air-quality/windows") as response:
                doc = await response.json()
                items = doc.get("items", []) if response.status == 200 else []
            if len(items) >= want:
                break
            await asyncio.sleep(0.3)
    return items


async def test_the_publisher_publishes_only_windows_of_k_devices(tmp_path: Path) -> None:
    hub = Hub(tmp_path, command="run", extra_env=ENV)
    keys = await seed(hub.prefix)
    await asyncio.to_thread(hub.start)
    try:
        api = Api(hub, keys)
        euis = await register(api)
        await asyncio.sleep(2.0)  # the bridge's and the worker's registry views follow the API
        # Live data (an observation older than the idle close plus grace is late for a quiet
        # hub), inside one window: not in the last seconds of a minute.
        while datetime.now(UTC).second > 45:
            await asyncio.sleep(0.5)
        now = datetime.now(UTC)
        start = now.replace(second=0, microsecond=0)
        await publish(uplinks(euis, now))
        topic = f"{hub.prefix}.open-data"
        records = await read_topic(
            topic,
            until=lambda r: (
                {d["area"] for d in r if d["quantity"] == "temperature"} >= {"centrum", MERGED_AREA}
            ),
            timeout=90,
        )
        after_end = time.time() - (start + timedelta(minutes=1)).timestamp()
        # Nothing more comes: the humidity window was withheld when its group closed, with the
        # temperature's (both close at the same watermark).
        records = await read_topic(topic, until=lambda r: False, timeout=3)
        by_key = {r["_key"]: r for r in records}
        window = start.isoformat().replace("+00:00", ".000Z")
        assert set(by_key) == {
            f"air-quality/centrum/temperature/{window}",
            f"air-quality/{MERGED_AREA}/temperature/{window}",
        }, by_key
        centrum = by_key[f"air-quality/centrum/temperature/{window}"]
        merged = by_key[f"air-quality/{MERGED_AREA}/temperature/{window}"]
        assert (centrum["mean"], centrum["min"], centrum["max"], centrum["readings"]) == (
            21.0,
            20.0,
            22.0,
            9,
        )
        assert (merged["mean"], merged["min"], merged["max"], merged["readings"]) == (
            11.0,
            10.0,
            12.0,
            9,
        )
        assert centrum["window_end"] == (start + timedelta(minutes=1)).isoformat().replace(
            "+00:00", ".000Z"
        )
        text = repr(records)
        for device_id, eui in euis.items():
            assert device_id not in text
            assert eui not in text
        assert "city" not in text.replace(topic, "")
        assert hub.metric("cityhub_open_data_windows_total", decision="published") == 1
        assert hub.metric("cityhub_open_data_windows_total", decision="merged") == 2
        assert hub.metric("cityhub_open_data_windows_total", decision="withheld") == 1
        assert hub.metric("cityhub_open_data_skipped_total", reason="personal") == 3
        print(f"\nopen data: the window read from the topic {after_end:.1f} s after its end")
        # And the open API serves them, without a key.
        served = await served_windows(f"http://127.0.0.1:{hub.port}/api/v1/open", 2)
        assert sorted((w["area"], w["mean"]) for w in served) == [
            ("centrum", 21.0),
            (MERGED_AREA, 11.0),
        ]
        # Killed and started again, the publisher restores its state and writes the records of
        # the groups it closed lately again (a crash may have lost them): the same bytes, and
        # nothing else (the windows are closed: no revision, no second decision).
        await asyncio.to_thread(hub.kill)
        await asyncio.to_thread(hub.start)
        again = await read_topic(topic, until=lambda r: len(r) >= 2 * len(by_key), timeout=60)
        await asyncio.sleep(3.0)
        again = await read_topic(topic, until=lambda r: False, timeout=3)
        copies: dict[str, set[str]] = {}
        for r in again:
            body = {k: v for k, v in r.items() if not k.startswith("_")}
            copies.setdefault(r["_key"], set()).add(repr(sorted(body.items())))
        assert len(again) == 2 * len(by_key), again
        assert set(copies) == set(by_key)
        assert all(len(bodies) == 1 for bodies in copies.values()), copies
    finally:
        await asyncio.to_thread(hub.stop)
