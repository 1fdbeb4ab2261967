"""The registry's operations, as the HTTP API, the CLI and the normaliser use them.

CONTRACT (written first, so that the API, the CLI and the store could be built side by side):
the signatures and error types here are fixed; bodies are filled in by the registry core.

Authorisation lives here, not in the HTTP layer, so the CLI and the API cannot disagree:
- ``admin``: everything, every tenant (tenants, keys of any tenant, devices, types).
- ``operator``: device types and devices of its own tenant (create, read, update, delete, import).
- ``subscriber``: read device types and devices of its own tenant.
Another tenant's device or type is reported as *not found* (404), never *forbidden*, so that a key
cannot learn what exists elsewhere (OWASP API1); a role that may not do something at all in its
own tenant gets *forbidden* (403). A revoked or unknown key authenticates as nobody (401).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from cityhub.schemas.errors import CityhubError
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

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an authenticated API key, or the operator at the CLI (``system``)."""

    key_id: str
    tenant: str
    role: Role

    @classmethod
    def system(cls) -> Principal:
        """The CLI's principal: whoever can reach Kafka is an administrator already."""
        return cls(key_id="system", tenant="*", role=Role.ADMIN)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing, in id order. ``next_cursor`` goes into the next call; None: last."""

    items: Sequence[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    """Dotted path of the offending field, e.g. ``location.latitude`` or ``dev_eui``."""
    message: str


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


class RegistryError(CityhubError):
    """Base of the errors the API turns into RFC 9457 problem responses."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, *, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = tuple(errors)


class Invalid(RegistryError):
    status = 422
    title = "Invalid request"


class NotFound(RegistryError):
    status = 404
    title = "Not found"


class Conflict(RegistryError):
    status = 409
    title = "Conflict"


class Forbidden(RegistryError):
    status = 403
    title = "Forbidden"


class Unauthenticated(RegistryError):
    status = 401
    title = "Unauthenticated"


class Registry:
    """The registry service over a store (see ``store.py``); every method checks ``who``."""

    # --- authentication and keys -------------------------------------------------------------
    def authenticate(self, secret: str) -> Principal:
        """The principal of an API key secret; raises Unauthenticated if unknown or revoked.
        Constant-time comparison of the secret's fingerprint."""
        raise NotImplementedError

    async def create_key(
        self, who: Principal, tenant: str, role: Role, name: str
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once, stored only as a fingerprint). Admin only."""
        raise NotImplementedError

    async def revoke_key(self, who: Principal, key_id: str) -> ApiKey:
        raise NotImplementedError

    def list_keys(self, who: Principal, tenant: str | None = None) -> list[ApiKey]:
        raise NotImplementedError

    # --- tenants (admin) ---------------------------------------------------------------------
    async def create_tenant(self, who: Principal, spec: TenantSpec) -> Tenant:
        raise NotImplementedError

    def list_tenants(self, who: Principal) -> list[Tenant]:
        raise NotImplementedError

    # --- device types ------------------------------------------------------------------------
    async def create_type(self, who: Principal, tenant: str, spec: DeviceTypeSpec) -> DeviceType:
        """Conflict if the id exists in the tenant; Invalid if the decoder is not registered."""
        raise NotImplementedError

    def get_type(self, who: Principal, tenant: str, type_id: str) -> DeviceType:
        raise NotImplementedError

    async def replace_type(
        self, who: Principal, tenant: str, type_id: str, spec: DeviceTypeSpec
    ) -> DeviceType:
        """PUT semantics: the whole spec; ``spec.id`` must equal ``type_id``."""
        raise NotImplementedError

    async def delete_type(self, who: Principal, tenant: str, type_id: str) -> None:
        """Conflict while devices still use the type."""
        raise NotImplementedError

    def list_types(
        self,
        who: Principal,
        tenant: str,
        *,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Page[DeviceType]:
        raise NotImplementedError

    # --- devices -----------------------------------------------------------------------------
    async def create_device(self, who: Principal, tenant: str, spec: DeviceSpec) -> Device:
        """Conflict if the device id or the DevEUI is taken (in any tenant: both are global);
        Invalid if the type does not exist in the tenant."""
        raise NotImplementedError

    def get_device(self, who: Principal, tenant: str, device_id: str) -> Device:
        raise NotImplementedError

    async def replace_device(
        self, who: Principal, tenant: str, device_id: str, spec: DeviceSpec
    ) -> Device:
        """PUT semantics; an omitted ``app_key`` keeps the stored one."""
        raise NotImplementedError

    async def delete_device(self, who: Principal, tenant: str, device_id: str) -> None:
        raise NotImplementedError

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
        raise NotImplementedError

    async def import_devices(
        self, who: Principal, tenant: str, rows: Iterable[DeviceSpec | Sequence[FieldError]]
    ) -> ImportReport:
        """Create or update each valid row (upsert by id); report each bad row with its errors.
        A row is a parsed spec, or the field errors its parsing found (see ``importer.py``)."""
        raise NotImplementedError
