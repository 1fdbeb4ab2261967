"""API keys: create, revoke and list them (admin only).

A key's secret is shown once, when it is created, and stored only as a fingerprint; its format
and how a request's secret becomes a principal are in ``principals.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cityhub.schemas.plain_text import one_line
from cityhub.schemas.registry import ApiKey, Role, fingerprint
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.registry.principals import Principal, new_key_secret, require_admin
from cityhub.streams.service_errors import FieldError, Invalid, NotFound

if TYPE_CHECKING:
    from cityhub.streams.registry.store import RecordStore


class ApiKeyService:
    """Create, revoke and list API keys; every method checks that ``who`` is an admin."""

    def __init__(self, store: RecordStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def create(
        self, who: Principal, tenant: str, role: Role, name: str
    ) -> tuple[ApiKey, str]:
        """A new key of ``tenant`` and its secret (shown once, stored only as a fingerprint).
        NotFound if the tenant does not exist; Invalid if the name is empty or too long."""
        require_admin(who, "create API keys")
        if self._store.view.tenant(tenant) is None:
            raise NotFound(f"tenant {tenant!r} not found")
        name = name.strip()
        if not 1 <= len(name) <= 200:
            raise Invalid(
                "a key needs a name of 1 to 200 characters",
                errors=[FieldError("name", "must be 1 to 200 characters")],
            )
        try:
            one_line(name)
        except ValueError as refused:
            raise Invalid(
                f"a key's name {refused}", errors=[FieldError("name", str(refused))]
            ) from None
        key_id, secret = new_key_secret()
        key = ApiKey(
            id=key_id,
            tenant=tenant,
            role=Role(role),
            name=name,
            secret_sha256=fingerprint(secret),
            created_at=rfc3339(self._clock()),
        )
        await self._store.put(key)
        return key, secret

    async def revoke(self, who: Principal, key_id: str) -> ApiKey:
        """Revoke a key: it authenticates as nobody from now on. Revoking a revoked key returns
        it unchanged. NotFound if there is no such key."""
        require_admin(who, "revoke API keys")
        key = self._store.view.api_key(key_id)
        if key is None:
            raise NotFound(f"API key {key_id!r} not found")
        if key.revoked_at is not None:
            return key
        revoked = key.model_copy(update={"revoked_at": rfc3339(self._clock())})
        await self._store.put(revoked)
        return revoked

    def all(self, who: Principal, tenant: str | None = None) -> list[ApiKey]:
        """Every key (of ``tenant`` if given), revoked ones included, in id order."""
        require_admin(who, "list API keys")
        return self._store.view.api_keys(tenant)
