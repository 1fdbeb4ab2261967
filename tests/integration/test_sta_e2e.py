"""SensorThings end to end on the real stack: MQTT readings → bridge → normaliser → history
writer → PostgreSQL → ``/sta/v1.1`` of the same ``cityhub run`` hub, with the registry on Kafka.
A tenant's key reads its devices' Datastreams and Observations; another tenant's key sees the
public device only; a resident's device is seen by nobody."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cityhub.schemas.registry import Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.streams.history.connection import connect, password_path
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.sensorthings.ids import entity_id

from .hub import BOOTSTRAP, Hub, publish
from .subscribers import Api

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TENANT = "city"
READINGS = 10
START_S = (int(time.time()) // 3600 - 24) * 3600
HOME = {"latitude": 52.0917, "longitude": 5.1214}


async def seed(prefix: str) -> dict[str, str]:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    store = RegistryStore(settings, client_id=f"{prefix}-seed")
    await store.start()
    try:
        registry, system = Registry(store), Principal.system()
        await registry.create_tenant(system, TenantSpec(id=TENANT, name="City"))
        await registry.create_tenant(system, TenantSpec(id="other", name="Other"))
        return {
            "op": (await registry.create_key(system, TENANT, Role.OPERATOR, "op"))[1],
            "other": (await registry.create_key(system, "other", Role.SUBSCRIBER, "other"))[1],
        }
    finally:
        await store.stop()


def reading(device: str, i: int, value: float) -> tuple[str, bytes]:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(START_S + i * 60))
    return f"cityhub/ingest/{device}", json.dumps({"time": at, "temperature": value}).encode()


async def sta(hub: Hub, key: str, path: str, **query: str) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{hub.port}/sta/v1.1{path}"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, params=query, headers={"X-API-Key": key}) as response,
    ):
        return response.status, await response.json(content_type=None)


async def test_readings_reach_sensorthings_with_the_visibility_rule(
    tmp_path: Path, history_settings: Settings
) -> None:
    hub = Hub(
        tmp_path,
        command="run",
        extra_env={
            "CITYHUB_HISTORY__ENABLED": "true",
            "CITYHUB_HISTORY__DB_SCHEMA": history_settings.history.db_schema,
            "CITYHUB_HISTORY__PASSWORD_FILE": str(password_path(history_settings).resolve()),
            "CITYHUB_SENSORTHINGS__DATASTREAMS_REFRESH_SECONDS": "0.5",
        },
    )
    keys = await seed(hub.prefix)
    await asyncio.to_thread(hub.start)
    api = Api(hub, keys)
    try:
        for spec in (
            {"id": "air", "name": "Air"},
            {"id": "open-air", "name": "Open air", "classification": "public"},
            {"id": "home-air", "name": "Air at home", "classification": "personal"},
        ):
            status, doc = await api.call("POST", f"/tenants/{TENANT}/device-types", "op", spec)
            assert status == 201, doc
        for device, kind in (("street-1", "air"), ("square-1", "open-air"), ("home-1", "home-air")):
            body = {"id": device, "name": device.title(), "type": kind, "location": HOME}
            status, doc = await api.call("POST", f"/tenants/{TENANT}/devices", "op", body)
            assert status == 201, doc
        await asyncio.sleep(2)  # the worker's registry view follows the API's within a second
        await publish(
            [
                reading(d, i, 10.0 + i)
                for d in ("street-1", "square-1", "home-1")
                for i in range(READINGS)
            ]
        )
        deadline = time.monotonic() + 90
        async with await connect(history_settings, autocommit=True) as conn:
            while True:
                cursor = await conn.execute("SELECT count(*) FROM observations")
                row = await cursor.fetchone()
                if row and row[0] >= 3 * READINGS:
                    break
                assert time.monotonic() < deadline, "the history writer wrote too little"
                await asyncio.sleep(0.5)
        await asyncio.sleep(1)  # past the Datastreams' refresh

        status, things = await sta(hub, keys["op"], "/Things")
        assert status == 200, things
        assert {t["name"] for t in things["value"]} == {"Street-1", "Square-1"}
        stream = entity_id("Datastream", "street-1:temperature")
        status, page = await sta(
            hub,
            keys["op"],
            f"/Datastreams({stream})/Observations",
            **{"$orderby": "phenomenonTime asc", "$top": "3", "$count": "true"},
        )
        assert status == 200, page
        assert page["@iot.count"] == READINGS
        assert [o["result"] for o in page["value"]] == [10.0, 11.0, 12.0]
        status, doc = await sta(hub, keys["op"], f"/Datastreams({stream})")
        assert doc["unitOfMeasurement"]["symbol"] == "Cel"

        status, theirs = await sta(hub, keys["other"], "/Things")
        assert [t["name"] for t in theirs["value"]] == ["Square-1"]
        status, _ = await sta(hub, keys["other"], f"/Datastreams({stream})")
        assert status == 404
        status, everything = await sta(hub, keys["other"], "/Observations", **{"$top": "1000"})
        assert len(everything["value"]) == READINGS  # square-1's only
        status, _ = await sta(hub, keys["op"], f"/Things({entity_id('Thing', 'home-1')})")
        assert status == 404  # personal: not even its own tenant's key through SensorThings
    finally:
        await asyncio.to_thread(hub.stop)
