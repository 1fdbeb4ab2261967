"""Registering the simulated fleet in the device registry, so that ``make run`` shows the whole
pipeline: without registration every simulated uplink would be dead-lettered as unknown."""

from __future__ import annotations

import contextlib
import logging
import math

from cityhub.schemas.registry import (
    NETWORK_DECODER,
    Classification,
    DeviceSpec,
    DeviceTypeSpec,
    Location,
    NetworkBinding,
    NetworkServer,
    TenantSpec,
)
from cityhub.streams.devtools.simulator.fleet import Device, Fleet, Format, Kind
from cityhub.streams.registry.devices import ImportReport
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.service_errors import Conflict

log = logging.getLogger("cityhub.simulator")

TENANT = "demo"

# Who may see what a kind of device measures: a bin's fill level is operational, a footfall
# count is about people (the open-data feed and consent routing will act on this).
CLASSIFICATION: dict[Kind, Classification] = {
    Kind.AIR_QUALITY: Classification.PUBLIC,
    Kind.NOISE: Classification.PUBLIC,
    Kind.WATER_LEVEL: Classification.PUBLIC,
    Kind.WEATHER: Classification.PUBLIC,
    Kind.PARKING: Classification.INTERNAL,
    Kind.WASTE_BIN: Classification.INTERNAL,
    Kind.FOOTFALL: Classification.PERSONAL,
}


def network_binding(device: Device) -> NetworkBinding | None:
    """The network-server application a simulated LoRaWAN device is bound to: its TTS
    application and tenant, or its ChirpStack application. None for plain MQTT sensors, and for
    a device on both network servers (``also_on``): a binding names one application."""
    if device.also_on is not None:
        return None
    if device.format is Format.TTS:
        return NetworkBinding(
            server=NetworkServer.TTS, application=device.application, tenant=device.tenant
        )
    if device.format is Format.CHIRPSTACK:
        return NetworkBinding(
            server=NetworkServer.CHIRPSTACK, application=device.chirpstack_application_id
        )
    return None


def device_spec(device: Device) -> DeviceSpec:
    """The registry entry of a simulated device (LoRaWAN devices by DevEUI and bound to their
    network-server application, MQTT ones by id)."""
    lorawan = device.format in (Format.TTS, Format.CHIRPSTACK)
    return DeviceSpec(
        id=device.device_id,
        name=f"{device.kind.value.replace('_', ' ')} {device.index}",
        type=device.kind.value,
        dev_eui=device.dev_eui if lorawan else None,
        location=Location(
            latitude=device.latitude, longitude=device.longitude, altitude=device.altitude
        ),
        area=device.district,
        tags=["simulated", device.kind.value],
        network=network_binding(device),
    )


def expected_interval(devices: int, rate: float) -> int:
    """The reporting interval a simulated device keeps on average (``devices`` sharing ``rate``
    messages a second), in whole seconds: what its type promises, for coverage and health."""
    return max(1, math.ceil(devices / rate)) if rate > 0 else 3600


async def register_fleet(
    registry: Registry, fleet: Fleet, *, interval_seconds: int | None = None
) -> ImportReport:
    """Create the demo tenant and one device type per kind when missing (promising a reading
    every ``interval_seconds``: ``expected_interval``), and upsert every device of ``fleet``.
    Safe to run again."""
    who = Principal.system()
    with contextlib.suppress(Conflict):
        await registry.create_tenant(who, TenantSpec(id=TENANT, name="Demo city (simulated)"))
    for kind in Kind:
        with contextlib.suppress(Conflict):
            await registry.create_type(
                who,
                TENANT,
                DeviceTypeSpec(
                    id=kind.value,
                    name=kind.value.replace("_", " ").capitalize(),
                    decoder=NETWORK_DECODER,
                    classification=CLASSIFICATION[kind],
                    expected_interval_seconds=interval_seconds,
                ),
            )
    report = await registry.import_devices(who, TENANT, [device_spec(d) for d in fleet.devices])
    log.info(
        "registered the simulated fleet in tenant %r: %d created, %d updated, %d failed",
        TENANT,
        report.created,
        report.updated,
        report.failed,
    )
    return report
