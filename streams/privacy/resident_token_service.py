"""Issuing, listing, revoking and checking residents' access tokens.

Who may do what (the registry's rules, ``streams/registry/principals.py``, narrowed because a
token opens one person's data):

- the tenant's own ``operator`` or ``admin`` key issues, lists and revokes its residents' tokens;
- a ``subscriber`` key of the tenant is refused (403);
- every key of another tenant, an ``admin`` key included, is told the tenant does not exist
  (404): an admin of another tenant manages devices but never sees whom they measure, and so
  may not act as one of them either;
- the CLI (``Principal.system()``) may do everything.

A token is issued only for a data subject linked to at least one of the tenant's devices
(404 otherwise), at most ``MAX_ACTIVE_TOKENS`` unrevoked ones per subject (409 past that).
The secret is returned once and kept only as its fingerprint. Revoking writes the record again
with ``revoked_at``; ``delete_all`` (erasure) writes tombstones.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cityhub.schemas.plain_text import one_line
from cityhub.schemas.registry import Role, fingerprint, validate_data_subject
from cityhub.schemas.timefmt import parse_rfc3339, rfc3339
from cityhub.streams.privacy.resident import Resident
from cityhub.streams.privacy.resident_tokens import (
    MAX_NAME_LENGTH,
    TOKEN_PREFIX,
    ResidentToken,
    ResidentTokenView,
    is_token_id,
    record_key,
)
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.view import RegistryView
from cityhub.streams.service_errors import (
    Conflict,
    FieldError,
    Forbidden,
    Invalid,
    NotFound,
    Unauthenticated,
)

MAX_ACTIVE_TOKENS = 10
"""Unrevoked tokens one data subject may hold at once: enough for a few devices of their own,
few enough that a forgotten one is noticed."""
MAX_VALID_DAYS = 3660


class ResidentTokenRecordStore(Protocol):
    """What the service needs from a store (``ResidentTokenStore`` or its in-memory double)."""

    @property
    def view(self) -> ResidentTokenView: ...

    async def put(self, record: ResidentToken) -> int: ...

    async def delete(self, key: str) -> int: ...


class TokenSpec(BaseModel):
    """What a tenant says when it issues a token."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="", max_length=MAX_NAME_LENGTH)
    """A label for the tenant's own bookkeeping, one line."""
    valid_days: int | None = Field(default=None, ge=1, le=MAX_VALID_DAYS)
    """Days until the token expires; absent: until revoked."""

    @field_validator("name")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return one_line(value).strip()


def new_token_secret() -> tuple[str, str]:
    """A new token's id and its secret (``chr_<id>_<random>``, 32 random bytes)."""
    token_id = secrets.token_hex(8)
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def looks_like_token(secret: str) -> bool:
    """Whether ``secret`` has a resident token's shape (nothing is checked against the view)."""
    token_id, sep, rest = secret.removeprefix(TOKEN_PREFIX).partition("_")
    return secret.startswith(TOKEN_PREFIX) and bool(sep and rest) and is_token_id(token_id)


def checked_subject(subject: str) -> str:
    """``subject`` if it is a valid pseudonym; Invalid naming ``subject`` (never echoing it)."""
    try:
        return validate_data_subject(subject)
    except ValueError as exc:
        raise Invalid(
            "the data subject is not a valid pseudonym", errors=[FieldError("subject", str(exc))]
        ) from None


