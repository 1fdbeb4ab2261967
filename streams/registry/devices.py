"""Devices: a tenant's sensors, one by one or imported in bulk.

Operators write the devices of their own tenant, subscribers read them, admins do both in every
tenant (``principals.py``). A device's type must exist in its tenant. Device ids and DevEUIs are
unique across tenants: one that another tenant has is *not available* (409), in words that say
nothing of whose it is (``reservations.py``). A device's app key is stored only as a fingerprint.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cityhub.schemas.registry import Classification, Device, DeviceSpec, fingerprint
from cityhub.schemas.settings import QuotaSettings
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.quotas import QuotaExceeded
from cityhub.streams.registry.foreign_writes import FOREIGN_RELINK, foreign_resident_write
from cityhub.streams.registry.paging import DEFAULT_PAGE_SIZE, Page, page_limit
from cityhub.streams.registry.principals import (
    Principal,
    require_own_tenant,
    require_tenant_access,
)
from cityhub.streams.registry.reservations import (
    EUI_NOT_AVAILABLE,
    ID_NOT_AVAILABLE,
    Reservations,
    not_available,
)
from cityhub.streams.service_errors import Conflict, FieldError, Forbidden, Invalid, NotFound

if TYPE_CHECKING:
    from cityhub.streams.registry.store import RecordStore
    from cityhub.streams.registry.view import RegistryView

DEFAULT_DEVICES_PER_TENANT = QuotaSettings().devices_per_tenant


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
    """What a bulk import did: counts, and each row's outcome in order."""

    created: int
    updated: int
    failed: int
    rows: tuple[RowResult, ...] = ()


class SubjectKeyMaker(Protocol):
    """Makes sure a data subject has a data key (``cityhub.streams.privacy.keys_store``)."""

    async def ensure(self, tenant: str, subject: str) -> object: ...


