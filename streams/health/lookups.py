"""What the health stage asks the registry: a device's expected interval, which registered
device a dead letter names, and whether a device is still registered. Functions over the
registry's view (pure lookups, no I/O)."""

from __future__ import annotations

from cityhub.schemas.expected_interval import expected_interval
from cityhub.schemas.registry import normalise_dev_eui
from cityhub.streams.health.agent import IntervalOf, Registered
from cityhub.streams.health.dead_letters import Locate
from cityhub.streams.registry.view import RegistryView


def interval_lookup(view: RegistryView, default: int) -> IntervalOf:
    """(tenant, device id) -> the device's expected interval: its own, its type's, else
    ``default`` (also for a device no longer registered in that tenant)."""

    def interval_of(tenant: str, device_id: str) -> int:
        entry = view.device_by_id(device_id)
        if entry is None or entry.tenant != tenant:
            return default
        return expected_interval(entry, view.device_type(tenant, entry.type), default)

    return interval_of


def device_locator(view: RegistryView) -> Locate:
    """A dead letter's ``device`` (a device id, or a DevEUI in any of its spellings) -> (tenant,
    device id) of the registered device, or None."""

    def locate(named: str) -> tuple[str, str] | None:
        entry = view.device_by_id(named)
        if entry is None:
            try:
                entry = view.device_by_eui(normalise_dev_eui(named))
            except ValueError:
                return None
        return None if entry is None else (entry.tenant, entry.id)

    return locate


def registered_lookup(view: RegistryView) -> Registered:
    """(tenant, device id) -> whether the registry has that device in that tenant."""

    def registered(tenant: str, device_id: str) -> bool:
        entry = view.device_by_id(device_id)
        return entry is not None and entry.tenant == tenant

    return registered
