"""Residents' OpenID Connect bearer tokens: a municipality's identity provider vouches for them.

When ``privacy.oidc`` is configured (``issuer``, ``audience``, ``jwks_url`` and where the tenant
comes from), ``OidcVerifier.resident(token)`` turns a signed ID or access token (a JWT) into a
``Resident``:

- only RS256 and ES256 signatures, with a key of the issuer's JWKS chosen by the token's ``kid``
  (``alg: none``, HMAC algorithms and a public key used as an HMAC secret are all refused);
- ``iss`` and ``aud`` must be the configured ones, ``exp`` and ``iat`` must be present, and
  ``exp``, ``nbf`` and ``iat`` are checked with ``leeway_seconds`` of clock skew;
- the data subject is the claim ``subject_claim`` (by default ``sub``: a pairwise pseudonymous
  subject identifier is exactly what cityhub needs) and must be a valid pseudonym; the tenant is
  the fixed ``tenant`` or the claim ``tenant_claim``, and must exist;
- a token longer than ``max_token_bytes`` is refused before anything is decoded.

Every refusal is ``Unauthenticated`` (401) whose message names what failed, never the token;
only an identity provider that cannot be reached while no key is cached is ``Unavailable`` (503).

Keys come from PyJWT's ``PyJWKClient``: the key set is cached for ``jwks_cache_seconds``, an
unknown ``kid`` refreshes it at most once per ``jwks_refresh_cooldown_seconds`` (so tokens with
made-up key ids cannot make cityhub hammer the identity provider), a fetch times out after
``jwks_timeout_seconds``, follows no redirect and reads at most ``jwks_max_bytes``. The client is
synchronous (urllib), so it runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import re
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import jwt
from jwt.exceptions import PyJWKClientConnectionError, PyJWKClientError

from cityhub.schemas.registry import ID_PATTERN, validate_data_subject
from cityhub.schemas.settings import OidcSettings
from cityhub.streams.privacy.resident import Resident
from cityhub.streams.service_errors import Unauthenticated, Unavailable

log = logging.getLogger("cityhub.privacy.oidc")

ALGORITHMS = ("RS256", "ES256")
"""The signatures accepted: asymmetric only, so that cityhub holds no secret that could sign."""
_TENANT = re.compile(ID_PATTERN)
_MAX_KID = 256


def looks_like_jwt(token: str) -> bool:
    """Whether ``token`` has a JWS compact serialisation's shape (three base64url parts)."""
    parts = token.split(".")
    return len(parts) == 3 and all(parts[:2]) and token.isascii()


