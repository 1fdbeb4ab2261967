"""Network-server messages for the integration tests, built field by field so that each test
states exactly what it sends."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any


def unique_eui() -> str:
    return uuid.uuid4().hex[:16]


def tts(
    device_id: str,
    dev_eui: str,
    f_cnt: int,
    *,
    decoded: dict[str, Any] | None = None,
    payload: bytes | None = None,
    app: str = "city-air",
    f_port: Any = 1,
) -> tuple[str, bytes]:
    up: dict[str, Any] = {
        "f_port": f_port,
        "f_cnt": f_cnt,
        "rx_metadata": [
            {"gateway_ids": {"gateway_id": "townhall-gw"}, "rssi": -61, "snr": 9.5},
            {"gateway_ids": {"gateway_id": "library-gw"}, "rssi": -104, "snr": -3.25},
        ],
        "received_at": "2026-11-29T01:00:00.123456789Z",
    }
    if payload is not None:
        up["frm_payload"] = base64.b64encode(payload).decode()
    if decoded is not None:
        up["decoded_payload"] = decoded
    doc = {
        "end_device_ids": {
            "device_id": device_id,
            "application_ids": {"application_id": app},
            "dev_eui": dev_eui.upper(),
        },
        "received_at": "2026-11-29T01:00:00.2Z",
        "uplink_message": up,
    }
    return f"v3/{app}@city/devices/{device_id}/up", json.dumps(doc).encode()


def chirpstack(
    dev_eui: str,
    f_cnt: int,
    *,
    obj: dict[str, Any] | None = None,
    payload: bytes | None = None,
    time: str = "2026-11-29T01:00:00.300+00:00",
) -> tuple[str, bytes]:
    doc: dict[str, Any] = {
        "deduplicationId": str(uuid.uuid4()),
        "time": time,
        "deviceInfo": {
            "tenantName": "City",
            "applicationId": "a1",
            "applicationName": "noise",
            "deviceName": f"noise-{dev_eui[-4:]}",
            "devEui": dev_eui,
        },
        "fCnt": f_cnt,
        "fPort": 2,
        "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -70, "snr": 7.0}],
    }
    if payload is not None:
        doc["data"] = base64.b64encode(payload).decode()
    if obj is not None:
        doc["object"] = obj
    return f"application/a1/device/{dev_eui}/event/up", json.dumps(doc).encode()
