"""The MQTT messages a simulated device's uplink becomes. Pure: no I/O.

Each function returns ``(topic, payload bytes)`` exactly as the real source would publish it:

- ``tts_uplink``: The Things Stack v3 MQTT integration (``v3/{app}@{tenant}/devices/{id}/up``).
  EUIs and DevAddr in upper-case hex, times in RFC 3339 with nanoseconds, ``frequency`` a
  string, and every field at its zero value left out (TTS omits ``""``, ``0`` and ``false``,
  so the first uplink after a join has no ``f_cnt``).
- ``chirpstack_uplink``: ChirpStack v4 MQTT integration, JSON marshaler
  (``application/{applicationId}/device/{devEui}/event/up``). Lower-case hex, protobuf JSON
  mapping: zero-valued scalars left out (no ``fCnt`` at 0), bytes as base64.
- ``senml_message`` and ``json_message``: plain MQTT sensors on ``cityhub/ingest/{id}``.

Radio metadata (gateways, RSSI, SNR, tokens, ids) is drawn from a random stream seeded by the
frame itself, so the same frame always renders the same message. ``variant`` > 0 renders the
same frame as heard by another gateway path: same device, frame counter, port and payload,
different gateways, signal and ids, received a little later.
"""

from __future__ import annotations

import base64
import functools
import math
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from cityhub.connectors.decoders.cayenne import encode_lpp
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.devtools.simulator.fleet import (
    CHIRPSTACK_TENANT,
    QUANTITIES,
    TTS_TENANT,
    Device,
    Format,
    Reception,
    seeded_random,
)
from cityhub.streams.devtools.simulator.readings import Frame, Reading

# EU868 default and common extra channels (Hz), as a LoRaWAN gateway of the city would use.
EU868_CHANNELS: Final = (
    868_100_000,
    868_300_000,
    868_500_000,
    867_100_000,
    867_300_000,
    867_500_000,
    867_700_000,
    867_900_000,
)
BANDWIDTH_HZ: Final = 125_000
INGEST_TOPIC_PREFIX: Final = "cityhub/ingest"
_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# TTS Cloud network ids: TTN's NetID and the cluster a tenant sits on.
_TTS_NETWORK: Final = {
    "net_id": "000013",
    "ns_id": "EC656E0000000181",
    "tenant_id": TTS_TENANT,
    "cluster_id": "eu1",
    "cluster_address": f"{TTS_TENANT}.eu1.cloud.thethings.industries",
    "tenant_address": f"{TTS_TENANT}.eu1.cloud.thethings.industries",
}


def lpp_items(readings: Mapping[str, Reading]) -> list[tuple[int, str, Reading]]:
    """The Cayenne LPP items a device sends for its readings, one fixed channel per quantity."""
    return [
        (QUANTITIES[name].lpp_channel, QUANTITIES[name].lpp_type, value)
        for name, value in readings.items()
    ]


def lpp_payload(readings: Mapping[str, Reading]) -> bytes:
    """The device's application payload: its readings as Cayenne LPP."""
    return encode_lpp(lpp_items(readings))


@functools.lru_cache(maxsize=256)
def _whole_second(sec: int) -> str:
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _nanos(ts: float, suffix: str = "Z") -> str:
    """RFC 3339 UTC with nine fractional digits, as Go and Rust network servers print it."""
    sec, frac = divmod(round(ts * 1e9), 1_000_000_000)
    return f"{_whole_second(sec)}.{frac:09d}{suffix}"


def _ulid(rng: random.Random, ts: float) -> str:
    """A ULID (TTS correlation ids use them): 48-bit milliseconds, 80 random bits."""
    n = (int(ts * 1000) << 80) | rng.getrandbits(80)
    return "".join(_CROCKFORD[(n >> (5 * i)) & 31] for i in reversed(range(26)))


