"""Identity that holds: an uplink is credited to a registered device only when the identifiers it
carries agree with the registry (DevEUI, device id, and the device's network-server binding).
Pure: the real registry view and the real formats, no broker."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from cityhub.connectors.formats import get_format
from cityhub.connectors.formats.base import Uplink
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import IdentityMismatch, InactiveDevice, Reason, UnknownDevice
from cityhub.schemas.registry import Classification, Device, DeviceType, NetworkBinding, record_key
from cityhub.streams.devtools.simulator import Format, Traffic, build_fleet
from cityhub.streams.devtools.simulator.registration import (
    TENANT,
    expected_interval,
    register_fleet,
)
from cityhub.streams.normaliser.normalise import (
    binding_mismatch,
    parse_envelope,
    registered_device,
    resolve_device,
)
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.registry.view import RegistryView

T = "2026-11-29T01:00:00.000Z"
EUI_A = "70b3d57ed000000a"
EUI_B = "70b3d57ed000000b"
EUI_X = "70b3d57ed00000ff"
CS_APP = "17c82e96-be03-4f38-aef3-f83d48582d97"
CS_OTHER = "00000000-0000-4000-8000-000000000001"


def _device(device_id: str, tenant: str, **kw: Any) -> Device:
    doc: dict[str, Any] = {
        "tenant": tenant, "id": device_id, "name": device_id, "type": "aq", "dev_eui": None,
        "location": None, "area": None, "tags": [], "active": True,
        "created_at": T, "updated_at": T, **kw,
    }  # fmt: skip
    return Device.model_validate(doc)


def _view(*devices: Device) -> RegistryView:
    """A real view, fed the records as the registry topic would carry them."""
    view = RegistryView()
    for tenant in {d.tenant for d in devices}:
        device_type = DeviceType(
            tenant=tenant, id="aq", name="Air", decoder="network", fields=[], only_mapped=False,
            classification=Classification.PUBLIC, created_at=T, updated_at=T,
        )  # fmt: skip
        view.apply(record_key(device_type), device_type.model_dump_json().encode(), view.offset + 1)
    for d in devices:
        view.apply(record_key(d), d.model_dump_json().encode(), view.offset + 1)
    assert view.malformed == 0
    return view


# Tenant a: a LoRaWAN device bound to its TTS application, another bound to ChirpStack, an
# unbound LoRaWAN device and a plain MQTT sensor. Tenant b: a LoRaWAN device of its own.
BOUND_TTS = {"server": "tts", "application": "city-air", "tenant": "city"}
BOUND_CS = {"server": "chirpstack", "application": CS_APP}
VIEW = _view(
    _device("aq-1", "a", dev_eui=EUI_A, network=BOUND_TTS),
    _device("cs-1", "a", dev_eui="70b3d57ed000000c", network=BOUND_CS),
    _device("free-1", "a", dev_eui="70b3d57ed000000d"),
    _device("plain-1", "a"),
    _device("b-1", "b", dev_eui=EUI_B),
)  # fmt: skip


def _up(device_id: str, dev_eui: str | None, network: str = "tts", **kw: Any) -> Uplink:
    defaults: dict[str, Any] = {"application": "city-air", "tenant": "city"}
    if network == "mqtt":
        defaults = {}
    return Uplink(network=network, device_id=device_id, dev_eui=dev_eui, **{**defaults, **kw})


def _credited(uplink: Uplink, view: RegistryView = VIEW) -> str:
    registration = resolve_device(uplink, view, allow_unknown=False)
    assert registration is not None
    return f"{registration.device.tenant}/{registration.device.id}"


# --- DevEUI and device id -------------------------------------------------------------------------
def test_a_device_found_by_dev_eui_is_credited_whatever_id_the_uplink_names() -> None:
    assert _credited(_up("aq-1", EUI_A)) == "a/aq-1"
    assert _credited(_up("eui-70b3d57ed000000d", "70b3d57ed000000d")) == "a/free-1"
    # The DevEUI is the LoRaWAN identity: the id an uplink names cannot pull it elsewhere.
    assert _credited(_up("aq-1", EUI_B, application="x", tenant=None)) == "b/b-1"


def test_a_plain_sensor_is_matched_by_id_as_before() -> None:
    assert _credited(_up("plain-1", None, "mqtt")) == "a/plain-1"


def test_a_registered_id_with_another_dev_eui_is_an_identity_mismatch_across_tenants() -> None:
    # Tenant b's publisher names tenant a's device with a DevEUI nobody registered.
    with pytest.raises(IdentityMismatch) as info:
        resolve_device(_up("aq-1", EUI_X), VIEW, allow_unknown=False)
    assert info.value.reason is Reason.IDENTITY_MISMATCH
    assert "'aq-1'" in info.value.detail
    assert EUI_X in info.value.detail
    assert EUI_A not in info.value.detail  # the registered DevEUI is not given away


def test_a_registered_dev_eui_and_an_uplink_without_one_is_a_mismatch() -> None:
    with pytest.raises(IdentityMismatch, match="no DevEUI, but that device is registered with a"):
        registered_device(_up("aq-1", None), VIEW)
    with pytest.raises(IdentityMismatch):
        registered_device(_up("free-1", None, "mqtt"), VIEW)


def test_a_dev_eui_on_a_device_registered_without_one_is_a_mismatch() -> None:
    with pytest.raises(IdentityMismatch, match="registered with no DevEUI"):
        registered_device(_up("plain-1", EUI_X), VIEW)


def test_a_mismatch_is_refused_even_when_unknown_devices_are_let_through() -> None:
    with pytest.raises(IdentityMismatch):
        resolve_device(_up("aq-1", EUI_X), VIEW, allow_unknown=True)
    # What names no registered device at all is unknown, as before.
    assert resolve_device(_up("nobody", EUI_X), VIEW, allow_unknown=True) is None
    with pytest.raises(UnknownDevice):
        resolve_device(_up("nobody", EUI_X), VIEW, allow_unknown=False)
    with pytest.raises(UnknownDevice):
        resolve_device(_up("nobody", None, "mqtt"), VIEW, allow_unknown=False)


def test_identity_is_checked_before_the_active_flag() -> None:
    view = _view(_device("off-1", "a", dev_eui=EUI_A, active=False))
    with pytest.raises(IdentityMismatch):
        resolve_device(_up("off-1", EUI_X), view, allow_unknown=False)
    with pytest.raises(InactiveDevice):
        resolve_device(_up("off-1", EUI_A), view, allow_unknown=False)


def test_a_hostile_device_id_is_cut_in_the_detail() -> None:
    with pytest.raises(UnknownDevice) as info:
        resolve_device(_up("x" * 70_000 + "\n", None, "mqtt"), VIEW, allow_unknown=False)
    assert len(info.value.detail) < 400
    assert "\n" not in info.value.detail


# --- the network-server binding ------------------------------------------------------------------
def test_a_bound_device_takes_uplinks_from_its_own_application_and_tenant() -> None:
    assert _credited(_up("aq-1", EUI_A, application="city-air", tenant="city")) == "a/aq-1"
    assert _credited(_up("x", "70b3d57ed000000c", "chirpstack", application=CS_APP)) == "a/cs-1"


@pytest.mark.parametrize(
    ("uplink", "said"),
    [
        (_up("aq-1", EUI_A, application="other-app"), "application 'other-app'"),
        (_up("aq-1", EUI_A, tenant="other-tenant"), "tenant 'other-tenant'"),
        (_up("aq-1", EUI_A, tenant=None), "no tenant"),
        (_up("aq-1", EUI_A, "chirpstack", application="city-air"), "'chirpstack'"),
        (_up("aq-1", None, "mqtt"), ""),  # a plain MQTT uplink: also no DevEUI
        (_up("x", "70b3d57ed000000c", "chirpstack", application=CS_OTHER), CS_OTHER),
        (_up("x", "70b3d57ed000000c", "tts", application=CS_APP), "'tts'"),
    ],
)
def test_an_uplink_from_elsewhere_for_a_bound_device_is_an_identity_mismatch(
    uplink: Uplink, said: str
) -> None:
    with pytest.raises(IdentityMismatch) as info:
        resolve_device(uplink, VIEW, allow_unknown=False)
    assert said in info.value.detail


def test_a_plain_mqtt_uplink_for_a_bound_device_without_dev_eui_is_refused_by_the_binding() -> None:
    view = _view(_device("bound-plain", "a", network=BOUND_TTS))
    with pytest.raises(IdentityMismatch, match=r"bound to tts:city-air@city.*'mqtt'"):
        resolve_device(_up("bound-plain", None, "mqtt"), view, allow_unknown=False)


def test_a_tts_binding_without_tenant_is_a_single_tenant_deployment() -> None:
    binding = NetworkBinding.model_validate({"server": "tts", "application": "city-air"})
    assert binding_mismatch(binding, _up("d", None, application="city-air", tenant=None)) is None
    assert binding_mismatch(binding, _up("d", None, application="city-air", tenant="t1"))


def test_chirpstack_binding_ignores_the_chirpstack_tenant() -> None:
    binding = NetworkBinding.model_validate({"server": "chirpstack", "application": CS_APP})
    uplink = _up("d", EUI_A, "chirpstack", application=CS_APP, tenant="any-tenant-uuid")
    assert binding_mismatch(binding, uplink) is None


# --- through the real formats -------------------------------------------------------------------
def _envelope(fmt: str, topic: str, doc: dict[str, Any]) -> RawEnvelope:
    return RawEnvelope("mqtt", fmt, topic, "k", T, json.dumps(doc).encode())


def _tts(
    topic_device: str, payload_device: str, dev_eui: str, app: str = "city-air"
) -> RawEnvelope:
    doc = {
        "end_device_ids": {
            "device_id": payload_device,
            "application_ids": {"application_id": app},
            "dev_eui": dev_eui.upper(),
        },
        "uplink_message": {"f_port": 1, "f_cnt": 3, "decoded_payload": {"temperature": 3.5}},
    }
    return _envelope("tts-v3", f"v3/{app}@city/devices/{topic_device}/up", doc)


def _verdict(envelope: RawEnvelope) -> str:
    try:
        uplink = parse_envelope(envelope, 0.0)
        return _credited(uplink)
    except (IdentityMismatch, UnknownDevice) as exc:
        return exc.reason.value


def test_spoofs_through_the_formats_are_refused_and_genuine_uplinks_credited() -> None:
    cases = {
        "genuine": (_tts("aq-1", "aq-1", EUI_A), "a/aq-1"),
        "registered id, another DevEUI": (_tts("aq-1", "aq-1", EUI_X), "identity_mismatch"),
        "topic and payload ids differ": (_tts("aq-1", "aq-2", EUI_A), "identity_mismatch"),
        "another application": (_tts("aq-1", "aq-1", EUI_A, "other-app"), "identity_mismatch"),
        "ChirpStack DevEUIs differ": (
            _envelope(
                "chirpstack-v4",
                f"application/{CS_APP}/device/70b3d57ed000000c/event/up",
                {"deviceInfo": {"devEui": EUI_A, "applicationId": CS_APP}, "object": {"t": 1}},
            ),
            "identity_mismatch",
        ),
        "ChirpStack genuine": (
            _envelope(
                "chirpstack-v4",
                f"application/{CS_APP}/device/70b3d57ed000000c/event/up",
                {"deviceInfo": {"devEui": "70B3D57ED000000C", "applicationId": CS_APP}},
            ),
            "a/cs-1",
        ),
        "plain sensor naming a LoRaWAN device": (
            _envelope("cityhub-json", "cityhub/ingest/free-1", {"temperature": 1}),
            "identity_mismatch",
        ),
        "plain sensor": (
            _envelope("cityhub-json", "cityhub/ingest/plain-1", {"temperature": 1}),
            "a/plain-1",
        ),
    }
    got = {name: _verdict(envelope) for name, (envelope, _) in cases.items()}
    assert got == {name: want for name, (_, want) in cases.items()}


# --- the simulator's fleet keeps working ---------------------------------------------------------
async def test_every_simulated_uplink_is_credited_to_the_device_it_was_registered_as() -> None:
    """``make run`` registers the fleet, bound to its applications, then publishes its traffic:
    nothing it sends may be refused, duplicates and devices on two network servers included."""
    fleet = build_fleet(300, seed=5)
    registry = Registry(InMemoryRegistryStore())
    report = await register_fleet(registry, fleet)
    assert report.failed == 0
    entries = [registry.view.device_by_id(d.device_id) for d in fleet.devices]
    assert any(e is not None and e.network is not None for e in entries), "bound devices"
    assert any(d.also_on for d in fleet.devices)
    names = {Format.TTS: "tts-v3", Format.CHIRPSTACK: "chirpstack-v4"}
    traffic = Traffic(fleet, seed=5, duplicate_ratio=0.3)
    seen: Counter[Format] = Counter()
    for i in range(2000):
        m = traffic.next_message(1_760_000_000.0 + i)
        fmt = names.get(m.format, "cityhub-json")
        uplink = get_format(fmt).parse(m.topic, m.payload, 1_760_000_000.0 + i)
        registration = resolve_device(uplink, registry.view, allow_unknown=False)
        assert registration is not None
        assert (registration.device.tenant, registration.device.id) == (TENANT, m.device_id)
        seen[m.format] += 1
    assert set(seen) == set(Format)


async def test_the_simulated_types_promise_the_interval_their_devices_keep() -> None:
    """50 devices sharing 20 messages a second report every 2.5 s on average: each type
    promises a reading every 3 s, so the console's coverage and health mean something."""
    assert expected_interval(50, 20.0) == 3
    assert expected_interval(1, 100.0) == 1
    assert expected_interval(10, 0.0) == 3600
    registry = Registry(InMemoryRegistryStore())
    await register_fleet(registry, build_fleet(50, seed=5), interval_seconds=3)
    kinds = {d.kind.value for d in build_fleet(50, seed=5).devices}
    for kind in kinds:
        device_type = registry.view.device_type(TENANT, kind)
        assert device_type is not None
        assert device_type.expected_interval_seconds == 3