class IdentityProviderUnavailable(Unavailable):
    """The identity provider's key set cannot be fetched and none is cached: try again."""

    title = "Identity provider unavailable"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class BoundedJWKClient(jwt.PyJWKClient):
    """``PyJWKClient`` whose fetch reads at most ``max_bytes`` of the key set, through no proxy
    and no redirect (the key set is read from the configured address or not at all)."""

    def __init__(self, uri: str, *, max_bytes: int, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self._max_bytes = max_bytes

    def fetch_data(self) -> Any:
        opener = urllib.request.build_opener(_NoRedirect(), urllib.request.ProxyHandler({}))
        # The URL is the operator's setting, checked to be https (http on loopback only).
        request = urllib.request.Request(url=self.uri, headers=self.headers)  # noqa: S310
        try:
            with opener.open(request, timeout=self.timeout) as response:
                body = response.read(self._max_bytes + 1)
        except (OSError, http.client.HTTPException) as exc:  # URLError and timeouts included
            raise PyJWKClientConnectionError(
                f"the JWKS could not be fetched: {type(exc).__name__}"
            ) from exc
        if len(body) > self._max_bytes:
            raise PyJWKClientError(f"the JWKS is larger than {self._max_bytes} bytes")
        try:
            data = json.loads(body)
        except ValueError:
            raise PyJWKClientError("the JWKS is not JSON") from None
        if not isinstance(data, dict):
            raise PyJWKClientError("the JWKS is not a JSON object")
        if self.jwk_set_cache is not None:
            self.jwk_set_cache.put(data)
        # What the base class's fetch records: it starts the unknown-kid refresh cooldown.
        self._last_successful_fetch = time.monotonic()
        return data


class OidcVerifier:
    """Checks residents' bearer tokens against one identity provider (see the module)."""

    def __init__(
        self,
        settings: OidcSettings,
        *,
        tenant_exists: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.issuer is None or settings.audience is None or settings.jwks_url is None:
            raise ValueError("OpenID Connect is not configured (privacy.oidc.issuer, ...)")
        self._settings = settings
        self._issuer = settings.issuer
        self._audience = settings.audience
        self._tenant_exists = tenant_exists
        self._clock = clock
        self._jwks = BoundedJWKClient(
            settings.jwks_url,
            max_bytes=settings.jwks_max_bytes,
            cache_jwk_set=True,
            lifespan=settings.jwks_cache_seconds,
            timeout=settings.jwks_timeout_seconds,
            cooldown_duration=settings.jwks_refresh_cooldown_seconds,
        )

    @property
    def issuer(self) -> str:
        return self._issuer

    async def resident(self, token: str) -> Resident:
        """The resident a token vouches for; Unauthenticated if it does not hold (see the
        module), Unavailable if the identity provider's keys cannot be had."""
        if len(token) > self._settings.max_token_bytes:
            raise Unauthenticated("the bearer token is too long")
        if not looks_like_jwt(token):
            raise Unauthenticated("the bearer token is not a JWT")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the bearer token's header cannot be read") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise Unauthenticated(f"the bearer token must be signed with {' or '.join(ALGORITHMS)}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= _MAX_KID:
            raise Unauthenticated("the bearer token names no key (kid)")
        key = await self._signing_key(kid)
        claims = self._claims(token, key, algorithm)
        return Resident(
            tenant=self._tenant(claims),
            subject=self._subject(claims),
            credential=f"oidc:{self._issuer}",
        )

    async def _signing_key(self, kid: str) -> Any:
        try:
            return await asyncio.to_thread(self._jwks.get_signing_key, kid)
        except PyJWKClientConnectionError:
            log.warning("the identity provider's JWKS could not be fetched")
            raise IdentityProviderUnavailable(
                "the identity provider's keys cannot be fetched now; try again"
            ) from None
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            raise Unauthenticated("the bearer token's key (kid) is not the issuer's") from None

    def _claims(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        if key.algorithm_name != algorithm:
            raise Unauthenticated("the bearer token's algorithm does not fit its key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._settings.leeway_seconds,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the bearer token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("the bearer token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("the bearer token is not meant for cityhub (aud)") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("the bearer token is from another issuer (iss)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"the bearer token lacks the claim {exc.claim!r}") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise Unauthenticated("the bearer token's signature or claims are not valid") from None
        if not isinstance(claims, dict):  # pragma: no cover - PyJWT returns a dict
            raise Unauthenticated("the bearer token's claims are not an object")
        return claims

    def _tenant(self, claims: dict[str, Any]) -> str:
        tenant = self._settings.tenant
        if tenant is None:
            assert self._settings.tenant_claim is not None
            tenant = claims.get(self._settings.tenant_claim)
        if not isinstance(tenant, str) or not _TENANT.match(tenant):
            raise Unauthenticated("the bearer token names no valid tenant")
        if not self._tenant_exists(tenant):
            raise Unauthenticated("the bearer token's tenant is not on this hub")
        return tenant

    def _subject(self, claims: dict[str, Any]) -> str:
        subject = claims.get(self._settings.subject_claim)
        try:
            return validate_data_subject(subject) if isinstance(subject, str) else _no_subject()
        except ValueError:
            raise Unauthenticated(
                f"the bearer token's {self._settings.subject_claim!r} claim is not a pseudonym "
                "cityhub takes"
            ) from None


def _no_subject() -> str:
    raise ValueError("no subject")


__all__ = [
    "ALGORITHMS",
    "BoundedJWKClient",
    "IdentityProviderUnavailable",
    "OidcVerifier",
    "looks_like_jwt",
]
