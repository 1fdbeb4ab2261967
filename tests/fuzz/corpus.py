"""What the fuzzer starts from: valid messages of every ingest format (the fixtures and the
simulator's uplinks, each with the topic it comes on) and a real ``RegistryView`` in which
those messages name registered devices: some bound to their network-server application, some
with DevEUIs, one inactive, types with field mappings and with each registered decoder."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from cityhub.connectors.decoders import decoder_names
from cityhub.connectors.decoders.cayenne import encode_lpp
from cityhub.connectors.formats import format_names
from cityhub.schemas.registry import (
    Classification,
    Device,
    DeviceType,
    FieldMapping,
    Tenant,
    record_key,
)
from cityhub.streams.devtools.simulator import FleetSimulator, Format, build_fleet, render
from cityhub.streams.devtools.simulator.registration import CLASSIFICATION, device_spec
from cityhub.streams.registry.view import RegistryView

from .mutations import vocabulary_of

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
T = "2026-12-01T00:00:00.000Z"
CITY = "city"
DEMO = "demo"
DECODER_APP = "decoder-lab"
INGEST = "cityhub/ingest"


@dataclass(frozen=True, slots=True)
class Seed:
    """A valid message: its format, MQTT topic and parsed JSON payload."""

    format: str
    topic: str
    doc: Any


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _fixture_seeds() -> list[Seed]:
    tts = _fixture("tts_uplink.json")
    first = _fixture("tts_uplink_first_frame.json")
    chirpstack = _fixture("chirpstack_uplink.json")
    generic = _fixture("generic.json")
    senml = [_fixture("senml_multi.json"), _fixture("senml_rfc8428.json")]
    cs_topic = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0004a30b001c0530/event/up"
    seeds = [
        Seed("tts-v3", "v3/city-sensors/devices/air-quality-17/up", tts),
        Seed("tts-v3", "v3/city-sensors@city/devices/air-quality-17/up", tts),
        Seed("tts-v3", "v3/parking/devices/eui-70b3d57ed005a1b2/up", first),
        Seed("chirpstack-v4", cs_topic, chirpstack),
    ]
    for device in ("plain-1", "senml-1", "ghost-1", "inactive-1", "nobody"):
        seeds.append(Seed("cityhub-json", f"{INGEST}/{device}", generic))
        for pack in senml:
            seeds.append(Seed("cityhub-json", f"{INGEST}/{device}", pack))
            seeds.append(Seed("senml-json", f"{INGEST}/{device}", pack))
    return seeds


_SIMULATED_FORMATS = {
    Format.TTS: ("tts-v3",),
    Format.CHIRPSTACK: ("chirpstack-v4",),
    Format.SENML: ("cityhub-json", "senml-json"),
    Format.JSON: ("cityhub-json",),
}

FLEET = build_fleet(16, seed=8)


def _simulated_seeds() -> list[Seed]:
    simulator = FleetSimulator(FLEET)
    seeds = []
    for i, device in enumerate(FLEET.devices):
        for step in range(2):  # frame 0 (TTS and ChirpStack leave f_cnt out) and frame 1
            frame = simulator.next_frame(device, 1_764_547_200.0 + 60 * step + i)
            formats = [device.format] + ([device.also_on] if device.also_on else [])
            for fmt in formats:
                topic, payload = render(frame, fmt)
                for name in _SIMULATED_FORMATS[fmt]:
                    seeds.append(Seed(name, topic, orjson.loads(payload)))
    return seeds


def decoder_device(decoder: str) -> tuple[str, str]:
    """The id and DevEUI of the registered device whose type decodes with ``decoder``."""
    index = sorted(decoder_names()).index(decoder)
    return f"dec-{index}", f"de{index:014x}"


def decoder_seeds(decoder: str, payload: bytes) -> list[Seed]:
    """A TTS uplink and a ChirpStack event carrying ``payload`` (raw, not decoded) from the
    device whose type decodes with ``decoder``."""
    device_id, eui = decoder_device(decoder)
    data = base64.b64encode(payload).decode()
    tts = {
        "end_device_ids": {
            "device_id": device_id,
            "application_ids": {"application_id": DECODER_APP},
            "dev_eui": eui.upper(),
        },
        "received_at": "2026-12-01T10:00:00.5Z",
        "uplink_message": {"f_port": 1, "f_cnt": 7, "frm_payload": data},
    }
    chirpstack = {
        "time": "2026-12-01T10:00:00.5+00:00",
        "deviceInfo": {"devEui": eui, "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242"},
        "fCnt": 7,
        "fPort": 1,
        "data": data,
    }
    cs_app = "0e7a5e5c-4e5e-4b1e-9a3f-6c0d1f2a3b4c"
    return [
        Seed("tts-v3", f"v3/{DECODER_APP}/devices/{device_id}/up", tts),
        Seed("chirpstack-v4", f"application/{cs_app}/device/{eui}/event/up", chirpstack),
    ]


@cache
def seeds() -> tuple[Seed, ...]:
    """Every valid message the fuzzer mutates."""
    return (
        *_fixture_seeds(),
        *_simulated_seeds(),
        *decoder_seeds("cayenne-lpp", encode_lpp([(1, "temperature", 21.5)])),
    )


def seeds_for(format_name: str) -> tuple[Seed, ...]:
    """The seeds of ``format_name``; a format without seeds of its own (a plugin) gets every
    seed, under its own name."""
    own = tuple(s for s in seeds() if s.format == format_name)
    if own:
        return own
    return tuple(Seed(format_name, s.topic, s.doc) for s in seeds())


@cache
def vocabulary() -> list[str]:
    """Every key the seeds use."""
    return vocabulary_of(*(seed.doc for seed in seeds()))


# --- the registry ------------------------------------------------------------------------------


def _type(tenant: str, type_id: str, decoder: str, **kw: Any) -> DeviceType:
    doc: dict[str, Any] = {
        "tenant": tenant, "id": type_id, "name": type_id, "decoder": decoder, "fields": [],
        "only_mapped": False, "classification": Classification.INTERNAL,
        "created_at": T, "updated_at": T, **kw,
    }  # fmt: skip
    return DeviceType.model_validate(doc)


def _device(tenant: str, device_id: str, type_id: str, **kw: Any) -> Device:
    doc: dict[str, Any] = {
        "tenant": tenant, "id": device_id, "name": device_id, "type": type_id, "dev_eui": None,
        "location": None, "area": None, "tags": [], "active": True,
        "created_at": T, "updated_at": T, **kw,
    }  # fmt: skip
    return Device.model_validate(doc)


def _mapping(field: str, quantity: str, **kw: Any) -> FieldMapping:
    return FieldMapping(field=field, quantity=quantity, **kw)


_SIMULATED_MAPPINGS = {
    "air_quality": [
        _mapping("temperature", "temperature_f", unit="[degF]", scale=1.8, offset=32),
        _mapping("temperature_1", "temperature_f", unit="[degF]", scale=1.8, offset=32),
        _mapping("pm2_5", "pm2_5_ng", unit="ng/m3", scale=1000.0),
    ],
    "noise": [
        _mapping("laeq", "noise_level", scale=1000.0),
        _mapping("analog_in_8", "noise_level", scale=1000.0),
    ],
    "weather": [
        _mapping("pressure", "pressure_pa", unit="Pa", scale=100.0),
        _mapping("wind_speed", "wind_speed_kmh", unit="km/h", scale=3.6),
    ],
    "waste_bin": [
        _mapping("fill_level", "fill_ratio", unit="1", scale=0.01),
        _mapping("percentage_11", "fill_ratio", unit="1", scale=0.01),
        _mapping("distance", "distance_mm", unit="mm", scale=1000.0, offset=-0.5),
    ],
}
"""Field mappings of the simulated kinds' types (the demo tenant registers none): scaled,
shifted, and for waste bins the only fields kept."""


def _types() -> list[DeviceType]:
    fahrenheit = _mapping("temperature_1", "temperature_f", unit="[degF]", scale=1.8, offset=32)
    types = [
        _type(
            CITY,
            "network-mapped",
            "network",
            fields=[
                fahrenheit,
                _mapping("relative_humidity_2", "relative_humidity"),
                _mapping("laeq", "noise_level", scale=1000.0),
                _mapping("vbat", "battery_voltage", unit="mV", scale=1000.0),
            ],
            classification=Classification.PUBLIC,
        ),
        _type(CITY, "lpp-mapped", "cayenne-lpp", fields=[fahrenheit]),
        _type(CITY, "network-plain", "network"),
        _type(
            CITY,
            "only-mapped",
            "network",
            fields=[
                _mapping("temperature", "temperature_k", unit="K", offset=273.15),
                _mapping("battery", "battery_voltage", scale=0.001),
                _mapping("gps.latitude", "latitude"),
                _mapping("voltage", "voltage", scale=1e300),
            ],
            only_mapped=True,
            classification=Classification.PERSONAL,
        ),
        _type(CITY, "ghost", "no-such-decoder"),
    ]
    for name in decoder_names():
        types.append(
            _type(
                CITY,
                f"dec-{sorted(decoder_names()).index(name)}",
                name,
                fields=[_mapping("temperature_1", "temperature", scale=10.0, offset=-5)],
            )
        )
    for kind, classification in CLASSIFICATION.items():
        types.append(
            _type(
                DEMO,
                kind.value,
                "network",
                classification=classification,
                fields=_SIMULATED_MAPPINGS.get(kind.value, []),
                only_mapped=kind.value == "waste_bin",
            )
        )
    return types


def _devices() -> list[Device]:
    where = {"latitude": 52.37, "longitude": 4.89, "altitude": 2.5}
    devices = [
        _device(
            CITY,
            "air-quality-17",
            "network-mapped",
            dev_eui="0004a30b001c0530",
            location=where,
            area="centrum",
            tags=["air", "pilot"],
        ),
        _device(
            CITY,
            "eui-70b3d57ed005a1b2",
            "lpp-mapped",
            dev_eui="70b3d57ed005a1b2",
            network={"server": "tts", "application": "parking"},
        ),
        _device(CITY, "plain-1", "only-mapped", location=where),
        _device(CITY, "senml-1", "network-plain"),
        _device(CITY, "ghost-1", "ghost"),
        _device(CITY, "inactive-1", "network-plain", active=False),
    ]
    for name in decoder_names():
        device_id, eui = decoder_device(name)
        # Unbound: its payloads come through The Things Stack and ChirpStack alike.
        devices.append(_device(CITY, device_id, device_id, dev_eui=eui))
    for simulated in FLEET.devices:
        spec = device_spec(simulated).model_dump(mode="json", exclude={"app_key", "id", "type"})
        devices.append(_device(DEMO, simulated.device_id, simulated.kind.value, **spec))
    return devices


@cache
def registry() -> RegistryView:
    """A real registry view, fed the records as the registry topic carries them."""
    view = RegistryView()
    records: list[Tenant | DeviceType | Device] = [
        Tenant(id=tenant, name=tenant, created_at=T, updated_at=T) for tenant in (CITY, DEMO)
    ]
    records += _types()
    records += _devices()
    for record in records:
        view.apply(record_key(record), record.model_dump_json().encode(), view.offset + 1)
    assert view.malformed == 0
    return view


def all_format_names() -> list[str]:
    """Every registered ingest format, plugins included."""
    return format_names()
