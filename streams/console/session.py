"""The console's session cookie: sealed (AES-GCM), so it is both secret and signed.

A session holds its id, the API key secret it signed in with (None before sign-in), its CSRF
token, the tenant an admin chose, and when it expires. The id is random and new at every
sign-in (the id of a session from before the sign-in never survives it: no session fixation);
signing out writes it to the sign-out topic (``cityhub.streams.console.signouts``), so that a
copy of the cookie opens no session in any API process afterwards. The cookie is
``base64url(nonce || AES-GCM(key, nonce, JSON))``; the key is derived with HKDF-SHA256 from the
privacy key-encryption key (KEK) that every API process has, so any API process reads a cookie
another one made, and nobody without the KEK can read or forge one. A cookie that does not open
(forged, cut, made with another KEK, expired, or made before sessions had an id) is no session
at all: the caller starts signed out.

Pure: no I/O; the clock is passed in.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
from dataclasses import dataclass, replace
from typing import TypeGuard

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

COOKIE_NAME = "cityhub_console"
MAX_COOKIE_CHARS = 2048
"""Longer cookies are not ours: refused before any decoding."""
_INFO = b"cityhub console session cookie v1"
_AAD = b"cityhub-console-session-v1"
_NONCE_BYTES = 12
_MAX_SECRET_CHARS = 512
_MAX_TENANT_CHARS = 128
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
"""A session id is ``secrets.token_urlsafe(16)`` (22 characters); other shapes are not ours."""
_SESSION_ID = re.compile(SESSION_ID_PATTERN)


def new_session_id() -> str:
    """A fresh random session id (128 bits)."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class Session:
    """One browser's session (signed in when ``secret`` is set)."""

    id: str
    """Random, new at every sign-in; what a sign-out records on the server."""
    csrf: str
    expires_at: float
    secret: str | None = None
    tenant: str | None = None
    """The tenant an admin works in (others always work in their key's own)."""
    oidc: tuple[str, str] | None = None
    """(subject, tenant) of an operator signed in with OpenID Connect (then no ``secret``)."""
    pending: tuple[str, str, str] | None = None
    """(state, nonce, PKCE verifier) of an OpenID Connect sign-in under way."""

    @classmethod
    def anonymous(cls, now: float, lifetime: float) -> Session:
        """A new signed-out session with a fresh id and CSRF token."""
        return cls(id=new_session_id(), csrf=secrets.token_urlsafe(24), expires_at=now + lifetime)

    def signed_in(self, secret: str, now: float, lifetime: float) -> Session:
        """This browser signed in with ``secret``: a new id, CSRF token and expiry."""
        return Session(
            id=new_session_id(),
            csrf=secrets.token_urlsafe(24),
            expires_at=now + lifetime,
            secret=secret,
        )

    def with_tenant(self, tenant: str) -> Session:
        return replace(self, tenant=tenant)

    def signing_in(self, pending: tuple[str, str, str] | None) -> Session:
        return replace(self, pending=pending)

    def signed_in_oidc(self, subject: str, tenant: str, now: float, lifetime: float) -> Session:
        """An operator signed in with OpenID Connect: a new id, CSRF token and expiry."""
        return Session(
            id=new_session_id(),
            csrf=secrets.token_urlsafe(24),
            expires_at=now + lifetime,
            oidc=(subject, tenant),
        )


def derive_key(kek: bytes) -> bytes:
    """The cookie key of a KEK (HKDF-SHA256, 32 bytes); the KEK itself never seals a cookie."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(kek)


class SessionCodec:
    """Seals sessions into cookie values and opens them again."""

    def __init__(self, kek: bytes) -> None:
        self._aead = AESGCM(derive_key(kek))

    def seal(self, session: Session) -> str:
        payload: dict[str, object] = {
            "i": session.id,
            "c": session.csrf,
            "e": session.expires_at,
        }
        if session.secret is not None:
            payload["k"] = session.secret
        if session.tenant is not None:
            payload["t"] = session.tenant
        if session.oidc is not None:
            payload["o"] = list(session.oidc)
        if session.pending is not None:
            payload["p"] = list(session.pending)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, json.dumps(payload).encode(), _AAD)
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, value: str, now: float) -> Session | None:
        """The session a cookie holds, or None if it is not one of ours, has expired or has no
        id (a cookie made before sessions had one)."""
        if not value or len(value) > MAX_COOKIE_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _AAD)
            payload = json.loads(plain)
        except (binascii.Error, ValueError, InvalidTag):
            return None
        return _session(payload, now)


def _session(payload: object, now: float) -> Session | None:
    if not isinstance(payload, dict):
        return None
    session_id, csrf, expires = payload.get("i"), payload.get("c"), payload.get("e")
    secret, tenant = payload.get("k"), payload.get("t")
    if not isinstance(csrf, str) or not isinstance(expires, (int, float)) or expires <= now:
        return None
    if not is_session_id(session_id):
        return None
    if secret is not None and not (isinstance(secret, str) and len(secret) <= _MAX_SECRET_CHARS):
        return None
    if tenant is not None and not (isinstance(tenant, str) and len(tenant) <= _MAX_TENANT_CHARS):
        return None
    try:
        oidc, pending = _strings(payload.get("o"), 2), _strings(payload.get("p"), 3)
    except ValueError:
        return None
    return Session(
        id=session_id,
        csrf=csrf,
        expires_at=float(expires),
        secret=secret,
        tenant=tenant,
        oidc=(oidc[0], oidc[1]) if oidc else None,
        pending=(pending[0], pending[1], pending[2]) if pending else None,
    )


def _strings(value: object, count: int) -> list[str] | None:
    """``value`` as ``count`` short strings, None if absent; ValueError if malformed."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != count:
        raise ValueError("malformed")
    strings = [v for v in value if isinstance(v, str) and len(v) <= _MAX_SECRET_CHARS]
    if len(strings) != count:
        raise ValueError("malformed")
    return strings


def is_session_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` has a session id's shape (``SESSION_ID_PATTERN``)."""
    return isinstance(value, str) and _SESSION_ID.fullmatch(value) is not None
