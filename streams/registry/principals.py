"""Who is calling and what they may do: principals, API key secrets and the authorisation rules.

Authorisation lives in the services (the registry's and the subscriptions'), not in the HTTP
layer, so the CLI and the API cannot disagree. The registry's rules:

- ``admin``: everything, every tenant (tenants, keys of any tenant, devices, types).
- ``operator``: device types and devices of its own tenant (create, read, update, delete, import).
- ``subscriber``: read device types and devices of its own tenant.

Another tenant's device or type is reported as *not found* (404), never *forbidden*, so that a key
cannot learn what exists elsewhere (OWASP API1); a role that may not do something at all in its
own tenant gets *forbidden* (403). A revoked or unknown key authenticates as nobody (401).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cityhub.schemas.registry import Role, fingerprint
from cityhub.streams.service_errors import Forbidden, NotFound, Unauthenticated

if TYPE_CHECKING:
    from cityhub.streams.registry.view import RegistryView

KEY_PREFIX = "chk_"
"""API key secrets read ``chk_<key id>_<random>``: the id finds the key without a scan."""


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

    @property
    def is_system(self) -> bool:
        return self.key_id == "system" and self.tenant == "*"


def new_key_secret() -> tuple[str, str]:
    """A new API key's id and its secret (``chk_<id>_<random>``, 32 random bytes)."""
    key_id = secrets.token_hex(8)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def authenticate(view: RegistryView, secret: str) -> Principal:
    """The principal of an API key secret; raises Unauthenticated if unknown or revoked.
    Constant-time comparison of the secret's fingerprint."""
    key_id, sep, rest = secret.removeprefix(KEY_PREFIX).partition("_")
    if not secret.startswith(KEY_PREFIX) or not sep or not rest:
        raise Unauthenticated("not a cityhub API key (they read chk_<id>_<secret>)")
    key = view.api_key(key_id)
    if key is None or not hmac.compare_digest(fingerprint(secret), key.secret_sha256):
        raise Unauthenticated("unknown API key")
    if key.revoked_at is not None:
        raise Unauthenticated(f"this API key was revoked at {key.revoked_at}")
    return Principal(key_id=key.id, tenant=key.tenant, role=key.role)


def require_admin(who: Principal, action: str) -> None:
    """Forbidden unless ``who`` is an admin; ``action`` completes "only an admin key may ..."."""
    if who.role is not Role.ADMIN:
        raise Forbidden(f"only an admin key may {action}; this key's role is {who.role}")


def is_own_tenant(who: Principal, tenant: str) -> bool:
    """Whether ``who`` is a key of ``tenant`` itself, or the CLI."""
    return who.is_system or who.tenant == tenant


def require_own_tenant(who: Principal, tenant: str) -> None:
    """NotFound unless ``who`` is a key of ``tenant`` itself (or the CLI): personal data of a
    tenant's residents is the tenant's alone, so not even another tenant's admin key reaches
    it, and nothing says whether it exists."""
    if not is_own_tenant(who, tenant):
        raise NotFound(f"tenant {tenant[:64]!r} not found")


def require_tenant_access(view: RegistryView, who: Principal, tenant: str, *, write: bool) -> None:
    """Raise unless ``who`` may read (or write) in ``tenant``: NotFound for another tenant
    (so that nothing about it leaks) or a tenant that does not exist, Forbidden for a role
    that may not write."""
    if who.role is not Role.ADMIN and who.tenant != tenant:
        raise NotFound(f"tenant {tenant!r} not found")
    if write and who.role is Role.SUBSCRIBER:
        raise Forbidden(
            "a subscriber key may only read; ask for an operator key to change the registry"
        )
    if view.tenant(tenant) is None:
        raise NotFound(f"tenant {tenant!r} not found")
