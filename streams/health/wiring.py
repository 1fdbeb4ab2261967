"""The health stage in a worker process (``cityhub.streams.wiring_worker`` adds it when
``health.enabled``): its two agents on a runtime and a consumer group of their own
(``health_group``), writing through a writer of their own."""

from __future__ import annotations

from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import health_group
from cityhub.streams.health.agent import DeadLetterHealthAgent, DeviceActivityAgent
from cityhub.streams.health.lookups import device_locator, interval_lookup, registered_lookup
from cityhub.streams.http import HealthCheck
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.runtime.host import Part
from cityhub.streams.wiring_stage import side_stage_part


def health_worker_part(
    settings: Settings, registry: RegistryStore, checks: dict[str, HealthCheck]
) -> Part:
    """The health stage's part of a worker process (the module docstring)."""
    view = registry.view
    default = settings.health.default_expected_interval_seconds
    return side_stage_part(
        "health stage",
        settings,
        health_group(settings.worker.app_id),
        [
            DeviceActivityAgent(settings, interval_lookup(view, default), registered_lookup(view)),
            DeadLetterHealthAgent(settings, device_locator(view), registered_lookup(view)),
        ],
        # A dead letter's device is found in the registry, and a device's interval too.
        ready=lambda: registry.ready,
        check="health_worker",
        checks=checks,
    )
