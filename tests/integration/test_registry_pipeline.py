"""The registry in the pipeline, on the real stack: a registered device's raw LoRaWAN payload
comes out as observations with its location and area; unknown and inactive devices are
dead-lettered; a device registered after its first messages is normalised from then on, with
no restart."""

from __future__ import annotations

import pytest

from cityhub.connectors.decoders.cayenne import encode_lpp
from cityhub.schemas.registry import DeviceSpec, Location
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry

from .hub import Hub, publish, read_topic
from .uplinks import chirpstack, tts, unique_eui

pytestmark = pytest.mark.integration

ADMIN = Principal.system()


async def test_registered_unknown_inactive_and_late_registered_devices(
    weather_hub: tuple[Hub, Registry],
) -> None:
    hub, registry = weather_hub
    known, inactive, late = unique_eui(), unique_eui(), unique_eui()
    await registry.create_device(
        ADMIN,
        "city",
        DeviceSpec(
            id="weather-dam", name="Dam", type="weather", dev_eui=known,
            location=Location(latitude=52.3731, longitude=4.8926), area="centrum", tags=["roof"],
        ),
    )  # fmt: skip
    await registry.create_device(
        ADMIN,
        "city",
        DeviceSpec(id="weather-off", name="Off", type="weather", dev_eui=inactive, active=False),
    )
    payload = encode_lpp([(1, "temperature", 7.5), (2, "relative_humidity", 88.0)])
    await publish(
        [
            tts("ns-name-of-dam", known, 10, payload=payload),
            tts("weather-off", inactive, 1, payload=payload),
            chirpstack(late, 1, payload=payload),  # not registered yet
        ]
    )
    letters = await read_topic(
        hub.topics["deadletter"],
        until=lambda r: {x["reason"] for x in r} >= {"unknown_device", "inactive_device"},
        timeout=60,
    )
    by_reason = {x["reason"]: x for x in letters}
    assert by_reason["unknown_device"]["device"] == late
    assert "ALLOW_UNKNOWN_DEVICES" in by_reason["unknown_device"]["detail"]
    assert by_reason["inactive_device"]["device"] == inactive

    # registered after its first message: the next one is normalised, no restart
    await registry.create_device(
        ADMIN, "city", DeviceSpec(id="weather-late", name="Late", type="weather", dev_eui=late)
    )
    await publish([chirpstack(late, 2, payload=payload)])

    observations = await read_topic(
        hub.topics["observations"],
        until=lambda r: {o["device_id"] for o in r} >= {"weather-dam", "weather-late"},
        timeout=60,
    )
    dam = {o["quantity"]: o for o in observations if o["device_id"] == "weather-dam"}
    assert dam["temperature"]["value"] == 7.5
    assert dam["temperature"]["location"] == {
        "latitude": 52.3731,
        "longitude": 4.8926,
        "altitude": None,
    }
    assert dam["temperature"]["area"] == "centrum"
    assert (dam["temperature"]["tenant"], dam["temperature"]["device_type"]) == ("city", "weather")
    assert dam["temperature"]["tags"] == ["roof"]
    assert dam["temperature"]["classification"] == "public"
    assert dam["relative_humidity"]["unit"] == "%RH"
    late_obs = [o for o in observations if o["device_id"] == "weather-late"]
    assert {o["network"]["f_cnt"] for o in late_obs} == {2}
    assert not [o for o in observations if o["dev_eui"] == inactive]
    assert hub.metric("cityhub_deadletters_total", reason="unknown_device") >= 1
