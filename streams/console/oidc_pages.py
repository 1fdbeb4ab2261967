"""OpenID Connect sign-in for operators: ``POST /console/oidc/start`` sends the browser to the
provider (authorization code flow, PKCE S256, state and nonce kept in the sealed session), and
``GET /console/oidc/callback`` exchanges the code at the token endpoint (server to server,
bounded in time and size, no redirect followed), verifies the ID token (RS256 or ES256 with a
key of the provider's JWKS, ``iss``, ``aud``, ``exp``, ``iat``, the nonce) and signs the browser
in as an operator of the tenant the settings or the token name. Any failure is the sign-in page
with a message; nothing of the token is shown or logged."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Any

import aiohttp
import jwt
import orjson
from aiohttp import web
from jwt.exceptions import PyJWKClientConnectionError

from cityhub.schemas.console_oidc_settings import ConsoleOidcSettings
from cityhub.streams.console.app import redirect
from cityhub.streams.console.metrics import SIGN_INS
from cityhub.streams.console.oidc_flow import (
    NotAnOperator,
    authorization_url,
    new_pending,
    operator_of,
)
from cityhub.streams.console.pages import BASE, ConsolePage, Ctx
from cityhub.streams.privacy.oidc import ALGORITHMS, BoundedJWKClient, looks_like_jwt

log = logging.getLogger("cityhub.console")

CALLBACK = "/oidc/callback"
MAX_TOKEN_CHARS = 16 * 1024


class OidcFailed(Exception):
    """The sign-in did not succeed; the message is for the log (no token, no claim value)."""


class IdTokens:
    """Verifies the provider's ID tokens (keys from its JWKS, cached)."""

    def __init__(self, settings: ConsoleOidcSettings) -> None:
        assert settings.jwks_url is not None
        self._settings = settings
        self._jwks = BoundedJWKClient(
            settings.jwks_url,
            max_bytes=settings.max_response_bytes,
            cache_jwk_set=True,
            lifespan=300,
            timeout=settings.timeout_seconds,
            cooldown_duration=30,
        )

    async def claims(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_CHARS or not looks_like_jwt(token):
            raise OidcFailed("the ID token is not a JWT")
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if algorithm not in ALGORITHMS:
                raise OidcFailed("the ID token's algorithm is not RS256 or ES256")
            key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
            if key.algorithm_name != algorithm:
                raise OidcFailed("the ID token's algorithm does not fit its key")
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self._settings.client_id,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_seconds,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except PyJWKClientConnectionError:
            raise OidcFailed("the provider's keys could not be fetched") from None
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise OidcFailed(f"the ID token is not valid ({type(exc).__name__})") from None
        if not isinstance(claims, dict):  # pragma: no cover - PyJWT returns a dict
            raise OidcFailed("the ID token's claims are not an object")
        return claims


OIDC_KEY = web.AppKey("console_oidc", IdTokens)


def _redirect_uri(ctx: Ctx) -> str:
    configured = ctx.settings.oidc.redirect_url
    if configured is not None:
        return configured
    return f"{ctx.request.scheme}://{ctx.request.host}{BASE}{CALLBACK}"


async def start(ctx: Ctx) -> web.StreamResponse:
    settings = ctx.settings.oidc
    if not settings.enabled:
        return redirect("/sign-in")
    pending = new_pending()
    ctx.session = ctx.session.signing_in(pending)
    location = authorization_url(settings, _redirect_uri(ctx), pending)
    return web.Response(status=303, headers={"Location": location})


async def _token(ctx: Ctx, code: str, verifier: str) -> str:
    """The ID token the token endpoint gives for ``code``."""
    settings = ctx.settings.oidc
    assert settings.token_endpoint is not None
    assert settings.client_id is not None
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": _redirect_uri(ctx),
        "client_id": settings.client_id,
        "code_verifier": verifier,
    }
    if settings.client_secret is not None:
        form["client_secret"] = settings.client_secret.get_secret_value()
    timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, trust_env=False) as http,
            http.post(settings.token_endpoint, data=form, allow_redirects=False) as response,
        ):
            body = await response.content.read(settings.max_response_bytes + 1)
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise OidcFailed(
            f"the token endpoint could not be reached ({type(exc).__name__})"
        ) from None
    if status != 200 or len(body) > settings.max_response_bytes:
        raise OidcFailed(f"the token endpoint answered {status}")
    try:
        doc = orjson.loads(body)
    except ValueError:
        raise OidcFailed("the token endpoint's answer is not JSON") from None
    token = doc.get("id_token") if isinstance(doc, dict) else None
    if not isinstance(token, str):
        raise OidcFailed("the token endpoint gave no ID token")
    return token


async def callback(ctx: Ctx) -> web.StreamResponse:
    settings = ctx.settings.oidc
    pending = ctx.session.pending
    ctx.session = ctx.session.signing_in(None)  # a state is good for one callback only
    state, code = ctx.query("state", 200), ctx.query("code", 2000)
    failed = ctx.render("sign_in.html", status=401, failed=False, notice="signin.oidc_failed")
    tokens = ctx.request.app.get(OIDC_KEY)
    if not settings.enabled or pending is None or not state or not code or tokens is None:
        SIGN_INS.labels("oidc", "refused").inc()
        return failed
    if not hmac.compare_digest(state.encode(), pending[0].encode()):
        SIGN_INS.labels("oidc", "refused").inc()
        return failed
    try:
        claims = await tokens.claims(await _token(ctx, code, pending[2]))
        subject, tenant = operator_of(claims, settings, pending[1])
        if ctx.services.registry.view.tenant(tenant) is None:
            raise NotAnOperator("the tenant does not exist")
    except (OidcFailed, NotAnOperator) as exc:
        log.info("console OIDC sign-in refused: %s", exc)
        SIGN_INS.labels("oidc", "refused").inc()
        return failed
    SIGN_INS.labels("oidc", "ok").inc()
    ctx.session = ctx.session.signed_in_oidc(
        subject, tenant, time.time(), ctx.settings.session_seconds
    )
    return redirect("/devices")


PAGES = (
    ConsolePage("POST", "/oidc/start", start, "consoleOidcStart", signed_in=False),
    ConsolePage("GET", CALLBACK, callback, "consoleOidcCallback", signed_in=False),
)
