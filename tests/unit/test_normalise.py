"""Normalisation with the registry, as pure functions: device resolution, the type's decoder and
field mappings, enrichment with location, area, tags and classification."""

from __future__ import annotations

import base64
import json

import pytest

from cityhub.connectors.decoders.cayenne import encode_lpp
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import InactiveDevice, NoMeasurements, UnknownDevice
from cityhub.schemas.registry import Classification, DeviceType, FieldMapping
from cityhub.schemas.validation import errors
from cityhub.streams.normaliser.normalise import (
    observations_from_uplink,
    parse_envelope,
    received_seconds,
    resolve_device,
)
from cityhub.streams.registry.view import DeviceEntry

EUI = "70b3d57ed0000001"
T = "2026-11-29T01:00:00.000Z"


def entry(**kw: object) -> DeviceEntry:
    base: dict[str, object] = {
        "id": "aq-1", "tenant": "city", "type": "aq", "dev_eui": EUI, "name": "Air 1",
        "latitude": 52.37, "longitude": 4.89, "altitude": None, "area": "centrum",
        "tags": ("air", "pilot"), "active": True, "app_key_sha256": None,
        "created_at": T, "updated_at": T,
    }  # fmt: skip
    base.update(kw)
    return DeviceEntry(**base)  # type: ignore[arg-type]


def device_type(**kw: object) -> DeviceType:
    base: dict[str, object] = {
        "tenant": "city", "id": "aq", "name": "Air", "decoder": "network", "fields": [],
        "only_mapped": False, "classification": Classification.PUBLIC,
        "created_at": T, "updated_at": T,
    }  # fmt: skip
    base.update(kw)
    return DeviceType(**base)  # type: ignore[arg-type]


class Directory:
    def __init__(self, devices: list[DeviceEntry], types: list[DeviceType]) -> None:
        self.devices = {d.id: d for d in devices}
        self.types = {(t.tenant, t.id): t for t in types}

    def device_by_eui(self, dev_eui: str) -> DeviceEntry | None:
        return next((d for d in self.devices.values() if d.dev_eui == dev_eui), None)

    def device_by_id(self, device_id: str) -> DeviceEntry | None:
        return self.devices.get(device_id)

    def device_type(self, tenant: str, type_id: str) -> DeviceType | None:
        return self.types.get((tenant, type_id))


def tts_envelope(*, decoded: dict[str, object] | None, payload: bytes | None) -> RawEnvelope:
    up: dict[str, object] = {"f_port": 1, "f_cnt": 5, "received_at": T}
    if decoded is not None:
        up["decoded_payload"] = decoded
    if payload is not None:
        up["frm_payload"] = base64.b64encode(payload).decode()
    doc = {
        "end_device_ids": {"device_id": "ns-name", "dev_eui": EUI.upper()},
        "uplink_message": up,
    }
    return RawEnvelope(
        "mqtt", "tts-v3", "v3/app/devices/ns-name/up", EUI, T, json.dumps(doc).encode()
    )


def normalise(env: RawEnvelope, directory: Directory, *, allow_unknown: bool = False) -> list:
    uplink = parse_envelope(env, received_seconds(env))
    registration = resolve_device(uplink, directory, allow_unknown=allow_unknown)
    return observations_from_uplink(uplink, env, registration)


def test_a_registered_device_is_enriched_and_named_by_the_registry() -> None:
    directory = Directory([entry()], [device_type()])
    (obs,) = normalise(tts_envelope(decoded={"temperature": 3.5}, payload=None), directory)
    assert obs.device_id == "aq-1"  # the registry's id, not the network server's name
    assert (obs.tenant, obs.device_type) == ("city", "aq")
    assert (obs.location.latitude, obs.location.longitude) == (52.37, 4.89)
    assert obs.area == "centrum"
    assert obs.tags == ("air", "pilot")
    assert obs.classification == "public"
    assert obs.registered is True


def test_unknown_devices_are_refused_or_marked() -> None:
    env = tts_envelope(decoded={"temperature": 3.5}, payload=None)
    with pytest.raises(UnknownDevice, match="ALLOW_UNKNOWN_DEVICES"):
        normalise(env, Directory([], []))
    (obs,) = normalise(env, Directory([], []), allow_unknown=True)
    assert obs.registered is False
    assert obs.device_id == "ns-name"
    assert obs.location is None


def test_inactive_devices_are_refused() -> None:
    with pytest.raises(InactiveDevice):
        normalise(
            tts_envelope(decoded={"temperature": 1.0}, payload=None),
            Directory([entry(active=False)], [device_type()]),
        )


def test_a_type_with_its_own_decoder_decodes_the_raw_payload_over_the_network_servers() -> None:
    raw = encode_lpp([(1, "temperature", 21.5)])
    env = tts_envelope(decoded={"nonsense": 1}, payload=raw)
    directory = Directory([entry()], [device_type(decoder="cayenne-lpp")])
    assert [(o.field, o.value) for o in normalise(env, directory)] == [("temperature_1", 21.5)]
    # with the network decoder the network server's fields win
    directory = Directory([entry()], [device_type()])
    assert [o.field for o in normalise(env, directory)] == ["nonsense"]


def test_field_mappings_rename_rescale_and_filter() -> None:
    mapped = device_type(
        fields=[
            FieldMapping(field="dist_mm", quantity="distance", unit="m", scale=0.001),
            FieldMapping(field="t", quantity="temperature"),
        ],
        only_mapped=True,
    )
    env = tts_envelope(decoded={"dist_mm": 1530, "t": 4.25, "rssi_dbg": -80}, payload=None)
    got = {o.quantity: (o.value, o.unit) for o in normalise(env, Directory([entry()], [mapped]))}
    assert got == {"distance": (pytest.approx(1.53), "m"), "temperature": (4.25, "Cel")}


def test_a_type_that_maps_nothing_of_the_message_says_so() -> None:
    only = device_type(fields=[FieldMapping(field="x", quantity="count")], only_mapped=True)
    with pytest.raises(NoMeasurements, match="mapped"):
        normalise(
            tts_envelope(decoded={"temperature": 1.0}, payload=None), Directory([entry()], [only])
        )


def test_a_value_scaled_beyond_a_float_is_dropped_not_written_as_null() -> None:
    # Found by the fuzzer: 1e308 * 1000 is infinity, which orjson writes as null, and the
    # observation failed observation.schema.json (value must be a number, boolean or string).
    mapped = device_type(
        fields=[
            FieldMapping(field="laeq", quantity="noise_level", scale=1000.0),
            FieldMapping(field="t", quantity="temperature", offset=-1e308),
        ]
    )
    env = tts_envelope(decoded={"laeq": 1e308, "t": -1e308, "battery": 97}, payload=None)
    observations = normalise(env, Directory([entry()], [mapped]))
    assert [(o.field, o.value) for o in observations] == [("battery", 97)]
    for o in observations:
        assert errors("observation", o.to_dict()) == []
    with pytest.raises(NoMeasurements, match="beyond the range of a number once scaled"):
        normalise(
            tts_envelope(decoded={"laeq": 1e308}, payload=None), Directory([entry()], [mapped])
        )


def test_event_ids_do_not_depend_on_the_registry() -> None:
    env = tts_envelope(decoded={"temperature": 3.5}, payload=None)
    registered = normalise(env, Directory([entry()], [device_type()]))
    unregistered = normalise(env, Directory([], []), allow_unknown=True)
    assert [o.event_id for o in registered] == [o.event_id for o in unregistered]
