"""Device types: what a tenant's devices send and how it is decoded, mapped and classified.

Operators write the types of their own tenant, subscribers read them, admins do both in every
tenant (``principals.py``). A type names a registered decoder (or ``network``: the network
server's decoded payload); it cannot be deleted while devices use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cityhub.connectors.decoders import decoder_names
from cityhub.schemas.registry import (
    NETWORK_DECODER,
    Classification,
    DeviceType,
    DeviceTypeSpec,
    record_key,
)
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.registry.foreign_writes import FOREIGN_PERSONAL_TYPE, foreign_personal_type
from cityhub.streams.registry.paging import DEFAULT_PAGE_SIZE, Page, page_limit
from cityhub.streams.registry.principals import Principal, require_tenant_access
from cityhub.streams.registry.reservations import Reservations
from cityhub.streams.service_errors import Conflict, FieldError, Forbidden, Invalid, NotFound

if TYPE_CHECKING:
    from cityhub.streams.registry.store import RecordStore
    from cityhub.streams.registry.view import DeviceEntry


def decoder_errors(spec: DeviceTypeSpec) -> list[FieldError]:
    """The spec's decoder is neither ``network`` nor a registered decoder (naming the known)."""
    if spec.decoder == NETWORK_DECODER:
        return []
    names = decoder_names()
    if spec.decoder in names:
        return []
    known = ", ".join([NETWORK_DECODER, *sorted(names)])
    return [FieldError("decoder", f"no decoder named {spec.decoder!r}; known: {known}")]


class DeviceTypeService:
    """Create, read, replace, delete and list a tenant's device types; every method but the
    pipeline's lookups checks ``who``."""

    def __init__(
        self,
        store: RecordStore,
        reservations: Reservations,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._reservations = reservations
        self._clock = clock

    async def create(self, who: Principal, tenant: str, spec: DeviceTypeSpec) -> DeviceType:
        """Conflict if the id exists in the tenant; Invalid if the decoder is not registered."""
        view = self._store.view
        require_tenant_access(view, who, tenant, write=True)
        if foreign_personal_type(who, tenant, spec):
            raise Forbidden(FOREIGN_PERSONAL_TYPE)
        errors = decoder_errors(spec)
        if errors:
            raise Invalid(errors[0].message, errors=errors)
        if view.device_type(tenant, spec.id) is not None:
            raise Conflict(
                f"device type {spec.id!r} already exists in tenant {tenant!r}",
                errors=[FieldError("id", "already exists")],
            )
        now = rfc3339(self._clock())
        record = _device_type(tenant, spec, created_at=now, updated_at=now)
        with self._reservations.hold(tenant, f"type/{tenant}/{spec.id}"):
            await self._store.put(record)
        return record

    def get(self, who: Principal, tenant: str, type_id: str) -> DeviceType:
        """The tenant's device type; NotFound if it does not exist or is another tenant's."""
        view = self._store.view
        require_tenant_access(view, who, tenant, write=False)
        record = view.device_type(tenant, type_id)
        if record is None:
            raise NotFound(f"device type {type_id!r} not found in tenant {tenant!r}")
        return record

    async def replace(
        self, who: Principal, tenant: str, type_id: str, spec: DeviceTypeSpec
    ) -> DeviceType:
        """PUT semantics: the whole spec; ``spec.id`` must equal ``type_id``."""
        view = self._store.view
        require_tenant_access(view, who, tenant, write=True)
        old = view.device_type(tenant, type_id)
        if old is None:
            raise NotFound(f"device type {type_id!r} not found in tenant {tenant!r}")
        if foreign_personal_type(who, tenant, old, spec):
            raise Forbidden(FOREIGN_PERSONAL_TYPE)
        errors = decoder_errors(spec)
        if spec.id != type_id:
            errors.append(FieldError("id", f"must be {type_id!r}, the id in the path"))
        if errors:
            raise Invalid(errors[0].message, errors=errors)
        linked = view.subjects_linked_of_type(tenant, type_id)
        if linked and spec.classification is not Classification.PERSONAL:
            # Refused rather than unlinking silently: the tenant decides, device by device.
            raise Conflict(
                f"{linked} device(s) of type {type_id!r} are linked to a data subject; unlink "
                "them before the type stops being personal",
                errors=[FieldError("classification", "devices of this type have data subjects")],
            )
        record = _device_type(
            tenant, spec, created_at=old.created_at, updated_at=rfc3339(self._clock())
        )
        await self._store.put(record)
        return record

    async def delete(self, who: Principal, tenant: str, type_id: str) -> None:
        """Conflict while devices still use the type."""
        view = self._store.view
        require_tenant_access(view, who, tenant, write=True)
        record = view.device_type(tenant, type_id)
        if record is None:
            raise NotFound(f"device type {type_id!r} not found in tenant {tenant!r}")
        if foreign_personal_type(who, tenant, record):
            raise Forbidden(FOREIGN_PERSONAL_TYPE)
        in_use = view.type_in_use(tenant, type_id)
        if in_use:
            raise Conflict(
                f"device type {type_id!r} is used by {in_use} device(s); "
                "delete them or move them to another type first"
            )
        await self._store.delete(record_key(record))

    def page(
        self,
        who: Principal,
        tenant: str,
        *,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Page[DeviceType]:
        """The tenant's types in id order after ``cursor``; ``limit`` capped at MAX_PAGE_SIZE."""
        view = self._store.view
        require_tenant_access(view, who, tenant, write=False)
        items, next_cursor = view.types_page(tenant, limit=page_limit(limit), cursor=cursor)
        return Page(items=items, next_cursor=next_cursor)

    # --- lookups for the pipeline (no authorisation) ------------------------------------------
    # Which device an uplink is credited to is decided in one place only:
    # ``cityhub.streams.normaliser.normalise.registered_device`` over the registry's view.
    def of_device(self, entry: DeviceEntry) -> DeviceType | None:
        """The device's type, or None if it was deleted under it."""
        return self._store.view.device_type(entry.tenant, entry.type)

    def classification_of(self, entry: DeviceEntry) -> Classification:
        """The device's data classification from its type; ``internal`` if the type is gone
        (never ``public`` by accident)."""
        device_type = self.of_device(entry)
        return Classification.INTERNAL if device_type is None else device_type.classification


def _device_type(
    tenant: str, spec: DeviceTypeSpec, *, created_at: str, updated_at: str
) -> DeviceType:
    """The record of ``spec`` in ``tenant``."""
    return DeviceType(
        tenant=tenant,
        id=spec.id,
        name=spec.name,
        decoder=spec.decoder,
        fields=list(spec.fields),
        only_mapped=spec.only_mapped,
        classification=spec.classification,
        personal_data_category=spec.personal_data_category,
        ngsi_ld=spec.ngsi_ld,
        expected_interval_seconds=spec.expected_interval_seconds,
        quality=spec.quality,
        created_at=created_at,
        updated_at=updated_at,
    )
