"""Operators sign in to the console with OpenID Connect: the authorization code flow with PKCE
against a provider of the test's own (its keys, its token endpoint), and every way it must
refuse: another state, a replayed callback, an account outside the operators' group, a token
for another client, a tenant that does not exist."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa

from cityhub.schemas.console_oidc_settings import ConsoleOidcSettings
from cityhub.schemas.console_settings import ConsoleSettings
from cityhub.streams.console.oidc_flow import challenge_of

from .console_support import Browser, running_console

ISSUER = "https://idp.gemeente.example"
CLIENT = "cityhub-console"


@dataclass
class Provider:
    """A minimal OpenID provider: its JWKS and a token endpoint that answers one code."""

    key: Any = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    claims: dict[str, Any] = field(default_factory=dict)
    challenge: str = ""
    codes_used: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/jwks", self.jwks)
        app.router.add_post("/token", self.token)
        return app

    async def jwks(self, request: web.Request) -> web.Response:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return web.json_response({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]})

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("code") != "good-code" or challenge_of(str(form["code_verifier"])) != (
            self.challenge
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        self.codes_used += 1
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": CLIENT, "sub": "op-123", "iat": now, "exp": now + 300}
        claims |= self.claims
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "k1"})
        return web.json_response({"id_token": token, "token_type": "Bearer"})


@pytest.fixture
async def provider() -> AsyncIterator[tuple[Provider, TestServer]]:
    idp = Provider()
    server = TestServer(idp.app())
    await server.start_server()
    yield idp, server
    await server.close()


def _settings(server: TestServer, **over: Any) -> ConsoleSettings:
    base = str(server.make_url(""))
    oidc = {
        "issuer": ISSUER,
        "client_id": CLIENT,
        "authorization_endpoint": "https://idp.gemeente.example/authorize",
        "token_endpoint": f"{base}/token",
        "jwks_url": f"{base}/jwks",
        "tenant": "acme",
        **over,
    }
    return ConsoleSettings(oidc=ConsoleOidcSettings.model_validate(oidc))


async def _start(browser: Browser, idp: Provider, **claims: Any) -> str:
    """Start a sign-in; the provider will vouch for ``claims``; the state to call back with."""
    page = await browser.get("/console/sign-in")
    assert "/console/oidc/start" in page.text
    page = await browser.post("/console/oidc/start")
    assert page.status == 303
    assert page.location is not None
    assert page.location.startswith("https://idp.gemeente.example/authorize?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(page.location).query).items()}
    assert query["code_challenge_method"] == "S256"
    assert query["client_id"] == CLIENT
    idp.challenge = query["code_challenge"]
    idp.claims = {"nonce": query["nonce"], "groups": ["cityhub-operators"], **claims}
    return query["state"]


async def test_an_operator_signs_in_with_the_municipal_account(
    provider: tuple[Provider, TestServer],
) -> None:
    idp, server = provider
    async with running_console(_settings(server)) as browser:
        page = await browser.get("/console/sign-in")
        assert (
            "form-action 'self' https://idp.gemeente.example"
            in (page.headers["Content-Security-Policy"])
        )
        state = await _start(browser, idp)
        page = await browser.get(f"/console/oidc/callback?code=good-code&state={state}")
        assert page.status == 303
        assert page.location == "/console/devices"
        page = await browser.get("/console/devices")
        assert page.status == 200
        assert "a-1" in page.text
        assert "b-1" not in page.text
        assert "op-123" not in page.text  # the subject is shown only as a digest
        # An operator: it may edit its tenant's devices, and nothing of another tenant.
        assert (await browser.get("/console/devices/b-1")).status == 404
        # The callback is good once.
        page = await browser.get(f"/console/oidc/callback?code=good-code&state={state}")
        assert page.status == 401


@pytest.mark.parametrize(
    ("claims", "settings"),
    [
        ({"groups": ["residents"]}, {}),  # not in the operators' group
        ({"aud": "another-client"}, {}),  # a token for another client
        ({"iss": "https://evil.example"}, {}),  # another issuer
        ({"nonce": "another"}, {}),  # not this sign-in's
        ({"exp": 1}, {}),  # expired
        ({}, {"tenant": None, "tenant_claim": "org"}),  # no tenant in the token
        ({"org": "nope"}, {"tenant": None, "tenant_claim": "org"}),  # a tenant that is not
    ],
)
async def test_refusals(
    provider: tuple[Provider, TestServer], claims: dict[str, Any], settings: dict[str, Any]
) -> None:
    idp, server = provider
    async with running_console(_settings(server, **settings)) as browser:
        state = await _start(browser, idp)
        idp.claims |= claims
        page = await browser.get(f"/console/oidc/callback?code=good-code&state={state}")
        assert page.status == 401
        assert (await browser.get("/console/devices")).status == 303


async def test_another_state_or_code_is_refused(provider: tuple[Provider, TestServer]) -> None:
    idp, server = provider
    async with running_console(_settings(server)) as browser:
        state = await _start(browser, idp)
        page = await browser.get("/console/oidc/callback?code=good-code&state=forged")
        assert page.status == 401
        state = await _start(browser, idp)
        page = await browser.get(f"/console/oidc/callback?code=bad-code&state={state}")
        assert page.status == 401
        assert idp.codes_used == 0


def test_the_settings_refuse_an_incomplete_or_insecure_provider() -> None:
    with pytest.raises(ValueError, match="client_id"):
        ConsoleOidcSettings(issuer=ISSUER, tenant="acme")
    with pytest.raises(ValueError, match="https"):
        ConsoleOidcSettings(
            issuer=ISSUER,
            client_id=CLIENT,
            authorization_endpoint="http://idp.example/authorize",
            token_endpoint="https://idp.example/token",
            jwks_url="https://idp.example/jwks",
            tenant="acme",
        )
    with pytest.raises(ValueError, match="exactly one"):
        ConsoleOidcSettings(
            issuer=ISSUER,
            client_id=CLIENT,
            authorization_endpoint="https://idp.example/authorize",
            token_endpoint="https://idp.example/token",
            jwks_url="https://idp.example/jwks",
        )


async def test_an_unrecorded_sign_out_tells_an_oidc_operator_what_ends_copies(
    provider: tuple[Provider, TestServer],
) -> None:
    """Such a session holds no key: the notice must not tell its operator to revoke one."""
    from cityhub.streams.service_errors import Unavailable

    from .test_console_signouts import FailingWrites

    idp, server = provider
    async with running_console(
        _settings(server), signouts=FailingWrites(Unavailable("no Kafka"))
    ) as browser:
        state = await _start(browser, idp)
        page = await browser.get(f"/console/oidc/callback?code=good-code&state={state}")
        assert page.status == 303
        assert (await browser.get("/console/devices")).status == 200  # its CSRF token
        page = await browser.post("/console/sign-out")
        assert page.location == "/console/sign-in?notice=unrecorded-oidc"
        notice = await browser.get(page.location, headers={"Accept-Language": "en"})
        assert "could not record the sign-out" in notice.text
        assert "switching OpenID Connect sign-in off" in notice.text
        assert "have your API key revoked" not in notice.text
