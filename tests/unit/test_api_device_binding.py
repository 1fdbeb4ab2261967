"""A device's network-server binding through the operator API: written, read back in the
documented shape, refused field by field when invalid, and set by a TTS JSON import with
``ttsTenant``. Over the in-memory registry, as tests/unit/test_api_routes.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cityhub.streams.api.models import DeviceList, DeviceOut, ImportReportOut

from .test_api_support import Api, device, running_api

A = "/api/v1/tenants/acme"
CS_APP = "17c82e96-be03-4f38-aef3-f83d48582d97"


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running_api() as running:
        yield running


async def test_a_binding_is_written_read_and_replaced(api: Api) -> None:
    tts = {"server": "tts", "application": "city-air", "tenant": "city"}
    status, doc, _ = await api.call(
        "POST", f"{A}/devices", json=device("bound-1", dev_eui="70B3D57ED00000B1", network=tts)
    )
    assert status == 201, doc
    assert DeviceOut.model_validate(doc).network is not None
    assert doc["network"] == tts
    status, doc, _ = await api.call("GET", f"{A}/devices/bound-1")
    assert doc["network"] == tts
    chirpstack = {"server": "chirpstack", "application": CS_APP.upper()}
    status, doc, _ = await api.call(
        "PUT", f"{A}/devices/bound-1", json=device("bound-1", network=chirpstack)
    )
    assert status == 200, doc
    assert doc["network"] == {"server": "chirpstack", "application": CS_APP, "tenant": None}
    status, doc, _ = await api.call("GET", f"{A}/devices")
    listed = {d.id: d for d in DeviceList.model_validate(doc).items}
    assert listed["bound-1"].network is not None
    assert listed["bound-1"].network.application == CS_APP
    status, doc, _ = await api.call("PUT", f"{A}/devices/bound-1", json=device("bound-1"))
    assert doc["network"] is None


@pytest.mark.parametrize(
    ("network", "field"),
    [
        ({"server": "lorawan-server", "application": "x"}, "network.server"),
        ({"server": "tts", "application": "City Air"}, "network.application"),
        ({"server": "chirpstack", "application": "city-air"}, "network.application"),
        ({"server": "chirpstack", "application": CS_APP, "tenant": "t"}, "network.tenant"),
        ({"server": "tts"}, "network.application"),
        ("tts:city-air", "network"),
    ],
)
async def test_an_invalid_binding_is_a_400_naming_the_field(
    api: Api, network: object, field: str
) -> None:
    status, doc, _ = await api.call("POST", f"{A}/devices", json=device("bad-1", network=network))
    assert status == 400, doc
    assert field in {e["field"] for e in doc["errors"]}


async def test_a_tts_json_import_binds_with_the_tts_tenant(api: Api) -> None:
    end_devices = [
        {
            "ids": {
                "device_id": "tts-1",
                "dev_eui": "70B3D57ED00000C1",
                "application_ids": {"application_id": "city-air"},
            },
            "name": "From TTS",
            "frequency_plan_id": "EU_863_870_TTN",
        }
    ]
    status, doc, _ = await api.call(
        "POST", f"{A}/devices/_import", params={"type": "th", "ttsTenant": "city"}, json=end_devices
    )
    assert status == 200, doc
    assert (ImportReportOut.model_validate(doc).created, doc["failed"]) == (1, 0)
    status, doc, _ = await api.call("GET", f"{A}/devices/tts-1")
    assert doc["network"] == {"server": "tts", "application": "city-air", "tenant": "city"}
    status, doc, _ = await api.call(
        "POST", f"{A}/devices/_import", params={"type": "th", "ttsTenant": "No"}, json=end_devices
    )
    assert status == 400, doc
    assert "ttsTenant" in doc["detail"]
