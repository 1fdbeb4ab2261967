"""Which devices a key sees as NGSI-LD entities, and what the registry says about each.

The rule of the subscriptions and every read of the API: a key sees its own tenant's devices,
other tenants' devices of ``public`` types, and other tenants' devices that one of its active
agreements selects (``grants``; the entity's attributes are then the quantities the agreement
shares, since the history reads return only those readings); an admin key sees every
tenant's. Personal data is left out of the standard interfaces whole: a device of a
``personal`` type or linked to a data subject is no entity at all (its readings are sealed,
and nothing in NGSI-LD could ask for a processing activity; no agreement changes that).

Pure over the registry's view.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from cityhub.connectors.ngsi_ld.entities import DeviceFacts, GeoPoint
from cityhub.connectors.ngsi_ld.models import mapping_for
from cityhub.schemas.registry import Classification, Role
from cityhub.schemas.sharing import ItemKind
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.view import DeviceEntry, RegistryView
from cityhub.streams.sharing.grants import Grant
from cityhub.streams.sharing.read_access import covering_device, device_item

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


def _may_see(
    view: RegistryView, who: Principal, entry: DeviceEntry, grants: tuple[Grant, ...]
) -> bool:
    if who.role is Role.ADMIN or entry.tenant == who.tenant:
        return True
    device_type = view.device_type(entry.tenant, entry.type)
    if device_type is not None and device_type.classification is Classification.PUBLIC:
        return True
    return shared_under(view, entry, grants) is not None


def shared_under(view: RegistryView, entry: DeviceEntry, grants: tuple[Grant, ...]) -> Grant | None:
    """The first of ``grants`` (the key's tenant's active agreements) that selects the device
    and some quantity of it, or None."""
    if not any(grant.provider == entry.tenant for grant in grants):
        return None
    facts = device_item(view, entry, ItemKind.OBSERVATIONS)
    return None if facts is None else covering_device(grants, facts)


def agreement_of(
    view: RegistryView, who: Principal, device_id: str, grants: tuple[Grant, ...]
) -> str | None:
    """The agreement under which ``who`` sees the device, or None when it needs none (an
    admin's key, its own tenant's device, a ``public`` one) or no agreement shares it."""
    entry = view.device_by_id(device_id)
    if not grants or entry is None or who.role is Role.ADMIN or entry.tenant == who.tenant:
        return None
    device_type = view.device_type(entry.tenant, entry.type)
    if device_type is None or device_type.classification is Classification.PUBLIC:
        return None
    grant = shared_under(view, entry, grants)
    return None if grant is None else grant.agreement_id


def visible_device(
    view: RegistryView,
    who: Principal,
    tenant: str,
    device_id: str,
    grants: tuple[Grant, ...] = (),
) -> DeviceFacts | None:
    """The device ``device_id`` of ``tenant`` if ``who`` may see it as an entity (with
    ``grants``, the active agreements of its tenant), else None (unknown, another tenant's
    non-public one no agreement shares, or personal: all look the same)."""
    entry = view.device_by_id(device_id)
    if entry is None or entry.tenant != tenant or not _may_see(view, who, entry, grants):
        return None
    return _facts(view, entry)


def visible_devices(
    view: RegistryView,
    who: Principal,
    *,
    only_tenant: str | None = None,
    grants: tuple[Grant, ...] = (),
) -> Iterator[DeviceFacts]:
    """Every device ``who`` may see as an entity (with ``grants``, the active agreements of
    its tenant), by tenant then id (``only_tenant``: of that tenant only, the
    ``NGSILD-Tenant`` header)."""
    for tenant in sorted(t.id for t in view.tenants()):
        if only_tenant is not None and tenant != only_tenant:
            continue
        cursor: str | None = None
        while True:
            page, cursor = view.devices_page(tenant, limit=PAGE, cursor=cursor)
            for entry in page:
                if _may_see(view, who, entry, grants):
                    facts = _facts(view, entry)
                    if facts is not None:
                        yield facts
            if cursor is None:
                break
