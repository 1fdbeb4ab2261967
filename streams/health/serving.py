"""Device health in an API process (``cityhub.streams.wiring_api`` adds it when
``health.enabled``): the view of the device-health topic, the queries the routes and the
console answer with, and the gauges for alerting, refreshed every ``REFRESH_SECONDS``."""

from __future__ import annotations

import asyncio
import logging

from cityhub.schemas.device_health import HealthState
from cityhub.schemas.settings import Settings
from cityhub.streams.health.metrics import DEVICES_NEVER_SEEN, DEVICES_SILENT
from cityhub.streams.health.queries import DeviceHealthQueries
from cityhub.streams.health.store import DeviceHealthStore
from cityhub.streams.http import HealthCheck
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.runtime.host import Part, store_part
from cityhub.streams.wiring_adapters import flag

log = logging.getLogger("cityhub.health")

REFRESH_SECONDS = 15.0
"""How often the silent-device gauges are computed (a Prometheus scrape interval or so)."""


def export_counts(health: DeviceHealthQueries) -> None:
    """Set ``cityhub_devices_silent`` and ``cityhub_devices_never_seen`` from the views now.
    Label sets that no longer count are removed, all in one go (no scrape sees half)."""
    counts = health.state_counts()
    DEVICES_SILENT.clear()
    DEVICES_NEVER_SEEN.clear()
    for (tenant, type_id, state), count in counts.items():
        if state is HealthState.SILENT:
            DEVICES_SILENT.labels(tenant, type_id).set(count)
        elif state is HealthState.NEVER_SEEN:
            DEVICES_NEVER_SEEN.labels(tenant, type_id).set(count)
    # A pair with no silent device reports 0, so an alert resolves rather than goes stale.
    for tenant, type_id, _ in counts:
        DEVICES_SILENT.labels(tenant, type_id).inc(0)
        DEVICES_NEVER_SEEN.labels(tenant, type_id).inc(0)


def device_health_parts(
    settings: Settings, registry: RegistryStore, checks: dict[str, HealthCheck]
) -> tuple[DeviceHealthQueries, list[Part]]:
    """The queries over the view, and the parts that keep the view and the gauges."""
    store = DeviceHealthStore(settings)
    checks["device_health"] = flag(store, "ready")
    health = DeviceHealthQueries(registry.view, store.view, settings.health)

    async def refresh() -> None:
        while True:
            if store.ready and registry.ready:
                try:
                    export_counts(health)
                except Exception:  # a gauge must never take the API down
                    log.exception("could not count the silent devices")
            await asyncio.sleep(REFRESH_SECONDS)

    return health, [store_part("device health", store), Part("device health gauges", refresh)]
