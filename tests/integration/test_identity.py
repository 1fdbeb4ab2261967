"""Identity that holds, on the real stack: uplinks that name a registered device of tenant A but
carry identifiers that disagree (another DevEUI, topic and payload naming different devices,
another application than the device is bound to, a plain MQTT message for a LoRaWAN device) are
``identity_mismatch`` dead letters and counted; the genuine uplink published after each one
arrives as observations of that device."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec, NetworkBinding, TenantSpec
from cityhub.schemas.validation import load_schema
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry

from .hub import Hub, publish, read_topic, registry_of
from .uplinks import unique_eui

pytestmark = pytest.mark.integration

ADMIN = Principal.system()
TTS_APP = "city-air"
CS_APP = "3f0c6f5e-2b7d-4e8a-9c1d-5a6b7c8d9e0f"


def tts(
    topic_device: str, payload_device: str, dev_eui: str, f_cnt: int, *, app: str = TTS_APP
) -> tuple[str, bytes]:
    doc = {
        "end_device_ids": {
            "device_id": payload_device,
            "application_ids": {"application_id": app},
            "dev_eui": dev_eui.upper(),
        },
        "uplink_message": {
            "f_port": 1,
            "f_cnt": f_cnt,
            "decoded_payload": {"temperature": 20 + f_cnt / 10},
            "received_at": "2026-11-29T01:00:00.123Z",
        },
    }
    return f"v3/{app}@city/devices/{topic_device}/up", json.dumps(doc).encode()


def chirpstack(topic_eui: str, payload_eui: str, f_cnt: int) -> tuple[str, bytes]:
    doc = {
        "time": "2026-11-29T01:00:00.300Z",
        "deviceInfo": {"applicationId": CS_APP, "devEui": payload_eui, "tenantId": "t-uuid"},
        "fCnt": f_cnt,
        "fPort": 2,
        "object": {"laeq": 50 + f_cnt},
    }
    return f"application/{CS_APP}/device/{topic_eui}/event/up", json.dumps(doc).encode()


@pytest.fixture
async def hub_and_registry(tmp_path: Path) -> AsyncIterator[tuple[Hub, Registry]]:
    hub = Hub(tmp_path)
    hub.start()
    try:
        async with registry_of(hub) as registry:
            for tenant in ("tenant-a", "tenant-b"):
                await registry.create_tenant(ADMIN, TenantSpec(id=tenant, name=tenant))
                await registry.create_type(ADMIN, tenant, DeviceTypeSpec(id="air", name="Air"))
            yield hub, registry
    finally:
        hub.stop()


async def test_spoofs_are_identity_mismatches_and_genuine_uplinks_arrive(
    hub_and_registry: tuple[Hub, Registry],
) -> None:
    hub, registry = hub_and_registry
    air_eui, noise_eui, foreign_eui, b_eui = unique_eui(), unique_eui(), unique_eui(), unique_eui()
    air = f"air-{air_eui[:8]}"
    noise = f"noise-{noise_eui[:8]}"
    await registry.create_device(
        ADMIN,
        "tenant-a",
        DeviceSpec(
            id=air, name="Air", type="air", dev_eui=air_eui,
            network=NetworkBinding.model_validate(
                {"server": "tts", "application": TTS_APP, "tenant": "city"}
            ),
        ),
    )  # fmt: skip
    await registry.create_device(
        ADMIN,
        "tenant-a",
        DeviceSpec(
            id=noise, name="Noise", type="air", dev_eui=noise_eui,
            network=NetworkBinding.model_validate({"server": "chirpstack", "application": CS_APP}),
        ),
    )  # fmt: skip
    # tenant B's own device: its DevEUI is real, but not air's
    await registry.create_device(
        ADMIN,
        "tenant-b",
        DeviceSpec(id=f"b-{b_eui[:8]}", name="B", type="air", dev_eui=b_eui),
    )

    spoofs = {
        "registered id, another DevEUI": tts(air, air, foreign_eui, 101),
        "topic and payload device ids differ": tts(air, f"b-{b_eui[:8]}", air_eui, 102),
        "ChirpStack topic and payload DevEUIs differ": chirpstack(noise_eui, air_eui, 103),
        "another application than the bound one": tts(air, air, air_eui, 104, app="b-app"),
        "plain MQTT naming a LoRaWAN device": (f"cityhub/ingest/{air}", b'{"temperature": 99}'),
    }
    messages: list[tuple[str, bytes]] = []
    for i, spoof in enumerate(spoofs.values()):
        messages.append(spoof)
        messages.append(tts(air, air, air_eui, i + 1))  # the genuine one, each time
    messages.append(chirpstack(noise_eui, noise_eui, 7))
    await publish(messages)

    letters = await read_topic(
        hub.topics["deadletter"],
        until=lambda r: sum(x["reason"] == "identity_mismatch" for x in r) >= len(spoofs),
        timeout=60,
    )
    mismatches = [x for x in letters if x["reason"] == "identity_mismatch"]
    assert len(mismatches) == len(spoofs), [x["detail"] for x in letters]
    assert {x["stage"] for x in mismatches} == {"normalise"}
    assert {x["source_topic"] for x in mismatches} == {topic for topic, _ in spoofs.values()}
    details = " | ".join(x["detail"] for x in mismatches)
    assert foreign_eui in details  # the DevEUI the uplink carried
    assert "differs from end_device_ids.device_id" in details
    assert "differs from deviceInfo.devEui" in details
    assert "the uplink came from application 'b-app'" in details
    assert f"mqtt uplink names device id '{air}' with no DevEUI" in details
    schema = load_schema("deadletter")
    assert all(x["reason"] in schema["properties"]["reason"]["enum"] for x in mismatches)

    observations = await read_topic(
        hub.topics["observations"],
        until=lambda r: (
            {o["network"]["f_cnt"] for o in r if o["device_id"] == air} >= {1, 2, 3, 4, 5}
            and any(o["device_id"] == noise for o in r)
        ),
        timeout=60,
    )
    by_device: dict[str, list[dict[str, Any]]] = {}
    for o in observations:
        by_device.setdefault(o["device_id"], []).append(o)
    assert {o["network"]["f_cnt"] for o in by_device[air]} == {1, 2, 3, 4, 5}
    assert {o["dev_eui"] for o in by_device[air]} == {air_eui}
    assert {o["tenant"] for o in by_device[air]} == {"tenant-a"}
    assert [o["network"]["f_cnt"] for o in by_device[noise]] == [7]
    assert set(by_device) == {air, noise}, "nothing was credited to anyone else"
    assert hub.metric("cityhub_deadletters_total", reason="identity_mismatch") == len(spoofs)
