"""Which devices a key sees as NGSI-LD entities, and what the registry says about each.

The rule of the subscriptions and every read of the API: a key sees its own tenant's devices
and other tenants' devices of ``public`` types; an admin key sees every tenant's. Personal
data is left out of the standard interfaces whole: a device of a ``personal`` type or linked
to a data subject is no entity at all (its readings are sealed, and nothing in NGSI-LD could
ask for a processing activity).

Pure over the registry's view.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from cityhub.connectors.ngsi_ld.entities import DeviceFacts, GeoPoint
from cityhub.connectors.ngsi_ld.models import mapping_for
from cityhub.schemas.registry import Classification, Role
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.view import DeviceEntry, RegistryView

PAGE: Final = 1000


def _facts(view: RegistryView, entry: DeviceEntry) -> DeviceFacts | None:
    device_type = view.device_type(entry.tenant, entry.type)
    if device_type is None or device_type.classification is Classification.PERSONAL:
        return None
    if entry.data_subject is not None:
        return None
    location = None
    if entry.latitude is not None and entry.longitude is not None:
        location = GeoPoint(entry.longitude, entry.latitude, entry.altitude)
    return DeviceFacts(
        tenant=entry.tenant,
        device_id=entry.id,
        name=entry.name,
        mapping=mapping_for(device_type),
        location=location,
        area=entry.area,
    )


def _may_see(view: RegistryView, who: Principal, entry: DeviceEntry) -> bool:
    if who.role is Role.ADMIN or entry.tenant == who.tenant:
        return True
    device_type = view.device_type(entry.tenant, entry.type)
    return device_type is not None and device_type.classification is Classification.PUBLIC


def visible_device(
    view: RegistryView, who: Principal, tenant: str, device_id: str
) -> DeviceFacts | None:
    """The device ``device_id`` of ``tenant`` if ``who`` may see it as an entity, else None
    (unknown, another tenant's non-public one, or personal: all look the same)."""
    entry = view.device_by_id(device_id)
    if entry is None or entry.tenant != tenant or not _may_see(view, who, entry):
        return None
    return _facts(view, entry)


def visible_devices(
    view: RegistryView, who: Principal, *, only_tenant: str | None = None
) -> Iterator[DeviceFacts]:
    """Every device ``who`` may see as an entity, by tenant then id (``only_tenant``: of that
    tenant only, the ``NGSILD-Tenant`` header)."""
    for tenant in sorted(t.id for t in view.tenants()):
        if only_tenant is not None and tenant != only_tenant:
            continue
        cursor: str | None = None
        while True:
            page, cursor = view.devices_page(tenant, limit=PAGE, cursor=cursor)
            for entry in page:
                if _may_see(view, who, entry):
                    facts = _facts(view, entry)
                    if facts is not None:
                        yield facts
            if cursor is None:
                break
