"""The README's partner guide, step by step, on the real stack (issue 13).

A water board joins the city's hub as a tenant, the way the README's "Joining as a partner" tells
it: the hub's administrator registers it and gives it an operator key with the CLI; the water
board registers its device type and imports its The Things Stack end devices (bound to its own
application) through the API, and its network server publishes their uplinks to the city's
broker; it offers its canal levels. The city finds the offer, asks for an agreement for flood
warning, and the water board approves. From then on the city's live stream carries the water
board's levels and SensorThings shows its gauges to the city's key, each use counted and visible
to both parties; before the approval and after the revocation, the city sees none of it. Another
tenant (``uni``) never does.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from cityhub.schemas.timefmt import rfc3339

from .hub import Hub, publish
from .subscribers import Api, SseReader, wait_for
from .uplinks import unique_eui

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

APPLICATION = "water-levels"
TTS_TENANT = "waterboard"
GAUGES = ("canal-01", "canal-02", "canal-03")
REVOKED_WITHIN_S = 5.0


def cli(hub: Hub, *args: str) -> str:
    """``cityhub <args>`` as the hub's administrator runs it, which must succeed."""
    done = hub.cli(*args)
    assert done.returncode == 0, f"cityhub {' '.join(args)}: {done.stderr}"
    return done.stdout


def end_devices(euis: dict[str, str]) -> list[dict[str, Any]]:
    """The water board's gauges as ``ttn-lw-cli end-devices list`` exports them, with cityhub's
    ``area`` beside The Things Stack's fields."""
    return [
        {
            "ids": {
                "device_id": device_id,
                "dev_eui": eui.upper(),
                "application_ids": {"application_id": APPLICATION},
            },
            "name": f"Canal gauge {device_id[-2:]}",
            "locations": {"user": {"latitude": 52.08 + n / 100, "longitude": 4.31}},
            "area": "canals",
        }
        for n, (device_id, eui) in enumerate(euis.items())
    ]


def uplink(device_id: str, eui: str, f_cnt: int, level: float) -> tuple[str, bytes]:
    """An uplink as the water board's The Things Stack publishes it to the city's broker."""
    doc = {
        "end_device_ids": {
            "device_id": device_id,
            "application_ids": {"application_id": APPLICATION},
            "dev_eui": eui.upper(),
        },
        "received_at": rfc3339(time.time()),
        "uplink_message": {
            "f_port": 1,
            "f_cnt": f_cnt,
            "decoded_payload": {"water_level": level},
            "rx_metadata": [{"gateway_ids": {"gateway_id": "lock-gw"}, "rssi": -80, "snr": 7.0}],
            "received_at": rfc3339(time.time()),
        },
    }
    topic = f"v3/{APPLICATION}@{TTS_TENANT}/devices/{device_id}/up"
    return topic, json.dumps(doc).encode()


class Gauges:
    def __init__(self, euis: dict[str, str]) -> None:
        self.euis, self.f_cnt = euis, 0

    async def send(self) -> None:
        self.f_cnt += 1
        await publish(
            uplink(device_id, eui, self.f_cnt, 1.0 + self.f_cnt / 100)
            for device_id, eui in self.euis.items()
        )


def water_board_items(live: SseReader) -> list[dict[str, Any]]:
    return [data for _, data in live.events if data.get("tenant") == "waterboard"]


async def gauges_seen(api: Api, who: str) -> set[str]:
    status, doc = await api.sta("/Things?$top=100", who)
    assert status == 200, doc
    return {
        thing["properties"]["device_id"]
        for thing in doc["value"]
        if thing["properties"]["tenant"] == "waterboard"
    }


async def test_a_partner_joins_offers_and_shares_under_an_agreement(tmp_path: Path) -> None:
    hub = Hub(tmp_path, command="run")
    # Step 1: the administrator registers the partners (the registry is on Kafka; the hub's
    # processes follow it, so this may happen before or while the hub runs).
    for tenant, name in (("waterboard", "Water board"), ("city", "City"), ("uni", "University")):
        cli(hub, "tenants", "create", tenant, "--name", name)
    keys = {
        "waterboard-operator": hub.create_key("waterboard", "operator"),
        "city-operator": hub.create_key("city", "operator"),
        "city": hub.create_key("city", "subscriber"),
        "uni": hub.create_key("uni", "subscriber"),
    }
    await asyncio.to_thread(hub.start)
    try:
        await _guide(hub, Api(hub, keys))
    finally:
        await asyncio.to_thread(hub.stop)


