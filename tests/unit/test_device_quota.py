"""A tenant has at most ``quotas.devices_per_tenant`` devices: every process holds the whole
registry in memory, so one operator's key must not make every process of the hub hold millions
of devices (an import takes 100 000 rows a request, again and again). Before, nothing limited
it. Creates past the quota are a 409 ``quota-exceeded`` problem naming the setting; an import's
rows past it are refused row by row while its updates go through; the other tenant is not
affected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cityhub.schemas.registry import DeviceSpec
from cityhub.streams.quotas import QuotaExceeded
from cityhub.streams.registry.principals import Principal

from .test_api_support import Api, device, running_api

A = "/api/v1/tenants/acme"
B = "/api/v1/tenants/beta"
QUOTA = 3


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running_api(devices_per_tenant=QUOTA) as running:
        yield running


async def test_a_create_past_the_quota_is_a_409_naming_the_setting(api: Api) -> None:
    for n in range(QUOTA):
        status, doc, _ = await api.call("POST", f"{A}/devices", json=device(f"q-{n}"))
        assert status == 201, doc
    status, doc, headers = await api.call("POST", f"{A}/devices", json=device("q-extra"))
    assert status == 409, doc
    assert headers["Content-Type"].startswith("application/problem+json")
    assert doc["type"].endswith("/quota-exceeded")
    assert "CITYHUB_QUOTAS__DEVICES_PER_TENANT" in doc["detail"]
    assert "3 devices" in doc["detail"]
    # From the other side: the other tenant's quota is its own.
    status, doc, _ = await api.call("POST", f"{B}/devices", json=device("b-0"), who="op_b")
    assert status == 201, doc
    # A deleted device frees its place.
    status, _, _ = await api.call("DELETE", f"{A}/devices/q-0")
    assert status == 204
    status, doc, _ = await api.call("POST", f"{A}/devices", json=device("q-extra"))
    assert status == 201, doc


async def test_an_import_creates_up_to_the_quota_and_still_updates(api: Api) -> None:
    status, doc, _ = await api.call("POST", f"{A}/devices", json=device("kept"))
    assert status == 201, doc
    rows = "".join(f"{d};th;{d}\n" for d in ("kept", "n-1", "n-2", "n-3", "n-4"))
    status, doc, _ = await api.call(
        "POST",
        f"{A}/devices/_import",
        data=f"id;type;name\n{rows}".encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert status == 200, doc
    assert (doc["created"], doc["updated"], doc["failed"]) == (2, 1, 2)
    refused = [r for r in doc["rows"] if r["status"] == "error"]
    assert [r["id"] for r in refused] == ["n-3", "n-4"]
    assert "CITYHUB_QUOTAS__DEVICES_PER_TENANT" in refused[0]["errors"][0]["message"]
    assert api.registry.view.device_count("acme") == QUOTA


async def test_concurrent_creates_cannot_pass_the_quota(api: Api) -> None:
    system = Principal.system()
    results = await asyncio.gather(
        *(
            api.registry.create_device(system, "acme", DeviceSpec(id=f"c-{n}", name="C", type="th"))
            for n in range(QUOTA + 4)
        ),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(refused) == 4, results
    assert api.registry.view.device_count("acme") == QUOTA
