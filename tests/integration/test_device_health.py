"""Device health on the real stack: a device reports, then goes quiet. Its health shows when it
was last seen and its signal, then, past its (short) expected interval times the grace, that it
is silent since then; a dead letter of it shows its reason; the silent-device metric counts it;
another tenant's key cannot read any of it; a device that never reported is never_seen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cityhub.connectors.decoders.cayenne import encode_lpp
from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec, Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

from .hub import Hub, publish
from .subscribers import Api
from .uplinks import tts, unique_eui

pytestmark = pytest.mark.integration

ADMIN = Principal.system()
INTERVAL = 4
GRACE = 2.0


@pytest.fixture
async def hub_and_api(tmp_path: Path) -> AsyncIterator[tuple[Hub, Api, str]]:
    hub = Hub(tmp_path)
    hub.extra_env.update(
        {
            # Nothing of this test reads the history store: it need not be up.
            "CITYHUB_HISTORY__ENABLED": "false",
            "CITYHUB_HISTORY__DB_SCHEMA": f"{hub.prefix}_unused",
            "CITYHUB_HEALTH__SILENT_GRACE": str(GRACE),
            "CITYHUB_HEALTH__WRITE_INTERVAL_SECONDS": "1",
        }
    )
    hub.start()
    base = Settings()
    settings = base.model_copy(
        update={"kafka": KafkaSettings(**{**base.kafka.model_dump(), "topic_prefix": hub.prefix})}
    )
    store = RegistryStore(settings)
    await store.start()
    registry = Registry(store)
    keys: dict[str, str] = {}
    try:
        for tenant in ("city", "water"):
            await registry.create_tenant(ADMIN, TenantSpec(id=tenant, name=tenant.title()))
            _, keys[tenant] = await registry.create_key(ADMIN, tenant, Role.OPERATOR, "ops")
        await registry.create_type(
            ADMIN,
            "city",
            DeviceTypeSpec(
                id="air", name="Air", decoder="cayenne-lpp", expected_interval_seconds=900
            ),
        )
        eui = unique_eui()
        await registry.create_device(
            ADMIN,
            "city",
            DeviceSpec(
                id="aq-dam", name="Dam", type="air", dev_eui=eui, expected_interval_seconds=INTERVAL
            ),
        )
        await registry.create_device(
            ADMIN, "city", DeviceSpec(id="aq-mute", name="Mute", type="air")
        )
        yield hub, Api(hub, keys), eui
    finally:
        await store.stop()
        hub.stop()


async def poll(api: Api, path: str, who: str, until: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    doc: Any = None
    while time.monotonic() < deadline:
        status, doc = await api.call("GET", path, who)
        if status == 200 and until(doc):
            return doc
        await asyncio.sleep(0.3)
    raise AssertionError(f"{path} never got there: {doc}")


async def test_a_device_reports_goes_quiet_and_is_silent(hub_and_api: tuple[Hub, Api, str]) -> None:
    hub, api, eui = hub_and_api
    path = "/tenants/city/devices/aq-dam/health"
    status, doc = await api.call("GET", path, "city")
    assert (status, doc["state"], doc["last_seen"]) == (200, "never_seen", None)

    payload = encode_lpp([(1, "temperature", 7.5), (2, "relative_humidity", 88.0)])
    sent_at = time.time()
    await publish([tts("aq-dam", eui, 1, payload=payload), tts("aq-dam", eui, 2, payload=payload)])
    seen = await poll(api, path, "city", lambda d: d["readings"] == 4, timeout=60)
    assert seen["state"] == "ok"
    assert seen["expected_interval_seconds"] == INTERVAL
    assert seen["silent_after_seconds"] == INTERVAL * GRACE
    last_seen = parse_rfc3339(seen["last_seen"]).timestamp()
    assert sent_at - 1 < last_seen < time.time()
    # The best of the uplink's two gateways, once per uplink (not once per quantity).
    assert seen["rssi"]["last"] == -61
    assert seen["snr"]["hourly"] == [9.5]
    assert (seen["flagged_24h"], seen["flagged_share_24h"]) == (0, 0.0)

    # Quiet now: silent once the grace times its interval passed, with nothing written.
    silent = await poll(api, path, "city", lambda d: d["state"] == "silent", timeout=30)
    assert silent["silent_since"] == silent["last_seen"] == seen["last_seen"]
    assert time.time() - last_seen > INTERVAL * GRACE

    # A message of it that cannot be decoded: its dead letter names the reason.
    await publish([tts("aq-dam", eui, 3, payload=b"\x01\x67")])
    lettered = await poll(api, path, "city", lambda d: d["dead_letters"], timeout=60)
    [reason] = lettered["dead_letters"]
    assert (reason["reason"], reason["count"]) == ("undecodable_payload", 1)
    assert lettered["state"] == "silent", "a dead letter is not a reading"

    # The listing's filters, and the metric for alerting.
    listing = await poll(
        api, "/tenants/city/device-health?state=silent", "city", lambda d: d["items"], timeout=10
    )
    assert [d["device"] for d in listing["items"]] == ["aq-dam"]
    status, doc = await api.call("GET", "/tenants/city/device-health?state=never_seen", "city")
    assert [d["device"] for d in doc["items"]] == ["aq-mute"]
    deadline = time.monotonic() + 40
    while hub.metric("cityhub_devices_silent", tenant="city", type="air") != 1:
        assert time.monotonic() < deadline, hub.metrics()[-3000:]
        await asyncio.sleep(1)
    assert hub.metric("cityhub_devices_never_seen", tenant="city", type="air") == 1

    # Another tenant's key: not found, for the device and for the tenant's listing.
    for other in (path, "/tenants/city/device-health"):
        status, doc = await api.call("GET", other, "water")
        assert status == 404, doc
    status, doc = await api.call("GET", "/tenants/water/device-health", "water")
    assert (status, doc["items"]) == (200, [])

    # It reports again: ok at once.
    await publish([tts("aq-dam", eui, 4, payload=payload)])
    back = await poll(api, path, "city", lambda d: d["readings"] == 6, timeout=60)
    assert (back["state"], back["silent_since"]) == ("ok", None)


async def test_killed_and_started_again_it_counts_nothing_twice(
    hub_and_api: tuple[Hub, Api, str],
) -> None:
    hub, api, eui = hub_and_api
    path = "/tenants/city/devices/aq-dam/health"
    payload = encode_lpp([(1, "temperature", 7.5), (2, "relative_humidity", 88.0)])
    await publish([tts("aq-dam", eui, n, payload=payload) for n in range(1, 4)])
    before = await poll(api, path, "city", lambda d: d["readings"] == 6, timeout=60)
    # SIGKILL: whatever the health stage took since its last commit is read again.
    hub.kill()
    hub.start()
    again = await poll(api, path, "city", lambda d: d["readings"] >= 6, timeout=60)
    assert again["first_seen"] == before["first_seen"]
    await publish([tts("aq-dam", eui, 4, payload=payload)])
    after = await poll(api, path, "city", lambda d: d["readings"] >= 8, timeout=60)
    await asyncio.sleep(3)  # a replay's records would be counted by now
    status, doc = await api.call("GET", path, "city")
    assert (status, doc["readings"], after["readings"]) == (200, 8, 8)
    assert doc["first_seen"] == before["first_seen"]
