"""Data for the SensorThings integration tests: a registry with two tenants (internal, public
and personal device types) and their observations written into a history schema of the
test module's own, and a server of the API app on a loopback port.

Observations are written with the history store's own columns (the table contract of issue
11), one INSERT per row: a few hundred rows, so the writer's COPY path is not needed here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web

from cityhub.schemas.observation import event_id
from cityhub.schemas.registry import (
    Classification,
    DeviceSpec,
    DeviceTypeSpec,
    Location,
    Role,
    TenantSpec,
)
from cityhub.schemas.settings import QuotaSettings, Settings
from cityhub.streams.api.app import build_api
from cityhub.streams.history.connection import connect
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.sensorthings.routes import SENSORTHINGS_KEY, SensorThings
from tests.integration.hub import free_port

START = datetime(2026, 11, 1, tzinfo=UTC)

DEVICES = (
    # tenant, device, type, classification, latitude, longitude, quantities
    ("city", "air-1", "air", Classification.INTERNAL, 52.37, 4.89, ("pm2_5", "temperature")),
    ("city", "air-2", "air", Classification.INTERNAL, 52.36, 4.90, ("pm2_5",)),
    ("city", "noise-1", "noise", Classification.PUBLIC, 52.38, 4.88, ("sound_level",)),
    ("city", "room-1", "room", Classification.PERSONAL, 52.35, 4.91, ("temperature",)),
    ("other", "park-1", "park", Classification.INTERNAL, 51.92, 4.48, ("occupancy",)),
    ("other", "wx-1", "weather", Classification.PUBLIC, 51.91, 4.47, ("temperature", "wind_speed")),
)
READINGS = 12
"""Observations per device and quantity: one an hour from START, values 1 .. 12."""


@dataclass
class Keys:
    city: str
    other: str
    admin: str


async def seed_registry() -> tuple[Registry, Keys]:
    """An in-memory registry with the two tenants, their types, devices and keys."""
    store = InMemoryRegistryStore()
    await store.start()
    registry = Registry(store)
    system = Principal.system()
    for tenant in ("city", "other"):
        await registry.create_tenant(system, TenantSpec(id=tenant, name=tenant.title()))
    made: set[tuple[str, str]] = set()
    for tenant, device, type_id, classification, lat, lon, _ in DEVICES:
        if (tenant, type_id) not in made:
            spec = DeviceTypeSpec(
                id=type_id, name=f"{type_id} sensor", classification=classification
            )
            await registry.create_type(system, tenant, spec)
            made.add((tenant, type_id))
        await registry.create_device(
            system,
            tenant,
            DeviceSpec(
                id=device,
                name=f"{device} at {lat:.2f},{lon:.2f}",
                type=type_id,
                location=Location(latitude=lat, longitude=lon),
                area=f"{tenant}-centre",
            ),
        )
    _, city = await registry.create_key(system, "city", Role.SUBSCRIBER, "city reader")
    _, other = await registry.create_key(system, "other", Role.SUBSCRIBER, "other reader")
    _, admin = await registry.create_key(system, "city", Role.ADMIN, "admin")
    return registry, Keys(city, other, admin)


_INSERT = """
INSERT INTO observations (event_id, observed_at, received_at, tenant, device_id, device_type,
    quantity, unit, value_number, area, location, classification, data_subject, doc)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326), %s, %s,
    %s::jsonb)
"""


async def seed_history(settings: Settings) -> int:
    """Write every device's readings into the settings' history schema; the row count."""
    from cityhub.schemas.quantities import unit_of

    rows = 0
    async with await connect(settings, autocommit=True) as conn:
        for tenant, device, type_id, classification, lat, lon, quantities in DEVICES:
            personal = classification is Classification.PERSONAL
            for quantity in quantities:
                for n in range(READINGS):
                    observed = START + timedelta(hours=n)
                    eid = event_id(device, observed.isoformat(), quantity)
                    value = float(n + 1)
                    doc = {
                        "event_id": eid,
                        "device_id": device,
                        "quantity": quantity,
                        "value": None if personal else value,
                        "observed_at": observed.isoformat(),
                        # the fourth reading was flagged (docs/quality.md): resultQuality
                        "quality": ["spike"] if n == 3 else [],
                    }
                    await conn.execute(
                        _INSERT,
                        (
                            uuid.UUID(eid),
                            observed,
                            observed + timedelta(seconds=2),
                            tenant,
                            device,
                            type_id,
                            quantity,
                            unit_of(quantity),
                            None if personal else value,
                            f"{tenant}-centre",
                            lon,
                            lat,
                            classification.value,
                            "subject-0001" if personal else None,
                            json.dumps(doc),
                        ),
                    )
                    rows += 1
    return rows


@asynccontextmanager
async def serve(registry: Registry, settings: Settings) -> AsyncIterator[str]:
    """The API app (with SensorThings over ``settings``' history) on a loopback port; yields
    the service root URL. Its keys may make many requests: the OGC suite makes thousands."""
    app = build_api(
        registry, quotas=QuotaSettings(api_requests_per_second=100_000, api_burst=100_000)
    )
    await app[SENSORTHINGS_KEY].close()  # the environment's; this test's schema instead
    app[SENSORTHINGS_KEY] = SensorThings.from_settings(registry, settings)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}/sta/v1.1"
    finally:
        await runner.cleanup()
