"""OpenID Connect sign-in for operators, the parts without I/O: the PKCE pair, the
authorization request's URL, and who an ID token's claims make an operator of which tenant.

Pure: no I/O (``secrets`` draws the random values).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from cityhub.schemas.console_oidc_settings import ConsoleOidcSettings
from cityhub.schemas.registry import ID_PATTERN

_TENANT = re.compile(ID_PATTERN)
MAX_SUBJECT_CHARS = 255


class NotAnOperator(Exception):
    """The ID token's claims do not make its holder an operator here; the message says why
    (never a claim's value)."""


def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def new_pending() -> tuple[str, str, str]:
    """(state, nonce, code verifier) for one sign-in."""
    return secrets.token_urlsafe(24), secrets.token_urlsafe(24), pkce_pair()[0]


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def authorization_url(
    settings: ConsoleOidcSettings, redirect_uri: str, pending: tuple[str, str, str]
) -> str:
    """Where the browser goes to sign in (the authorization code flow, PKCE S256)."""
    assert settings.authorization_endpoint is not None
    assert settings.client_id is not None
    state, nonce, verifier = pending
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(settings.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge_of(verifier),
            "code_challenge_method": "S256",
        }
    )
    separator = "&" if "?" in settings.authorization_endpoint else "?"
    return f"{settings.authorization_endpoint}{separator}{query}"


def operator_of(
    claims: Mapping[str, Any], settings: ConsoleOidcSettings, nonce: str
) -> tuple[str, str]:
    """(subject, tenant) of an operator whose (verified) ID token has ``claims``; NotAnOperator
    if the nonce is not this sign-in's, the subject or tenant is missing or malformed, or the
    operator claim lacks the operator value."""
    if claims.get("nonce") != nonce:
        raise NotAnOperator("the ID token is not of this sign-in (nonce)")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_CHARS:
        raise NotAnOperator("the ID token names no subject (sub)")
    granted = claims.get(settings.operator_claim)
    values = [granted] if isinstance(granted, str) else granted
    if not isinstance(values, list) or settings.operator_value not in values:
        raise NotAnOperator(
            f"the account is not in {settings.operator_value!r} (claim {settings.operator_claim!r})"
        )
    tenant = settings.tenant
    if settings.tenant_claim is not None:
        claimed = claims.get(settings.tenant_claim)
        tenant = claimed if isinstance(claimed, str) else None
    if tenant is None or not _TENANT.match(tenant):
        raise NotAnOperator("the ID token names no valid tenant")
    return subject, tenant


def principal_key_id(subject: str) -> str:
    """The key id an OIDC operator's principal shows (and the quotas count by): a digest of
    the subject, never the subject itself."""
    return "oidc-" + hashlib.sha256(subject.encode()).hexdigest()[:16]