def _uuid4(rng: random.Random) -> str:
    n = rng.getrandbits(128)
    n &= ~(0xF000 << 64)
    n |= 0x4000 << 64  # version 4
    n &= ~(0xC000 << 48)
    n |= 0x8000 << 48  # RFC 4122 variant
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def airtime_seconds(payload_len: int, sf: int, bandwidth_hz: int = BANDWIDTH_HZ) -> float:
    """LoRa time on air (Semtech AN1200.13) of a PHYPayload of ``payload_len`` bytes.

    Explicit header, CRC on, coding rate 4/5, 8 preamble symbols, low data rate optimisation
    at SF11 and SF12 on 125 kHz, as LoRaWAN uplinks use.
    """
    t_sym = (1 << sf) / bandwidth_hz
    de = 1 if sf >= 11 and bandwidth_hz == 125_000 else 0
    n_payload = 8 + max(
        math.ceil((8 * payload_len - 4 * sf + 28 + 16) / (4 * (sf - 2 * de))) * 5, 0
    )
    return (8 + 4.25) * t_sym + n_payload * t_sym


def _frame_rng(device: Device, f_cnt: int, now: float) -> random.Random:
    """The frame's own radio facts (channel), the same whichever gateway or server reports it."""
    return seeded_random(f"frame:{device.dev_eui}:{f_cnt}:{round(now * 1000)}")


def _path_rng(device: Device, f_cnt: int, now: float, network: str, variant: int) -> random.Random:
    return seeded_random(f"path:{device.dev_eui}:{f_cnt}:{round(now * 1000)}:{network}:{variant}")


def _heard_by(device: Device, rng: random.Random, variant: int) -> list[Reception]:
    """Which of the device's gateways heard this transmission: the best one usually does."""
    if not device.receptions:
        raise ValueError(f"{device.device_id} is not a LoRaWAN device: it has no gateways")
    receptions = list(device.receptions)
    if variant:
        # Another path: rotate, so that the first gateway differs when there are several.
        k = variant % len(receptions)
        receptions = receptions[k:] + receptions[:k]
    return [receptions[0]] + [r for r in receptions[1:] if rng.random() < 0.75]


def _signal(rng: random.Random, r: Reception) -> tuple[int, float]:
    """One reception's RSSI (integer dBm, as gateways report it) and SNR (0.25 dB steps)."""
    rssi = round(max(-125.0, min(-30.0, r.rssi + rng.gauss(0, 2.5))))
    snr = max(-20.0, min(13.5, r.snr + rng.gauss(0, 1.0)))
    return rssi, round(snr * 4) / 4


