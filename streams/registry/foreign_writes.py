"""What an admin key of another tenant may not write: the residents' devices.

An admin key reaches every tenant (docs/security.md), but a tenant's residents are its own: an
admin key of another tenant manages the tenant's devices without ever seeing their data
subjects, so it may neither link nor unlink them, nor change a linked device (another sensor's
readings would be credited to the resident) or delete it (an unlink by another way); and so
that its answers do not tell which devices are linked, it may write no device of a personal
type at all. Reviews found each way, one with a resident's readings delivered in clear to the
admin's tenant, one counting the linked devices by the answers. Nor may it create, change or
delete a personal device type.
"""

from __future__ import annotations

from collections.abc import Iterable

from cityhub.schemas.registry import Classification, DeviceType, DeviceTypeSpec
from cityhub.streams.registry.principals import Principal, is_own_tenant
from cityhub.streams.registry.view import RegistryView

FOREIGN_RELINK = (
    "only the keys of the device's own tenant may write a device of a personal type (link or "
    "unlink its data subject, change or delete it); an admin key of another tenant may not"
)


FOREIGN_PERSONAL_TYPE = (
    "only the keys of the type's own tenant may create, change or delete a device type that is "
    "personal (or make one so); an admin key of another tenant may not"
)


def foreign_personal_type(
    who: Principal, tenant: str, *types: DeviceTypeSpec | DeviceType | None
) -> bool:
    """Whether a write by ``who`` of a device type that is, or becomes, one of ``types`` is
    refused: another tenant's admin key may not touch a personal type (making it internal would
    free its devices from this rule and its data from purpose binding; changing its category
    changes which processing activities admit its residents' items; and the answers would tell
    whether any of its devices is linked)."""
    if is_own_tenant(who, tenant):
        return False
    return any(t is not None and t.classification is Classification.PERSONAL for t in types)


def foreign_resident_write(
    view: RegistryView,
    who: Principal,
    tenant: str,
    types: Iterable[str],
    linked: str | None,
    after: str | None,
) -> bool:
    """Whether a write by ``who`` of a device of ``types`` (its type before and after the
    write), linked to ``linked`` (None: nobody) and leaving it linked to ``after``, is refused
    (see the module docstring)."""
    if is_own_tenant(who, tenant):
        return False
    if linked is not None or after is not None:
        return True
    return foreign_personal_type(who, tenant, *(view.device_type(tenant, t) for t in types))
