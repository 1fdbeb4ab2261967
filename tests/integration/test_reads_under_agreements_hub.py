"""Reads under an agreement through a running hub (issue 13): ``cityhub run`` (bridge, worker with
the history writer, API, delivery) with tenants ``port`` and ``city``, uplinks over MQTT.

``port`` offers the temperature of its harbour station (not its humidity, not its dock station);
``city`` asks through the API and ``port`` approves. ``city``'s key then reads the station's
temperature from the history store through SensorThings and NGSI-LD, and nothing else of
``port``'s; the API counts the reads for the agreement (visible to both parties, through the
usage topic); ``port`` revokes, and within 5 s neither interface shows the station any more.
What this adds to ``test_reads_under_agreements.py``: the process's wiring (``ReadAccess`` from
the API process's sharing view and usage counts) and the agreements' own API.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cityhub.connectors.decoders.cayenne import encode_lpp
from cityhub.schemas.timefmt import rfc3339

from .harbour import seed
from .hub import Hub, publish
from .subscribers import Api
from .uplinks import chirpstack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REVOKED_WITHIN_S = 5.0
OFFER: dict[str, Any] = {
    "id": "harbour-temperature",
    "title": "Harbour temperature",
    "description": "The temperature at the harbour's weather station",
    "selection": {"device_ids": ["harbour-1"], "quantities": ["temperature"]},
    "kinds": ["observations"],
    "purposes": ["heat plan"],
}


@contextlib.asynccontextmanager
async def _running_hub(workdir: Path) -> AsyncIterator[tuple[Hub, Api, dict[str, str]]]:
    hub = Hub(
        workdir,
        command="run",
        extra_env={"CITYHUB_SENSORTHINGS__DATASTREAMS_REFRESH_SECONDS": "1"},
    )
    keys, euis = await seed(hub.prefix)
    await asyncio.to_thread(hub.start)
    try:
        yield hub, Api(hub, keys), euis
    finally:
        await asyncio.to_thread(hub.stop)


async def _get(api: Api, path: str, who: str) -> tuple[int, Any]:
    """GET a path of the hub outside ``/api/v1`` (SensorThings, NGSI-LD) with a named key."""
    headers = {"Authorization": f"Bearer {api.keys[who]}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{api.hub.port}{path}", headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


async def _non_empty(found: Awaitable[list[dict[str, Any]]]) -> bool:
    return bool(await found)


async def _until(check: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.2)
    return False


async def test_a_consumer_reads_the_offered_station_until_the_agreement_is_revoked(
    tmp_path: Path,
) -> None:
    async with _running_hub(tmp_path) as (hub, api, euis):
        await _scenario(hub, api, euis)


async def _scenario(hub: Hub, api: Api, euis: dict[str, str]) -> None:
    payload = encode_lpp([(1, "temperature", 20.0), (2, "relative_humidity", 60.0)])
    # Observed now: SensorThings reads recent Datastreams between its hourly whole reads.
    now = rfc3339(time.time())
    await publish(
        [chirpstack(eui, n, payload=payload, time=now) for n in (1, 2) for eui in euis.values()]
    )

    async def in_history() -> bool:  # the provider's own view: both stations' readings stored
        status, doc = await _get(api, "/sta/v1.1/Observations?$count=true", "port-operator")
        return status == 200 and doc["@iot.count"] >= 8

    assert await _until(in_history, 60), hub.log_tail()

    async def things() -> set[str]:
        status, doc = await _get(api, "/sta/v1.1/Things", "city-operator")
        assert status == 200, doc
        return {t["properties"]["device_id"] for t in doc["value"]}

    async def entities() -> list[dict[str, Any]]:
        status, body = await _get(api, "/ngsi-ld/v1/entities?idPattern=.*", "city-operator")
        assert status == 200, body
        return [e for e in body if ":port:" in e["id"]]

    assert await things() == set()
    assert await entities() == []

    status, offer = await api.call("POST", "/tenants/port/offers", "port-operator", OFFER)
    assert status == 201, offer
    ask = {
        "offer": "port/harbour-temperature",
        "purpose": "heat plan",
        "ends_at": rfc3339(time.time() + 3600),
    }
    status, asked = await api.call("POST", "/tenants/city/agreements", "city-operator", ask)
    assert status == 201, asked
    path = f"/tenants/port/agreements/{asked['id']}"
    status, approved = await api.call("POST", f"{path}/approve", "port-operator")
    assert (status, approved["active"]) == (200, True), approved

    async def shared() -> bool:
        return await things() == {"harbour-1"}

    assert await _until(shared, REVOKED_WITHIN_S), "the approval did not show within 5 s"

    async def streams() -> list[dict[str, Any]]:
        status, doc = await _get(api, "/sta/v1.1/Datastreams", "city-operator")
        assert status == 200, doc
        return [d for d in doc["value"] if d["properties"]["device_id"] == "harbour-1"]

    # The Datastreams seen in history are read again every second (the refresh set above).
    assert await _until(lambda: _non_empty(streams()), 10)
    ports = await streams()
    assert [d["properties"]["quantity"] for d in ports] == ["temperature"]
    status, doc = await _get(
        api, f"/sta/v1.1/Datastreams({ports[0]['@iot.id']})/Observations", "city-operator"
    )
    assert status == 200, doc
    assert [o["result"] for o in doc["value"]] == [20.0, 20.0]
    [entity] = await entities()
    assert ":port:harbour-1" in entity["id"]
    assert "humidity" not in str(entity)

    async def reads(who: str, tenant: str) -> int:
        _, doc = await api.call("GET", f"/tenants/{tenant}/agreements/{asked['id']}", who)
        return int(doc["usage"]["read"])

    async def counted() -> bool:
        return await reads("port-operator", "port") > 0

    assert await _until(counted, 30), "the provider never saw the reads counted"
    assert await reads("city-operator", "city") > 0

    status, revoked = await api.call("POST", f"{path}/revoke", "port-operator", {"reason": "end"})
    assert (status, revoked["state"]) == (200, "revoked"), revoked
    revoked_at = time.monotonic()

    async def gone() -> bool:
        return await things() == set() and await entities() == []

    assert await _until(gone, REVOKED_WITHIN_S), "still shown 5 s after the revocation"
    print(f"reads stopped {time.monotonic() - revoked_at:.2f} s after the revocation's answer")