def _omit_zero(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop zero-valued scalars, as both network servers' JSON marshalers do."""
    return {k: v for k, v in obj.items() if v not in (0, "", False, None)}


def tts_uplink(
    device: Device,
    f_cnt: int,
    readings: Mapping[str, Reading],
    now: float,
    *,
    variant: int = 0,
    dev_addr: str | None = None,
) -> tuple[str, bytes]:
    """Render one uplink as The Things Stack v3 publishes it on its MQTT integration.

    ``now`` (seconds since the epoch) is when the device transmitted; the network server's
    ``received_at`` follows a few tens of milliseconds later. ``f_cnt`` is left out when 0.
    ``dev_addr`` is the session's DevAddr (``Frame.dev_addr``); None: ``device.dev_addr``.
    ``decoded_payload`` is present only when ``device.decoded``; ``frm_payload`` always is.
    Raises ValueError for a device without gateways (a plain MQTT sensor).
    """
    frame_rng = _frame_rng(device, f_cnt, now)
    channel = frame_rng.randrange(len(EU868_CHANNELS))
    rng = _path_rng(device, f_cnt, now, "tts", variant)
    heard = _heard_by(device, rng, variant)
    payload = lpp_payload(readings)
    sf = device.spreading_factor
    gw_time = now + 0.001 * sf  # end of reception at the gateway
    gs_received = gw_time + 0.02 + 0.015 * variant + rng.uniform(0, 0.02)
    ns_received = gs_received + rng.uniform(0.002, 0.01)
    as_received = ns_received + rng.uniform(0.005, 0.02)

    rx_metadata = []
    for r in heard:
        rssi, snr = _signal(rng, r)
        counter = round((gw_time + int(r.gateway.eui[-4:], 16)) * 1e6) & 0xFFFFFFFF
        rx_metadata.append(
            _omit_zero(
                {
                    "gateway_ids": {
                        "gateway_id": r.gateway.gateway_id,
                        "eui": r.gateway.eui.upper(),
                    },
                    "time": _nanos(gw_time),
                    "timestamp": counter,
                    "rssi": rssi,
                    "channel_rssi": rssi,
                    "snr": snr,
                    "location": {
                        "latitude": r.gateway.latitude,
                        "longitude": r.gateway.longitude,
                        "altitude": r.gateway.altitude,
                        "source": "SOURCE_REGISTRY",
                    },
                    "uplink_token": _b64(rng.randbytes(48)),
                    "channel_index": channel,
                    "received_at": _nanos(gs_received + rng.uniform(0, 0.003)),
                }
            )
        )
    airtime = airtime_seconds(13 + len(payload), sf)
    uplink = _omit_zero(
        {
            "session_key_id": _b64(rng.randbytes(16)),
            "f_port": device.f_port,
            "f_cnt": f_cnt,
            "frm_payload": _b64(payload),
            "rx_metadata": rx_metadata,
            "settings": _omit_zero(
                {
                    "data_rate": {
                        "lora": {
                            "bandwidth": BANDWIDTH_HZ,
                            "spreading_factor": sf,
                            "coding_rate": "4/5",
                        }
                    },
                    "frequency": str(EU868_CHANNELS[channel]),
                    "timestamp": rx_metadata[0]["timestamp"],
                    "time": _nanos(gw_time),
                }
            ),
            "received_at": _nanos(ns_received),
            "consumed_airtime": f"{airtime:.6f}s",
            "network_ids": _TTS_NETWORK,
            "version_ids": {
                "brand_id": "cityhub-sim",
                "model_id": device.kind.value.replace("_", "-"),
                "hardware_version": "1.0",
                "firmware_version": "1.2",
                "band_id": "EU_863_870",
            },
        }
    )
    if device.decoded:
        uplink["decoded_payload"] = dict(readings)  # may hold zeros, which TTS keeps here
    message = {
        "end_device_ids": {
            "device_id": device.device_id,
            "application_ids": {"application_id": device.application},
            "dev_eui": device.dev_eui.upper(),
            "join_eui": device.join_eui.upper(),
            "dev_addr": (dev_addr or device.dev_addr).upper(),
        },
        "correlation_ids": [
            f"gs:uplink:{_ulid(rng, gs_received)}",
            f"as:up:{_ulid(rng, as_received)}",
            f"ns:uplink:{_ulid(rng, ns_received)}",
            f"rpc:/ttn.lorawan.v3.GsNs/HandleUplink:{_ulid(rng, gs_received)}",
            f"rpc:/ttn.lorawan.v3.NsAs/HandleUplink:{_ulid(rng, ns_received)}",
        ],
        "received_at": _nanos(as_received),
        "uplink_message": uplink,
    }
    topic = f"v3/{device.application}@{TTS_TENANT}/devices/{device.device_id}/up"
    return topic, orjson.dumps(message)


def chirpstack_uplink(
    device: Device,
    f_cnt: int,
    readings: Mapping[str, Reading],
    now: float,
    *,
    variant: int = 0,
    dev_addr: str | None = None,
) -> tuple[str, bytes]:
    """Render one uplink as ChirpStack v4 publishes its ``up`` event (JSON marshaler).

    ``dev_addr`` is the session's DevAddr (``Frame.dev_addr``); None: ``device.dev_addr``.
    ``fCnt``, ``dr`` (SF12), ``channel`` and ``confirmed`` are left out at their zero values;
    ``object`` is present only when ``device.decoded``; ``data`` always is. The topic names
    the application by its UUID and the device by its lower-case DevEUI.
    Raises ValueError for a device without gateways (a plain MQTT sensor).
    """
    frame_rng = _frame_rng(device, f_cnt, now)
    channel = frame_rng.randrange(len(EU868_CHANNELS))
    rng = _path_rng(device, f_cnt, now, "chirpstack", variant)
    heard = _heard_by(device, rng, variant)
    payload = lpp_payload(readings)
    sf = device.spreading_factor
    gw_time = now + 0.001 * sf
    ns_time = gw_time + 0.03 + 0.015 * variant + rng.uniform(0, 0.02)
    # ChirpStack waits for its deduplication window (200 ms by default) before it publishes.
    event_time = ns_time + 0.2 + rng.uniform(0, 0.01)

    rx_info = []
    for r in heard:
        rssi, snr = _signal(rng, r)
        rx_info.append(
            _omit_zero(
                {
                    "gatewayId": r.gateway.eui,
                    "uplinkId": rng.getrandbits(32) or 1,
                    "gwTime": _nanos(gw_time, "+00:00"),
                    "nsTime": _nanos(ns_time + rng.uniform(0, 0.003), "+00:00"),
                    "rssi": rssi,
                    "snr": snr,
                    "channel": channel,
                    "location": {
                        "latitude": r.gateway.latitude,
                        "longitude": r.gateway.longitude,
                        "altitude": r.gateway.altitude,
                    },
                    "context": _b64(rng.randbytes(4)),
                    "metadata": {"region_config_id": "eu868", "region_common_name": "EU868"},
                    "crcStatus": "CRC_OK",
                }
            )
        )
    device_info = {
        "tenantId": device.chirpstack_tenant_id,
        "tenantName": CHIRPSTACK_TENANT,
        "applicationId": device.chirpstack_application_id,
        "applicationName": device.application,
        "deviceProfileId": device.chirpstack_device_profile_id,
        "deviceProfileName": f"{device.kind.value.replace('_', ' ')} (cayenne lpp)",
        "deviceName": device.device_id,
        "devEui": device.dev_eui,
        "deviceClassEnabled": "CLASS_A",
        "tags": {"kind": device.kind.value, "district": device.district},
    }
    event = _omit_zero(
        {
            "deduplicationId": _uuid4(rng),
            "time": _nanos(event_time, "+00:00"),
            "deviceInfo": device_info,
            "devAddr": dev_addr or device.dev_addr,
            "adr": True,
            "dr": 12 - sf,  # EU868: DR0 = SF12 ... DR5 = SF7
            "fCnt": f_cnt,
            "fPort": device.f_port,
            "confirmed": False,
            "data": _b64(payload),
            "object": dict(readings) if device.decoded else None,
            "rxInfo": rx_info,
            "txInfo": {
                "frequency": EU868_CHANNELS[channel],
                "modulation": {
                    "lora": {
                        "bandwidth": BANDWIDTH_HZ,
                        "spreadingFactor": sf,
                        "codeRate": "CR_4_5",
                    }
                },
            },
        }
    )
    topic = f"application/{device.chirpstack_application_id}/device/{device.dev_eui}/event/up"
    return topic, orjson.dumps(event)


def ingest_topic(device: Device) -> str:
    """Where a plain MQTT sensor publishes: ``cityhub/ingest/{device_id}``."""
    return f"{INGEST_TOPIC_PREFIX}/{device.device_id}"


def senml_message(device: Device, readings: Mapping[str, Reading], now: float) -> tuple[str, bytes]:
    """Render readings as a SenML (RFC 8428) JSON pack on the device's ingest topic.

    The first record carries the base name (``urn:dev:eui64:{dev_eui}:``, RFC 9039) and the
    base time (seconds since the epoch); each record has ``n``, ``v`` and, when the quantity
    has one, ``u``.
    """
    records: list[dict[str, Any]] = []
    for i, (name, value) in enumerate(readings.items()):
        record: dict[str, Any] = {}
        if i == 0:
            record["bn"] = f"urn:dev:eui64:{device.dev_eui}:"
            record["bt"] = round(now, 3)
        record["n"] = name
        unit = QUANTITIES[name].unit
        if unit is not None:
            record["u"] = unit
        record["v"] = value
        records.append(record)
    return ingest_topic(device), orjson.dumps(records)


def json_message(device: Device, readings: Mapping[str, Reading], now: float) -> tuple[str, bytes]:
    """Render readings as a flat JSON object ``{"time": RFC 3339, "<quantity>": value, ...}``."""
    body: dict[str, Any] = {"time": rfc3339(now), **readings}
    return ingest_topic(device), orjson.dumps(body)


def render(frame: Frame, fmt: Format | None = None, *, variant: int = 0) -> tuple[str, bytes]:
    """Render a frame in ``fmt`` (default: the device's own format) as ``(topic, payload)``."""
    fmt = fmt or frame.device.format
    match fmt:
        case Format.TTS | Format.CHIRPSTACK:
            uplink = tts_uplink if fmt is Format.TTS else chirpstack_uplink
            return uplink(
                frame.device,
                frame.f_cnt,
                frame.readings,
                frame.time,
                variant=variant,
                dev_addr=frame.dev_addr,
            )
        case Format.SENML:
            return senml_message(frame.device, frame.readings, frame.time)
        case Format.JSON:
            return json_message(frame.device, frame.readings, frame.time)
    raise AssertionError(fmt)  # pragma: no cover