class DeviceService:
    """Create, read, replace, delete, list and import a tenant's devices; every method checks
    ``who``. Writes return once the registry's view shows them.

    With ``subject_keys``, every write that leaves a device linked to a data subject first makes
    sure the subject has a data key (and fails, writing nothing, if that fails): a personal
    value of a linked device can then always be sealed."""

    def __init__(
        self,
        store: RecordStore,
        reservations: Reservations,
        *,
        clock: Callable[[], float] = time.time,
        subject_keys: SubjectKeyMaker | None = None,
        devices_per_tenant: int = DEFAULT_DEVICES_PER_TENANT,
    ) -> None:
        self._store = store
        self._reservations = reservations
        self._clock = clock
        self._subject_keys = subject_keys
        self._max_per_tenant = devices_per_tenant
        self._creating: Counter[str] = Counter()
        """New devices being written per tenant, not yet in the view (they count too, so that
        concurrent creates of one process cannot take a tenant past its quota)."""

    def _room(self, tenant: str) -> int:
        """How many more devices ``tenant`` may have (``devices_per_tenant``)."""
        return self._max_per_tenant - self._view.device_count(tenant) - self._creating[tenant]

    def _quota_detail(self, tenant: str) -> str:
        return (
            f"Tenant {tenant!r} has {self._view.device_count(tenant)} devices, as many as it may "
            "have; delete the ones it no longer needs first."
        )

    @contextlib.contextmanager
    def _counted(self, tenant: str, new: int) -> Iterator[None]:
        self._creating[tenant] += new
        try:
            yield
        finally:
            self._creating[tenant] -= new
            if self._creating[tenant] <= 0:
                del self._creating[tenant]

    async def _ensure_keys(self, tenant: str, subjects: Iterable[str | None]) -> None:
        """The data key of each subject named, before the link to it is written."""
        if self._subject_keys is None:
            return
        for subject in sorted({s for s in subjects if s is not None}):
            await self._subject_keys.ensure(tenant, subject)

    @property
    def _view(self) -> RegistryView:
        return self._store.view

    async def create(self, who: Principal, tenant: str, spec: DeviceSpec) -> Device:
        """Conflict if the device id or the DevEUI is taken (in any tenant: both are global);
        Invalid if the type does not exist in the tenant."""
        require_tenant_access(self._view, who, tenant, write=True)
        if foreign_resident_write(self._view, who, tenant, (spec.type,), None, spec.data_subject):
            raise Forbidden(FOREIGN_RELINK)
        errors = self._type_errors(tenant, spec.type) or self._subject_errors(
            tenant, spec.type, spec.data_subject
        )
        if errors:
            raise Invalid(errors[0].message, errors=errors)
        existing = self._view.device_by_id(spec.id)
        if existing is not None and existing.tenant != tenant:
            raise not_available(f"device/{spec.id}")
        if existing is not None:
            raise Conflict(
                f"a device with id {spec.id!r} already exists in tenant {tenant!r}; "
                "replace it (PUT) to change it",
                errors=[FieldError("id", "already exists")],
            )
        # Held by another tenant's create in flight: refused as if its device existed already.
        self._reservations.refuse_held_elsewhere(tenant, f"device/{spec.id}")
        errors = self._eui_errors(tenant, spec.dev_eui, spec.id)
        if errors:
            raise Conflict(errors[0].message, errors=errors)
        if self._room(tenant) <= 0:
            raise QuotaExceeded(
                self._quota_detail(tenant),
                quota="devices_per_tenant",
                limit=self._max_per_tenant,
                tenant=tenant,
            )
        now = rfc3339(self._clock())
        record = _device(
            tenant,
            spec,
            now=now,
            created_at=now,
            app_key_sha256=None,
            data_subject=spec.data_subject,
        )
        tokens = [f"device/{spec.id}"] + ([f"eui/{spec.dev_eui}"] if spec.dev_eui else [])
        with self._reservations.hold(tenant, *tokens), self._counted(tenant, 1):
            await self._ensure_keys(tenant, [record.data_subject])
            await self._store.put(record)
        return record

    def get(self, who: Principal, tenant: str, device_id: str) -> Device:
        """The tenant's device; NotFound if it does not exist or is another tenant's. The record
        holds the app key's fingerprint: answer with ``Device.public()``."""
        require_tenant_access(self._view, who, tenant, write=False)
        entry = self._view.device_by_id(device_id)
        if entry is None or entry.tenant != tenant:
            raise NotFound(f"device {device_id!r} not found in tenant {tenant!r}")
        return entry.to_device()

    async def replace(
        self, who: Principal, tenant: str, device_id: str, spec: DeviceSpec
    ) -> Device:
        """PUT semantics; an omitted ``app_key`` keeps the stored one."""
        require_tenant_access(self._view, who, tenant, write=True)
        old = self._view.device_by_id(device_id)
        if old is None or old.tenant != tenant:
            raise NotFound(f"device {device_id!r} not found in tenant {tenant!r}")
        subject = _subject_after(spec, old.data_subject)
        if foreign_resident_write(
            self._view, who, tenant, (old.type, spec.type), old.data_subject, subject
        ):
            raise Forbidden(FOREIGN_RELINK)
        errors = self._type_errors(tenant, spec.type) or self._subject_errors(
            tenant, spec.type, subject
        )
        if spec.id != device_id:
            errors.append(FieldError("id", f"must be {device_id!r}, the id in the path"))
        if errors:
            raise Invalid(errors[0].message, errors=errors)
        errors = self._eui_errors(tenant, spec.dev_eui, device_id)
        if errors:
            raise Conflict(errors[0].message, errors=errors)
        record = _device(
            tenant,
            spec,
            now=rfc3339(self._clock()),
            created_at=old.created_at,
            app_key_sha256=old.app_key_sha256,
            data_subject=subject,
        )
        tokens = [f"device/{device_id}"]
        if spec.dev_eui and spec.dev_eui != old.dev_eui:
            tokens.append(f"eui/{spec.dev_eui}")
        with self._reservations.hold(tenant, *tokens):
            await self._ensure_keys(tenant, [record.data_subject])
            await self._store.put(record)
        return record

    async def set_subject(
        self,
        who: Principal,
        tenant: str,
        device_id: str,
        subject: str | None,
        *,
        active: bool | None = None,
    ) -> Device:
        """Link the tenant's device to ``subject`` (None: unlink), and switch it on or off
        with ``active`` when given (in the same write), the rest of it unchanged; NotFound if
        it is not the tenant's, Invalid if its type is not personal."""
        require_tenant_access(self._view, who, tenant, write=True)
        require_own_tenant(who, tenant)  # as if the tenant did not exist (the docs)
        old = self._view.device_by_id(device_id)
        if old is None or old.tenant != tenant:
            raise NotFound(f"device {device_id!r} not found in tenant {tenant!r}")
        errors = self._subject_errors(tenant, old.type, subject)
        if errors:
            raise Invalid(errors[0].message, errors=errors)
        if old.data_subject == subject and (active is None or old.active == active):
            return old.to_device()  # nothing to write: linking twice, unlinking twice
        update: dict[str, object] = {"data_subject": subject, "updated_at": rfc3339(self._clock())}
        if active is not None:
            update["active"] = active
        record = old.to_device().model_copy(update=update)
        with self._reservations.hold(tenant, f"device/{device_id}"):
            await self._ensure_keys(tenant, [subject])
            await self._store.put(record)
        return record

    async def delete(self, who: Principal, tenant: str, device_id: str) -> None:
        """Delete the tenant's device; NotFound if it does not exist or is another tenant's."""
        require_tenant_access(self._view, who, tenant, write=True)
        entry = self._view.device_by_id(device_id)
        if entry is None or entry.tenant != tenant:
            raise NotFound(f"device {device_id!r} not found in tenant {tenant!r}")
        if foreign_resident_write(self._view, who, tenant, (entry.type,), entry.data_subject, None):
            raise Forbidden(FOREIGN_RELINK)
        with self._reservations.hold(tenant, f"device/{device_id}"):
            await self._store.delete(f"device/{device_id}")

    def page(
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
        """The tenant's devices that match every filter given, in id order after ``cursor``;
        ``limit`` is capped at MAX_PAGE_SIZE."""
        require_tenant_access(self._view, who, tenant, write=False)
        entries, next_cursor = self._view.devices_page(
            tenant,
            limit=page_limit(limit),
            cursor=cursor,
            type_id=type_id,
            area=area,
            tag=tag,
            active=active,
        )
        return Page(items=[e.to_device() for e in entries], next_cursor=next_cursor)

    async def import_rows(
        self, who: Principal, tenant: str, rows: Iterable[DeviceSpec | Sequence[FieldError]]
    ) -> ImportReport:
        """Create or update each valid row (upsert by id); report each bad row with its errors.
        A row is a parsed spec, or the field errors its parsing found (see ``importer.py``).

        A row is bad if its type is not in the tenant, its id is another tenant's device, its
        DevEUI is another device's, or an earlier row has the same id or DevEUI. The good rows
        are written together and the call returns once the view shows all of them."""
        require_tenant_access(self._view, who, tenant, write=True)
        view = self._view
        now = rfc3339(self._clock())
        results: list[RowResult] = []
        records: list[Device] = []
        first_row_of_id: dict[str, int] = {}
        first_row_of_eui: dict[str, int] = {}
        created = updated = 0
        room = self._room(tenant)
        for row, item in enumerate(rows, start=1):
            if not isinstance(item, DeviceSpec):
                results.append(RowResult(row=row, id=None, status="error", errors=tuple(item)))
                continue
            errors = self._row_errors(tenant, item, row, first_row_of_id, first_row_of_eui)
            old = view.device_by_id(item.id)
            kept = None if old is None else old.data_subject
            types = (item.type,) if old is None else (old.type, item.type)
            if foreign_resident_write(
                self._view, who, tenant, types, kept, _subject_after(item, kept)
            ):
                # This error alone: others (a link the new type cannot hold) would tell which
                # devices are linked.
                errors = [FieldError("data_subject", FOREIGN_RELINK)]
            if not errors and old is None and room <= 0:
                errors = [FieldError("id", self._full(tenant))]
            if errors:
                results.append(RowResult(row=row, id=item.id, status="error", errors=tuple(errors)))
                continue
            records.append(
                _device(
                    tenant,
                    item,
                    now=now,
                    created_at=now if old is None else old.created_at,
                    app_key_sha256=None if old is None else old.app_key_sha256,
                    data_subject=_subject_after(item, None if old is None else old.data_subject),
                )
            )
            if old is None:
                created += 1
                room -= 1
                results.append(RowResult(row=row, id=item.id, status="created"))
            else:
                updated += 1
                results.append(RowResult(row=row, id=item.id, status="updated"))
        tokens = [f"device/{r.id}" for r in records]
        tokens += [f"eui/{r.dev_eui}" for r in records if r.dev_eui is not None]
        with self._reservations.hold(tenant, *tokens), self._counted(tenant, created):
            await self._ensure_keys(tenant, [r.data_subject for r in records])
            await self._store.put_many(records)
        return ImportReport(
            created=created,
            updated=updated,
            failed=len(results) - created - updated,
            rows=tuple(results),
        )

    # --- checks --------------------------------------------------------------------------------
    def _full(self, tenant: str) -> str:
        """An import row's error when its new device would take the tenant past its quota."""
        return (
            f"not created: tenant {tenant!r} would have more than {self._max_per_tenant} "
            "devices (quotas.devices_per_tenant, CITYHUB_QUOTAS__DEVICES_PER_TENANT); delete the "
            "ones it no longer needs first"
        )

    def _row_errors(
        self,
        tenant: str,
        item: DeviceSpec,
        row: int,
        first_row_of_id: dict[str, int],
        first_row_of_eui: dict[str, int],
    ) -> list[FieldError]:
        """Why an import row cannot be written (none: it can); notes the row's id and DevEUI in
        ``first_row_of_id`` and ``first_row_of_eui`` for the rows after it."""
        errors = self._type_errors(tenant, item.type)
        old = self._view.device_by_id(item.id)
        if old is not None and old.tenant != tenant:
            errors.append(FieldError("id", ID_NOT_AVAILABLE))
        elif not errors:
            kept = None if old is None else old.data_subject
            errors.extend(self._subject_errors(tenant, item.type, _subject_after(item, kept)))
        if item.id in first_row_of_id:
            errors.append(FieldError("id", f"the same id is in row {first_row_of_id[item.id]}"))
        held = self._reservations.row_error(tenant, f"device/{item.id}", "id", "device")
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
            held = self._reservations.row_error(tenant, f"eui/{item.dev_eui}", "dev_eui", "DevEUI")
            if held is not None and held not in errors:
                errors.append(held)
        first_row_of_id.setdefault(item.id, row)
        if item.dev_eui is not None:
            first_row_of_eui.setdefault(item.dev_eui, row)
        return errors

    def _type_errors(self, tenant: str, type_id: str) -> list[FieldError]:
        """The device type does not exist in the tenant."""
        if self._view.device_type(tenant, type_id) is not None:
            return []
        return [
            FieldError(
                "type",
                f"no device type {type_id!r} in tenant {tenant!r}; create the type first",
            )
        ]

    def _subject_errors(self, tenant: str, type_id: str, subject: str | None) -> list[FieldError]:
        """A data subject is to be linked to a device whose type is not ``personal`` (also when
        a replace changes the type of a linked device: the link must go in the same write)."""
        device_type = self._view.device_type(tenant, type_id)
        if subject is None or device_type is None:
            return []
        if device_type.classification is Classification.PERSONAL:
            return []
        return [
            FieldError(
                "data_subject",
                f"only a device of a personal device type may be linked to a data subject; "
                f"type {type_id!r} is {device_type.classification.value} (send data_subject: "
                "null to unlink)",
            )
        ]

    def _eui_errors(self, tenant: str, dev_eui: str | None, device_id: str) -> list[FieldError]:
        """The DevEUI is another device's: in this tenant, which one; in another tenant, only
        that it is not available (DevEUIs are unique across tenants; whose is none of the
        caller's business)."""
        if dev_eui is None:
            return []
        owner = self._view.device_by_eui(dev_eui)
        if owner is None or owner.id == device_id:
            return []
        if owner.tenant != tenant:
            return [FieldError("dev_eui", EUI_NOT_AVAILABLE)]
        return [
            FieldError("dev_eui", f"DevEUI {dev_eui} is already registered to device {owner.id!r}")
        ]


def _subject_after(spec: DeviceSpec, linked: str | None) -> str | None:
    """The device's data subject once ``spec`` is written: the spec's when it names the field
    (``null`` unlinks), else the one ``linked`` now (so a client that does not know the field
    cannot unlink by accident)."""
    return spec.data_subject if "data_subject" in spec.model_fields_set else linked


def _device(
    tenant: str,
    spec: DeviceSpec,
    *,
    now: str,
    created_at: str,
    app_key_sha256: str | None,
    data_subject: str | None,
) -> Device:
    """The record of ``spec`` in ``tenant``: a new app key's fingerprint, else the one kept;
    ``data_subject`` as ``_subject_after`` chose it."""
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
        data_subject=data_subject,
        expected_interval_seconds=spec.expected_interval_seconds,
        app_key_sha256=(
            fingerprint(spec.app_key.get_secret_value())
            if spec.app_key is not None
            else app_key_sha256
        ),
        created_at=created_at,
        updated_at=now,
    )