class ResidentTokens:
    """The tokens over a store; writes return once the store's view shows them."""

    def __init__(
        self,
        store: ResidentTokenRecordStore,
        registry_view: RegistryView,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._registry = registry_view
        self._clock = clock

    @property
    def view(self) -> ResidentTokenView:
        return self._store.view

    def _require_tenant_manager(self, who: Principal, tenant: str) -> None:
        system = who == Principal.system()
        if not system and who.tenant != tenant:
            raise NotFound(f"tenant {tenant!r} not found")
        if who.role is Role.SUBSCRIBER:
            raise Forbidden(
                "a subscriber key may not manage residents' tokens; use an operator key"
            )
        if self._registry.tenant(tenant) is None:
            raise NotFound(f"tenant {tenant!r} not found")

    async def issue(
        self, who: Principal, tenant: str, subject: str, spec: TokenSpec
    ) -> tuple[ResidentToken, str]:
        """A new token for ``subject`` of ``tenant`` and its secret (shown once)."""
        self._require_tenant_manager(who, tenant)
        checked_subject(subject)
        if not self._registry.devices_of_subject(tenant, subject):
            raise NotFound(
                f"no device of tenant {tenant!r} is linked to this data subject; link one first"
            )
        active = [t for t in self.view.of_subject(tenant, subject) if self._usable(t)]
        if len(active) >= MAX_ACTIVE_TOKENS:
            raise Conflict(
                f"this data subject already holds {len(active)} valid tokens (at most "
                f"{MAX_ACTIVE_TOKENS}); revoke one first"
            )
        now = self._clock()
        token_id, secret = new_token_secret()
        token = ResidentToken(
            id=token_id,
            tenant=tenant,
            subject=subject,
            name=spec.name,
            secret_sha256=fingerprint(secret),
            created_at=rfc3339(now),
            created_by=who.key_id,
            expires_at=None if spec.valid_days is None else rfc3339(now + spec.valid_days * 86400),
        )
        await self._store.put(token)
        return token, secret

    def list(self, who: Principal, tenant: str, subject: str) -> list[ResidentToken]:
        """The subject's tokens, revoked and expired ones too, oldest first."""
        self._require_tenant_manager(who, tenant)
        checked_subject(subject)
        return self.view.of_subject(tenant, subject)

    async def revoke(
        self, who: Principal, tenant: str, subject: str, token_id: str
    ) -> ResidentToken:
        """Revoke a token: from the next request on it authenticates nobody. Revoking a revoked
        token returns it unchanged; NotFound if the subject has no such token."""
        self._require_tenant_manager(who, tenant)
        checked_subject(subject)
        token = self.view.by_id(token_id) if is_token_id(token_id) else None
        if token is None or (token.tenant, token.subject) != (tenant, subject):
            raise NotFound(f"resident token {token_id[:64]!r} not found")
        if token.revoked_at is not None:
            return token
        revoked = token.model_copy(update={"revoked_at": rfc3339(self._clock())})
        await self._store.put(revoked)
        return revoked

    async def delete_all(self, tenant: str, subject: str) -> int:
        """Remove every token of the subject (tombstones; part of an erasure); how many."""
        tokens = self.view.of_subject(tenant, subject)
        for token in tokens:
            await self._store.delete(record_key(token))
        return len(tokens)

    def _usable(self, token: ResidentToken) -> bool:
        if token.revoked_at is not None:
            return False
        return token.expires_at is None or (
            parse_rfc3339(token.expires_at).timestamp() > self._clock()
        )

    def authenticate(self, secret: str) -> Resident:
        """The resident of a token secret; Unauthenticated if it is not one, or unknown,
        revoked or expired, or its tenant is gone. Constant-time comparison of the fingerprint;
        the secret is never put into a message."""
        if not looks_like_token(secret):
            raise Unauthenticated("not a resident token (they read chr_<id>_<secret>)")
        token_id = secret[len(TOKEN_PREFIX) :].partition("_")[0]
        token = self.view.by_id(token_id)
        if token is None or not hmac.compare_digest(fingerprint(secret), token.secret_sha256):
            raise Unauthenticated("unknown resident token")
        if token.revoked_at is not None:
            raise Unauthenticated(f"this resident token was revoked at {token.revoked_at}")
        if not self._usable(token):
            raise Unauthenticated(f"this resident token expired at {token.expires_at}")
        if self._registry.tenant(token.tenant) is None:
            raise Unauthenticated("this resident token's tenant no longer exists")
        return Resident(tenant=token.tenant, subject=token.subject, credential=f"token:{token.id}")


__all__ = [
    "MAX_ACTIVE_TOKENS",
    "ResidentTokenRecordStore",
    "ResidentTokens",
    "TokenSpec",
    "checked_subject",
    "looks_like_token",
    "new_token_secret",
]
