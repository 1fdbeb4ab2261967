"""The registry's one entry point, as the HTTP API, the CLI and the simulator use it.

``Registry`` puts the services of each resource family over one store and one set of write
reservations: ``tenants`` (``tenants.py``), ``api_keys`` (``api_keys.py``), ``device_types``
(``device_types.py``) and ``devices`` (``devices.py``, with the bulk import). Its methods are
the families' own, under the names the API's handlers and the CLI's commands call; new code may
as well call a family directly (``registry.devices.create(...)``). Who may do what is decided in
``principals.py``, listings are paged by ``paging.py``, and the errors are the services' own
(``cityhub.streams.service_errors``).

Reads come from the store's in-memory view; writes go to the store and return once the view
shows them, so a caller's next read sees its write.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from cityhub.schemas.registry import (
    ApiKey,
    Device,
    DeviceSpec,
    DeviceType,
    DeviceTypeSpec,
    Role,
    Tenant,
    TenantSpec,
)
from cityhub.streams.registry.api_keys import ApiKeyService
from cityhub.streams.registry.device_types import DeviceTypeService
from cityhub.streams.registry.devices import (
    DEFAULT_DEVICES_PER_TENANT,
    DeviceService,
    ImportReport,
    SubjectKeyMaker,
)
from cityhub.streams.registry.paging import DEFAULT_PAGE_SIZE, Page
from cityhub.streams.registry.principals import Principal, authenticate
from cityhub.streams.registry.reservations import Reservations
from cityhub.streams.registry.tenants import TenantService
from cityhub.streams.service_errors import FieldError

if TYPE_CHECKING:
    from cityhub.streams.registry.store import RecordStore
    from cityhub.streams.registry.view import RegistryView


class Registry:
    """The registry's services over one store (see ``store.py``); every operation checks
    ``who``. One instance per process: its reservations keep two of its writes from taking the
    same id or DevEUI (``reservations.py``). With ``subject_keys`` (a ``SubjectKeyStore``), a
    data subject's key is made before a device is first linked to it (``devices.py``)."""

    def __init__(
        self,
        store: RecordStore,
        *,
        clock: Callable[[], float] = time.time,
        subject_keys: SubjectKeyMaker | None = None,
        devices_per_tenant: int = DEFAULT_DEVICES_PER_TENANT,
    ) -> None:
        """``devices_per_tenant``: the quota (``quotas.devices_per_tenant``)."""
        self._store = store
        self.reservations = Reservations()
        self.tenants = TenantService(store, self.reservations, clock=clock)
        self.api_keys = ApiKeyService(store, clock=clock)
        self.device_types = DeviceTypeService(store, self.reservations, clock=clock)
        self.devices = DeviceService(
            store,
            self.reservations,
            clock=clock,
            subject_keys=subject_keys,
            devices_per_tenant=devices_per_tenant,
        )

    @property
    def store(self) -> RecordStore:
        return self._store

    @property
    def view(self) -> RegistryView:
        """The materialised registry, for lookups on a hot path (no authorisation)."""
        return self._store.view

    # --- authentication and keys: principals.py, api_keys.py ----------------------------------
    def authenticate(self, secret: str) -> Principal:
        """The principal of an API key secret; raises Unauthenticated if unknown or revoked."""
        return authenticate(self.view, secret)

    async def create_key(
        self, who: Principal, tenant: str, role: Role, name: str
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once). Admin only."""
        return await self.api_keys.create(who, tenant, role, name)

    async def revoke_key(self, who: Principal, key_id: str) -> ApiKey:
        """Revoke a key (admin only); revoking a revoked key returns it unchanged."""
        return await self.api_keys.revoke(who, key_id)

    def list_keys(self, who: Principal, tenant: str | None = None) -> list[ApiKey]:
        """Every key (of ``tenant`` if given), revoked ones included, in id order. Admin only."""
        return self.api_keys.all(who, tenant)

    # --- tenants: tenants.py ------------------------------------------------------------------
    async def create_tenant(self, who: Principal, spec: TenantSpec) -> Tenant:
        """A new tenant (admin only); Conflict if the id exists."""
        return await self.tenants.create(who, spec)

    def list_tenants(self, who: Principal) -> list[Tenant]:
        """Every tenant in id order (admin only)."""
        return self.tenants.all(who)

    # --- device types: device_types.py --------------------------------------------------------
    async def create_type(self, who: Principal, tenant: str, spec: DeviceTypeSpec) -> DeviceType:
        """Conflict if the id exists in the tenant; Invalid if the decoder is not registered."""
        return await self.device_types.create(who, tenant, spec)

    def get_type(self, who: Principal, tenant: str, type_id: str) -> DeviceType:
        """The tenant's device type; NotFound if it does not exist or is another tenant's."""
        return self.device_types.get(who, tenant, type_id)

    async def replace_type(
        self, who: Principal, tenant: str, type_id: str, spec: DeviceTypeSpec
    ) -> DeviceType:
        """PUT semantics: the whole spec; ``spec.id`` must equal ``type_id``."""
        return await self.device_types.replace(who, tenant, type_id, spec)

    async def delete_type(self, who: Principal, tenant: str, type_id: str) -> None:
        """Conflict while devices still use the type."""
        await self.device_types.delete(who, tenant, type_id)

    def list_types(
        self,
        who: Principal,
        tenant: str,
        *,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Page[DeviceType]:
        """The tenant's types in id order after ``cursor``; ``limit`` capped at MAX_PAGE_SIZE."""
        return self.device_types.page(who, tenant, limit=limit, cursor=cursor)

    # --- devices: devices.py ------------------------------------------------------------------
    async def create_device(self, who: Principal, tenant: str, spec: DeviceSpec) -> Device:
        """Conflict if the device id or the DevEUI is taken (in any tenant); Invalid if the type
        does not exist in the tenant."""
        return await self.devices.create(who, tenant, spec)

    def get_device(self, who: Principal, tenant: str, device_id: str) -> Device:
        """The tenant's device (answer with ``Device.public()``); NotFound if it does not exist
        or is another tenant's."""
        return self.devices.get(who, tenant, device_id)

    async def replace_device(
        self, who: Principal, tenant: str, device_id: str, spec: DeviceSpec
    ) -> Device:
        """PUT semantics; an omitted ``app_key`` keeps the stored one."""
        return await self.devices.replace(who, tenant, device_id, spec)

    async def set_device_subject(
        self, who: Principal, tenant: str, device_id: str, subject: str | None
    ) -> Device:
        """Link the tenant's device to a data subject (None: unlink); Invalid unless its type
        is personal, NotFound if it is not the tenant's."""
        return await self.devices.set_subject(who, tenant, device_id, subject)

    async def delete_device(self, who: Principal, tenant: str, device_id: str) -> None:
        """Delete the tenant's device; NotFound if it does not exist or is another tenant's."""
        await self.devices.delete(who, tenant, device_id)

    def list_devices(
        self,
        who: Principal,
        tenant: str,
        *,
        type_id: str | None = None,
        area: str | None = None,
        tag: str | None = None,
        active: bool | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Page[Device]:
        """The tenant's devices matching every filter given; ``limit`` capped at MAX_PAGE_SIZE."""
        return self.devices.page(
            who,
            tenant,
            type_id=type_id,
            area=area,
            tag=tag,
            active=active,
            limit=limit,
            cursor=cursor,
        )

    async def import_devices(
        self, who: Principal, tenant: str, rows: Iterable[DeviceSpec | Sequence[FieldError]]
    ) -> ImportReport:
        """Create or update each valid row (upsert by id); report each bad row with its errors."""
        return await self.devices.import_rows(who, tenant, rows)
