"""The registry's operations, as the HTTP API, the CLI and the normaliser use them.

Every operation checks its caller (``Principal``) by the rules in ``principals.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cityhub.connectors.decoders import decoder_names
from cityhub.schemas.registry import (
    NETWORK_DECODER,
    ApiKey,
    Classification,
    Device,
    DeviceSpec,
    DeviceType,
    DeviceTypeSpec,
    Role,
    Tenant,
    TenantSpec,
    fingerprint,
    record_key,
)
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.registry.paging import DEFAULT_PAGE_SIZE, Page, page_limit
from cityhub.streams.registry.principals import (
    Principal,
    authenticate,
    new_key_secret,
    require_admin,
    require_tenant_access,
)
from cityhub.streams.service_errors import (
    Conflict,
    FieldError,
    Invalid,
    NotFound,
)

if TYPE_CHECKING:
    from cityhub.streams.registry.store import RecordStore
    from cityhub.streams.registry.view import DeviceEntry, RegistryView


@dataclass(frozen=True, slots=True)
class RowResult:
    """The outcome of one row of a bulk import (rows count from 1, after a CSV header)."""

    row: int
    id: str | None
    status: str
    """``created``, ``updated`` or ``error``."""
    errors: tuple[FieldError, ...] = ()


@dataclass(frozen=True, slots=True)
class ImportReport:
    created: int
    updated: int
    failed: int
    rows: tuple[RowResult, ...] = field(default=())


# Device ids and DevEUIs are unique across tenants, so a taken one must be refused (409) even
# when another tenant has it; the refusal says no more than that. The same words whether another
# tenant's device has it or another tenant's write in flight holds it, nothing of whose it is.
ID_NOT_AVAILABLE = "this device id is not available; choose another"
EUI_NOT_AVAILABLE = "this DevEUI is not available"


def _not_available(token: str) -> Conflict:
    """The refusal of an id or DevEUI (``device/<id>``, ``eui/<eui>``) that is not the
    caller's tenant's to take; other tokens (tenants, types) only clash within one tenant."""
    if token.startswith("device/"):
        return Conflict(ID_NOT_AVAILABLE, errors=[FieldError("id", ID_NOT_AVAILABLE)])
    if token.startswith("eui/"):
        return Conflict(EUI_NOT_AVAILABLE, errors=[FieldError("dev_eui", EUI_NOT_AVAILABLE)])
    return Conflict("another request is writing the same record; try again")


class Registry:
    """The registry service over a store (see ``store.py``); every method checks ``who``.

    Reads come from the store's in-memory view; writes go to the store and return once the view
    shows them, so a caller's next read sees its write. Checks that a write depends on (an id
    or DevEUI not taken) are made against the view and against the writes this instance has in
    flight; two instances writing the same new id at the same moment could both succeed (the
    later record wins), which an operator workflow does not do.
    """

    def __init__(self, store: RecordStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._pending: dict[str, str] = {}
        """Ids and DevEUIs that writes in flight are taking (``device/<id>``, ``eui/<eui>``),
        each with the tenant that takes it."""

    @property
    def store(self) -> RecordStore:
        return self._store

    @property
    def view(self) -> RegistryView:
        """The materialised registry, for lookups on a hot path (no authorisation)."""
        return self._store.view

    # --- helpers -------------------------------------------------------------------------------
    def _now(self) -> str:
        return rfc3339(self._clock())

    def _scope(self, who: Principal, tenant: str, *, write: bool) -> None:
        require_tenant_access(self.view, who, tenant, write=write)

    @contextmanager
    def _reserve(self, tenant: str, *tokens: str) -> Iterator[None]:
        """Hold ids and DevEUIs that a write of ``tenant`` is about to take, so a concurrent
        write in this instance cannot take them too before the view shows the first. One that
        another tenant's write holds is *not available*, in the same words as one that another
        tenant's device has: a probe cannot tell the two apart."""
        self._refuse_held_elsewhere(tenant, *tokens)
        if any(t in self._pending for t in tokens):
            raise Conflict("another request is writing the same id or DevEUI; try again")
        self._pending.update(dict.fromkeys(tokens, tenant))
        try:
            yield
        finally:
            for token in tokens:
                self._pending.pop(token, None)

    def _refuse_held_elsewhere(self, tenant: str, *tokens: str) -> None:
        """Conflict (*not available*) if another tenant's write in flight holds a token."""
        for token in tokens:
            holder = self._pending.get(token)
            if holder is not None and holder != tenant:
                raise _not_available(token)

    def _pending_error(self, tenant: str, token: str, field: str, what: str) -> FieldError | None:
        """The import row error for an id or DevEUI that a write in flight holds."""
        holder = self._pending.get(token)
        if holder is None:
            return None
        if holder != tenant:
            return _not_available(token).errors[0]
        return FieldError(field, f"another request is writing this {what}")

    @staticmethod
    def _decoder_errors(spec: DeviceTypeSpec) -> list[FieldError]:
        if spec.decoder == NETWORK_DECODER:
            return []
        names = decoder_names()
        if spec.decoder in names:
            return []
        known = ", ".join([NETWORK_DECODER, *sorted(names)])
        return [FieldError("decoder", f"no decoder named {spec.decoder!r}; known: {known}")]

    def _type_errors(self, tenant: str, type_id: str) -> list[FieldError]:
        if self.view.device_type(tenant, type_id) is not None:
            return []
        return [
            FieldError(
                "type",
                f"no device type {type_id!r} in tenant {tenant!r}; create the type first",
            )
        ]

    def _eui_errors(self, tenant: str, dev_eui: str | None, device_id: str) -> list[FieldError]:
        """The DevEUI is another device's: in this tenant, which one; in another tenant, only
        that it is not available (DevEUIs are unique across tenants; whose is none of the
        caller's business)."""
        if dev_eui is None:
            return []
        owner = self.view.device_by_eui(dev_eui)
        if owner is None or owner.id == device_id:
            return []
        if owner.tenant != tenant:
            return [FieldError("dev_eui", EUI_NOT_AVAILABLE)]
        return [
            FieldError("dev_eui", f"DevEUI {dev_eui} is already registered to device {owner.id!r}")
        ]

    @staticmethod
    def _device(
        tenant: str, spec: DeviceSpec, *, now: str, created_at: str, app_key_sha256: str | None
    ) -> Device:
        return Device(
            tenant=tenant,
            id=spec.id,
            name=spec.name,
            type=spec.type,
            dev_eui=spec.dev_eui,
            location=spec.location,
            area=spec.area,
            tags=list(spec.tags),
            active=spec.active,
            network=spec.network,
            app_key_sha256=(
                fingerprint(spec.app_key.get_secret_value())
                if spec.app_key is not None
                else app_key_sha256
            ),
            created_at=created_at,
            updated_at=now,
        )

    # --- authentication and keys -------------------------------------------------------------
    def authenticate(self, secret: str) -> Principal:
        """The principal of an API key secret; raises Unauthenticated if unknown or revoked."""
        return authenticate(self.view, secret)

    async def create_key(
        self, who: Principal, tenant: str, role: Role, name: str
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once, stored only as a fingerprint). Admin only."""
        require_admin(who, "create API keys")
        if self.view.tenant(tenant) is None:
            raise NotFound(f"tenant {tenant!r} not found")
        name = name.strip()
        if not 1 <= len(name) <= 200:
            raise Invalid(
                "a key needs a name of 1 to 200 characters",
                errors=[FieldError("name", "must be 1 to 200 characters")],
            )
        key_id, secret = new_key_secret()
        key = ApiKey(
            id=key_id,
            tenant=tenant,
            role=Role(role),
            name=name,
            secret_sha256=fingerprint(secret),
            created_at=self._now(),
        )
        await self._store.put(key)
        return key, secret

    async def revoke_key(self, who: Principal, key_id: str) -> ApiKey:
        """Revoke a key (admin only): it authenticates as nobody from now on. Revoking a revoked
        key returns it unchanged. NotFound if there is no such key."""
        require_admin(who, "revoke API keys")
        key = self.view.api_key(key_id)
        if key is None:
            raise NotFound(f"API key {key_id!r} not found")
        if key.revoked_at is not None:
            return key
        revoked = key.model_copy(update={"revoked_at": self._now()})
        await self._store.put(revoked)
        return revoked

    def list_keys(self, who: Principal, tenant: str | None = None) -> list[ApiKey]:
        """Every key (of ``tenant`` if given), revoked ones included, in id order. Admin only."""
        require_admin(who, "list API keys")
        return self.view.api_keys(tenant)

    # --- tenants (admin) ---------------------------------------------------------------------
    async def create_tenant(self, who: Principal, spec: TenantSpec) -> Tenant:
        """A new tenant (admin only); Conflict if the id exists."""
        require_admin(who, "create tenants")
        if self.view.tenant(spec.id) is not None:
            raise Conflict(
                f"a tenant with id {spec.id!r} already exists",
                errors=[FieldError("id", "already exists")],
            )
        now = self._now()
        tenant = Tenant(id=spec.id, name=spec.name, created_at=now, updated_at=now)
        with self._reserve(spec.id, f"tenant/{spec.id}"):
            await self._store.put(tenant)
        return tenant

    def list_tenants(self, who: Principal) -> list[Tenant]:
        """Every tenant in id order (admin only)."""
        require_admin(who, "list tenants")
        return self.view.tenants()

    # --- device types ------------------------------------------------------------------------
    async def create_type(self, who: Principal, tenant: str, spec: DeviceTypeSpec) -> DeviceType:
        """Conflict if the id exists in the tenant; Invalid if the decoder is not registered."""
        self._scope(who, tenant, write=True)
        errors = self._decoder_errors(spec)
        if errors:
            raise Invalid(errors[0].message, errors=errors)
        if self.view.device_type(tenant, spec.id) is not None:
            raise Conflict(
                f"device type {spec.id!r} already exists in tenant {tenant!r}",
                errors=[FieldError("id", "already exists")],
            )
        now = self._now()
        record = DeviceType(
            tenant=tenant,
            id=spec.id,
            name=spec.name,
            decoder=spec.decoder,
            fields=list(spec.fields),
            only_mapped=spec.only_mapped,
            classification=spec.classification,
            created_at=now,
            updated_at=now,
        )
        with self._reserve(tenant, f"type/{tenant}/{spec.id}"):
            await self._store.put(record)
        return record

    def get_type(self, who: Principal, tenant: str, type_id: str) -> DeviceType:
        """The tenant's device type; NotFound if it does not exist or is another tenant's."""
        self._scope(who, tenant, write=False)
        record = self.view.device_type(tenant, type_id)
        if record is None:
            raise NotFound(f"device type {type_id!r} not found in tenant {tenant!r}")
        return record

    async def replace_type(
        self, who: Principal, tenant: str, type_id: str, spec: DeviceTypeSpec
    ) -> DeviceType:
        """PUT semantics: the whole spec; ``spec.id`` must equal ``type_id``."""
        self._scope(who, tenant, write=True)
        old = self.view.device_type(tenant, type_id)
        if old is None:
            raise NotFound(f"device type {type_id!r} not found in tenant {tenant!r}")
        errors = self._decoder_errors(spec)
        if spec.id != type_id:
            errors.append(FieldError("id", f"must be {type_id!r}, the id in the path"))
        if errors:
            raise Invalid(errors[0].message, errors=errors)
        record = DeviceType(
            tenant=tenant,
            id=type_id,
            name=spec.name,
            decoder=spec.decoder,
            fields=list(spec.fields),
            only_mapped=spec.only_mapped,
            classification=spec.classification,
            created_at=old.created_at,
            updated_at=self._now(),
        )
        await self._store.put(record)
        return record

    async def delete_type(self, who: Principal, tenant: str, type_id: str) -> None:
        """Conflict while devices still use the type."""
        self._scope(who, tenant, write=True)
        record = self.view.device_type(tenant, type_id)
        if record is None:
            raise NotFound(f"device type {type_id!r} not found in tenant {tenant!r}")
        in_use = self.view.type_in_use(tenant, type_id)
        if in_use:
            raise Conflict(
                f"device type {type_id!r} is used by {in_use} device(s); "
                "delete them or move them to another type first"
            )
        await self._store.delete(record_key(record))

    def list_types(
        self,
        who: Principal,
        tenant: str,
        *,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Page[DeviceType]:
        """The tenant's types in id order after ``cursor``; ``limit`` capped at MAX_PAGE_SIZE."""
        self._scope(who, tenant, write=False)
        items, next_cursor = self.view.types_page(tenant, limit=page_limit(limit), cursor=cursor)
        return Page(items=items, next_cursor=next_cursor)

    # --- devices -----------------------------------------------------------------------------
    async def create_device(self, who: Principal, tenant: str, spec: DeviceSpec) -> Device:
        """Conflict if the device id or the DevEUI is taken (in any tenant: both are global);
        Invalid if the type does not exist in the tenant."""
        self._scope(who, tenant, write=True)
        errors = self._type_errors(tenant, spec.type)
        if errors:
            raise Invalid(errors[0].message, errors=errors)
        existing = self.view.device_by_id(spec.id)
        if existing is not None and existing.tenant != tenant:
            raise _not_available(f"device/{spec.id}")
        if existing is not None:
            raise Conflict(
                f"a device with id {spec.id!r} already exists in tenant {tenant!r}; "
                "replace it (PUT) to change it",
                errors=[FieldError("id", "already exists")],
            )
        # Held by another tenant's create in flight: refused as if its device existed already.
        self._refuse_held_elsewhere(tenant, f"device/{spec.id}")
        errors = self._eui_errors(tenant, spec.dev_eui, spec.id)
        if errors:
            raise Conflict(errors[0].message, errors=errors)
        now = self._now()
        record = self._device(tenant, spec, now=now, created_at=now, app_key_sha256=None)
        tokens = [f"device/{spec.id}"] + ([f"eui/{spec.dev_eui}"] if spec.dev_eui else [])
        with self._reserve(tenant, *tokens):
            await self._store.put(record)
        return record

    def get_device(self, who: Principal, tenant: str, device_id: str) -> Device:
        """The tenant's device; NotFound if it does not exist or is another tenant's. The record
        holds the app key's fingerprint: answer with ``Device.public()``."""
        self._scope(who, tenant, write=False)
        entry = self.view.device_by_id(device_id)
        if entry is None or entry.tenant != tenant:
            raise NotFound(f"device {device_id!r} not found in tenant {tenant!r}")
        return entry.to_device()

    async def replace_device(
        self, who: Principal, tenant: str, device_id: str, spec: DeviceSpec
    ) -> Device:
        """PUT semantics; an omitted ``app_key`` keeps the stored one."""
        self._scope(who, tenant, write=True)
        old = self.view.device_by_id(device_id)
        if old is None or old.tenant != tenant:
            raise NotFound(f"device {device_id!r} not found in tenant {tenant!r}")
        errors = self._type_errors(tenant, spec.type)
        if spec.id != device_id:
            errors.append(FieldError("id", f"must be {device_id!r}, the id in the path"))
        if errors:
            raise Invalid(errors[0].message, errors=errors)
        errors = self._eui_errors(tenant, spec.dev_eui, device_id)
        if errors:
            raise Conflict(errors[0].message, errors=errors)
        record = self._device(
            tenant,
            spec,
            now=self._now(),
            created_at=old.created_at,
            app_key_sha256=old.app_key_sha256,
        )
        tokens = [f"device/{device_id}"]
        if spec.dev_eui and spec.dev_eui != old.dev_eui:
            tokens.append(f"eui/{spec.dev_eui}")
        with self._reserve(tenant, *tokens):
            await self._store.put(record)
        return record

    async def delete_device(self, who: Principal, tenant: str, device_id: str) -> None:
        """Delete the tenant's device; NotFound if it does not exist or is another tenant's."""
        self._scope(who, tenant, write=True)
        entry = self.view.device_by_id(device_id)
        if entry is None or entry.tenant != tenant:
            raise NotFound(f"device {device_id!r} not found in tenant {tenant!r}")
        with self._reserve(tenant, f"device/{device_id}"):
            await self._store.delete(f"device/{device_id}")

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
        """``limit`` is capped at MAX_PAGE_SIZE."""
        self._scope(who, tenant, write=False)
        entries, next_cursor = self.view.devices_page(
            tenant,
            limit=page_limit(limit),
            cursor=cursor,
            type_id=type_id,
            area=area,
            tag=tag,
            active=active,
        )
        return Page(items=[e.to_device() for e in entries], next_cursor=next_cursor)

    async def import_devices(
        self, who: Principal, tenant: str, rows: Iterable[DeviceSpec | Sequence[FieldError]]
    ) -> ImportReport:
        """Create or update each valid row (upsert by id); report each bad row with its errors.
        A row is a parsed spec, or the field errors its parsing found (see ``importer.py``).

        A row is bad if its type is not in the tenant, its id is another tenant's device, its
        DevEUI is another device's, or an earlier row has the same id or DevEUI. The good rows
        are written together and the call returns once the view shows all of them."""
        self._scope(who, tenant, write=True)
        view = self.view
        now = self._now()
        results: list[RowResult] = []
        records: list[Device] = []
        first_row_of_id: dict[str, int] = {}
        first_row_of_eui: dict[str, int] = {}
        created = updated = 0
        for row, item in enumerate(rows, start=1):
            if not isinstance(item, DeviceSpec):
                results.append(RowResult(row=row, id=None, status="error", errors=tuple(item)))
                continue
            errors = self._type_errors(tenant, item.type)
            old = view.device_by_id(item.id)
            if old is not None and old.tenant != tenant:
                errors.append(FieldError("id", ID_NOT_AVAILABLE))
            if item.id in first_row_of_id:
                errors.append(FieldError("id", f"the same id is in row {first_row_of_id[item.id]}"))
            held = self._pending_error(tenant, f"device/{item.id}", "id", "device")
            if held is not None and held not in errors:
                errors.append(held)
            if item.dev_eui is not None:
                errors.extend(self._eui_errors(tenant, item.dev_eui, item.id))
                if item.dev_eui in first_row_of_eui:
                    errors.append(
                        FieldError(
                            "dev_eui",
                            f"the same DevEUI is in row {first_row_of_eui[item.dev_eui]}",
                        )
                    )
                held = self._pending_error(tenant, f"eui/{item.dev_eui}", "dev_eui", "DevEUI")
                if held is not None and held not in errors:
                    errors.append(held)
            first_row_of_id.setdefault(item.id, row)
            if item.dev_eui is not None:
                first_row_of_eui.setdefault(item.dev_eui, row)
            if errors:
                results.append(RowResult(row=row, id=item.id, status="error", errors=tuple(errors)))
                continue
            records.append(
                self._device(
                    tenant,
                    item,
                    now=now,
                    created_at=now if old is None else old.created_at,
                    app_key_sha256=None if old is None else old.app_key_sha256,
                )
            )
            if old is None:
                created += 1
                results.append(RowResult(row=row, id=item.id, status="created"))
            else:
                updated += 1
                results.append(RowResult(row=row, id=item.id, status="updated"))
        tokens = [f"device/{r.id}" for r in records]
        tokens += [f"eui/{r.dev_eui}" for r in records if r.dev_eui is not None]
        with self._reserve(tenant, *tokens):
            await self._store.put_many(records)
        return ImportReport(
            created=created,
            updated=updated,
            failed=len(results) - created - updated,
            rows=tuple(results),
        )

    # --- lookups for the pipeline (no authorisation) ------------------------------------------
    # Which device an uplink is credited to is decided in one place only:
    # ``cityhub.streams.normaliser.normalise.registered_device`` over this registry's view.
    def type_of(self, entry: DeviceEntry) -> DeviceType | None:
        """The device's type, or None if it was deleted under it."""
        return self.view.device_type(entry.tenant, entry.type)

    def classification_of(self, entry: DeviceEntry) -> Classification:
        """The device's data classification from its type; ``internal`` if the type is gone
        (never ``public`` by accident)."""
        device_type = self.view.device_type(entry.tenant, entry.type)
        return Classification.INTERNAL if device_type is None else device_type.classification