async def _guide(hub: Hub, api: Api) -> None:
    # Step 3: the water board registers its type and imports its end devices.
    status, doc = await api.call(
        "POST",
        "/tenants/waterboard/device-types",
        "waterboard-operator",
        {"id": "level", "name": "Canal level", "decoder": "network"},
    )
    assert status == 201, doc
    euis = {device_id: unique_eui() for device_id in GAUGES}
    status, report = await api.send(
        "POST",
        f"/tenants/waterboard/devices/_import?type=level&ttsTenant={TTS_TENANT}",
        "waterboard-operator",
        json.dumps(end_devices(euis)).encode(),
        "application/json",
    )
    assert status == 200, report
    assert (report["created"], report["failed"]) == (len(GAUGES), 0), report
    status, gauge = await api.call(
        "GET", "/tenants/waterboard/devices/canal-01", "waterboard-operator"
    )
    assert gauge["network"] == {"server": "tts", "application": APPLICATION, "tenant": TTS_TENANT}

    # The city listens before anything is shared; so does a third tenant.
    for who in ("city", "uni"):
        await api.subscribe(who, who, {"id": "live", "name": "Live", "delivery": {"kind": "sse"}})
    city = SseReader(api, "city", "city", "live")
    uni = SseReader(api, "uni", "uni", "live")
    for reader in (city, uni):
        reader.start()
        await asyncio.wait_for(reader.connected.wait(), 30)
        assert reader.status == 200
    try:
        await _offer_agree_use_revoke(hub, api, Gauges(euis), city, uni)
    finally:
        await city.stop()
        await uni.stop()


async def _offer_agree_use_revoke(
    hub: Hub, api: Api, gauges: Gauges, city: SseReader, uni: SseReader
) -> None:
    # Step 2: the water board's network server publishes; nothing is shared yet.
    for _ in range(3):
        await gauges.send()
    assert await wait_for(lambda: hub.metric("cityhub_normaliser_observations_total") >= 9, 60)
    assert await gauges_seen(api, "city") == set()

    # Step 4: the offer.
    offer = {
        "id": "canal-levels",
        "title": "Canal water levels",
        "description": "The water level at the water board's canal gauges, every few minutes.",
        "selection": {"device_types": ["level"]},
        "kinds": ["observations", "aggregates"],
        "licence": "CC-BY-4.0",
        "purposes": ["flood warning"],
        "listed": True,
    }
    status, doc = await api.call("POST", "/tenants/waterboard/offers", "waterboard-operator", offer)
    assert status == 201, doc

    # Step 5: the city finds it and asks; the water board approves.
    status, listed = await api.call("GET", "/offers", "city")
    assert status == 200, listed
    assert any(o["tenant"] == "waterboard" and o["id"] == "canal-levels" for o in listed["items"])
    ask = {
        "offer": "waterboard/canal-levels",
        "purpose": "flood warning",
        "ends_at": rfc3339(time.time() + 365 * 86400),
    }
    status, asked = await api.call("POST", "/tenants/city/agreements", "city-operator", ask)
    assert status == 201, asked
    assert asked["state"] == "requested", asked
    agreement = asked["id"]
    await gauges.send()
    await asyncio.sleep(3.0)
    assert water_board_items(city) == [], "shared before the approval"
    status, waiting = await api.call(
        "GET", "/tenants/waterboard/agreements?role=provider", "waterboard-operator"
    )
    assert [a["id"] for a in waiting["items"]] == [agreement], waiting
    path = f"/tenants/waterboard/agreements/{agreement}"
    status, approved = await api.call("POST", f"{path}/approve", "waterboard-operator")
    assert (status, approved["active"]) == (200, True), approved

    # Step 6: the city uses it: its live stream and its reads.
    async def arrived() -> bool:
        await gauges.send()
        return await wait_for(lambda: water_board_items(city), 1.0)

    assert await _until(arrived, 30), hub.log_tail()
    items = water_board_items(city)
    assert {i["device_id"] for i in items} <= set(GAUGES)
    assert {i["quantity"] for i in items} == {"water_level"}
    assert await gauges_seen(api, "city") == set(GAUGES)
    assert await gauges_seen(api, "uni") == set()
    assert water_board_items(uni) == []

    # Both parties see the uses counted.
    async def counted() -> bool:
        _, doc = await api.call("GET", path, "waterboard-operator")
        usage = doc["usage"]
        return bool(usage["delivered"] >= len(items) and usage["read"] >= len(GAUGES))

    assert await _until(counted, 30), "the provider never saw the uses counted"
    _, seen_by_city = await api.call("GET", f"/tenants/city/agreements/{agreement}", "city")
    assert seen_by_city["usage"]["delivered"] >= len(items)

    # Either party ends it; from then on the city sees nothing of the water board's.
    status, revoked = await api.call(
        "POST", f"{path}/revoke", "waterboard-operator", {"reason": "the pilot ended"}
    )
    assert (status, revoked["state"]) == (200, "revoked"), revoked
    await asyncio.sleep(REVOKED_WITHIN_S)
    before = len(water_board_items(city))
    assert await gauges_seen(api, "city") == set()
    for _ in range(3):
        await gauges.send()
    await asyncio.sleep(5.0)
    assert len(water_board_items(city)) == before
    assert water_board_items(uni) == []


async def _until(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.2)
    return False
