"""Tenants: the organisations that own devices, types, keys and subscriptions (admin only)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cityhub.schemas.registry import Tenant, TenantSpec
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.registry.principals import Principal, require_admin
from cityhub.streams.registry.reservations import Reservations
from cityhub.streams.service_errors import Conflict, FieldError

if TYPE_CHECKING:
    from cityhub.streams.registry.store import RecordStore


class TenantService:
    """Create and list tenants; every method checks that ``who`` is an admin."""

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

    async def create(self, who: Principal, spec: TenantSpec) -> Tenant:
        """A new tenant; Conflict if the id exists."""
        require_admin(who, "create tenants")
        if self._store.view.tenant(spec.id) is not None:
            raise Conflict(
                f"a tenant with id {spec.id!r} already exists",
                errors=[FieldError("id", "already exists")],
            )
        now = rfc3339(self._clock())
        tenant = Tenant(id=spec.id, name=spec.name, created_at=now, updated_at=now)
        with self._reservations.hold(spec.id, f"tenant/{spec.id}"):
            await self._store.put(tenant)
        return tenant

    def all(self, who: Principal) -> list[Tenant]:
        """Every tenant in id order."""
        require_admin(who, "list tenants")
        return self._store.view.tenants()
