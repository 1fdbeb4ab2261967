"""The NGSI-LD API without a history store it can read: 503 InternalError with Retry-After,
while what needs no history (the context, a 404 for an unknown entity) still answers."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec, Role, TenantSpec
from cityhub.schemas.settings import HistorySettings, Settings
from cityhub.streams.api.app import build_api
from cityhub.streams.ngsi_ld.api import NGSI_VALUES_KEY
from cityhub.streams.ngsi_ld.source import HistoryValues
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore


async def test_no_history_store_is_503_internal_error(tmp_path: Path) -> None:
    store = InMemoryRegistryStore()
    await store.start()
    registry = Registry(store)
    system = Principal.system()
    await registry.create_tenant(system, TenantSpec(id="acme", name="Acme"))
    await registry.create_type(system, "acme", DeviceTypeSpec(id="th", name="Thermo"))
    await registry.create_device(system, "acme", DeviceSpec(id="th-1", name="T", type="th"))
    _, key = await registry.create_key(system, "acme", Role.SUBSCRIBER, "k")
    missing = HistorySettings(password_file=tmp_path / "no-such-password")
    app = build_api(registry)
    await app[NGSI_VALUES_KEY].close()
    app[NGSI_VALUES_KEY] = HistoryValues(Settings(history=missing))
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with TestClient(TestServer(app)) as client:
            for path in (
                "/ngsi-ld/v1/entities?type=Device",
                "/ngsi-ld/v1/entities/urn:ngsi-ld:Device:acme:th-1",
                "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Device:acme:th-1",
            ):
                async with client.get(path, headers=headers) as response:
                    body = await response.json()
                    assert response.status == 503, body
                    assert response.headers["Retry-After"] == "5"
                    assert body["type"] == "https://uri.etsi.org/ngsi-ld/errors/InternalError"
                    assert "password" not in body["detail"]
            async with client.get("/ngsi-ld/v1/context.jsonld") as response:
                assert response.status == 200
            async with client.get(
                "/ngsi-ld/v1/entities/urn:ngsi-ld:Device:acme:th-2", headers=headers
            ) as response:
                assert response.status == 404
    finally:
        await store.stop()
