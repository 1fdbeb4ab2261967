"""The port's harbour weather stations, shared by the tests of sharing under agreements: tenants
``port``, ``city`` and ``uni``, an operator and a subscriber key of each, and ``port``'s two
stations (``harbour-1`` in area ``harbour``, ``dock-1`` in area ``dock``) of a Cayenne LPP type
``weather`` classified ``internal``."""

from __future__ import annotations

from cityhub.schemas.registry import (
    Classification,
    DeviceSpec,
    DeviceTypeSpec,
    Location,
    Role,
    TenantSpec,
)
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

from .hub import BOOTSTRAP
from .uplinks import unique_eui

HARBOUR = Location(latitude=51.95, longitude=4.14)


async def seed(prefix: str) -> tuple[dict[str, str], dict[str, str]]:
    """The tenants, ``port``'s two stations, an operator and a subscriber key of each tenant;
    returns (keys, the stations' DevEUIs by device id)."""
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    store = RegistryStore(settings)
    await store.start()
    try:
        registry, system = Registry(store), Principal.system()
        keys: dict[str, str] = {}
        for tenant in ("port", "city", "uni"):
            await registry.create_tenant(system, TenantSpec(id=tenant, name=tenant.title()))
            keys[f"{tenant}-operator"] = (
                await registry.create_key(system, tenant, Role.OPERATOR, "operator")
            )[1]
            keys[tenant] = (await registry.create_key(system, tenant, Role.SUBSCRIBER, "sub"))[1]
        await registry.create_type(
            system,
            "port",
            DeviceTypeSpec(
                id="weather",
                name="Weather",
                decoder="cayenne-lpp",
                classification=Classification.INTERNAL,
            ),
        )
        euis = {"harbour-1": unique_eui(), "dock-1": unique_eui()}
        for device_id, area in (("harbour-1", "harbour"), ("dock-1", "dock")):
            await registry.create_device(
                system,
                "port",
                DeviceSpec(
                    id=device_id,
                    name=device_id,
                    type="weather",
                    dev_eui=euis[device_id],
                    location=HARBOUR,
                    area=area,
                ),
            )
        return keys, euis
    finally:
        await store.stop()
