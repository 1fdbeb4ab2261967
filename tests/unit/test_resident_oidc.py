"""Residents' OpenID Connect bearer tokens: keys generated here, the JWKS served by a loopback
aiohttp server. Valid RS256 and ES256 tokens become a ``Resident``; every hostile token (alg
none, HS256 signed with the public key, expired, early, wrong aud or iss, unknown kid, a key of
the wrong type, oversized, a subject that is no pseudonym, an unknown tenant) is refused as
Unauthenticated, and unknown key ids cannot make cityhub fetch the key set more than the
cooldown allows."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from cityhub.schemas.settings import OidcSettings
from cityhub.streams.privacy.oidc import OidcVerifier, looks_like_jwt
from cityhub.streams.service_errors import Unauthenticated, Unavailable

ISSUER = "https://id.example.test/realms/city"
AUDIENCE = "cityhub"
SUBJECT = "res-7f3a9c21"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
STRANGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(private: Any, kid: str) -> dict[str, Any]:
    algorithm: Any = jwt.algorithms.RSAAlgorithm if kid.startswith("rsa") else None
    if algorithm is None:
        algorithm = jwt.algorithms.ECAlgorithm
    doc: dict[str, Any] = algorithm.to_jwk(private.public_key(), as_dict=True)
    doc.update(kid=kid, use="sig")
    return doc


@dataclass
class Provider:
    """The identity provider's JWKS endpoint, counting its fetches."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    fetches: int = 0
    body: bytes | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.fetches += 1
        body = self.body if self.body is not None else json.dumps({"keys": self.keys}).encode()
        return web.Response(body=body, content_type="application/json")


@pytest.fixture
async def provider() -> AsyncIterator[tuple[Provider, str]]:
    state = Provider(keys=[jwk(RSA_KEY, "rsa-1"), jwk(EC_KEY, "ec-1")])
    app = web.Application()
    app.router.add_get("/jwks", state.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield state, f"http://127.0.0.1:{server.port}/jwks"
    finally:
        await server.close()


def verifier(url: str, **overrides: Any) -> OidcVerifier:
    fields: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_url": url,
        "tenant": "acme",
        "leeway_seconds": 5,
        "jwks_refresh_cooldown_seconds": 30.0,
    }
    fields.update(overrides)
    return OidcVerifier(OidcSettings(**fields), tenant_exists=lambda t: t in {"acme", "beta"})


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    doc: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": SUBJECT,
        "iat": now,
        "exp": now + 300,
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def signed(private: Any = RSA_KEY, kid: str = "rsa-1", alg: str = "RS256", **over: Any) -> str:
    return jwt.encode(claims(**over), private, algorithm=alg, headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], body: dict[str, Any], secret: bytes | None) -> str:
    """A token built by hand, as an attacker would: HS256 over ``secret`` or no signature."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


async def test_rs256_and_es256_tokens_become_a_resident(provider: tuple[Provider, str]) -> None:
    _, url = provider
    check = verifier(url)
    for token in (signed(), signed(EC_KEY, "ec-1", "ES256")):
        resident = await check.resident(token)
        assert (resident.tenant, resident.subject) == ("acme", SUBJECT)
        assert resident.credential == f"oidc:{ISSUER}"


async def test_the_tenant_may_come_from_a_claim(provider: tuple[Provider, str]) -> None:
    _, url = provider
    check = verifier(url, tenant=None, tenant_claim="city_tenant", subject_claim="pseudonym")
    token = signed(city_tenant="beta", pseudonym="res-beta-0001")
    resident = await check.resident(token)
    assert (resident.tenant, resident.subject) == ("beta", "res-beta-0001")
    for hostile in ("nowhere", "../acme", 7, None):
        with pytest.raises(Unauthenticated, match="tenant"):
            await check.resident(signed(city_tenant=hostile, pseudonym="res-beta-0001"))


def hostile_tokens() -> dict[str, str]:
    now = int(time.time())
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "alg none": handmade({"alg": "none", "kid": "rsa-1"}, claims(), None),
        "alg none, no kid": handmade({"alg": "none"}, claims(), None),
        "HS256 with the public key": handmade(
            {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}, claims(), public_pem
        ),
        "expired": signed(exp=now - 60, iat=now - 400),
        "not yet valid": signed(nbf=now + 600),
        "issued in the future": signed(iat=now + 600, exp=now + 900),
        "wrong audience": signed(aud="someone-else"),
        "wrong issuer": signed(iss="https://evil.example"),
        "no exp": signed(exp=None),
        "no iat": signed(iat=None),
        "no aud": signed(aud=None),
        "no iss": signed(iss=None),
        "unknown kid": signed(kid="rsa-9"),
        "no kid": jwt.encode(claims(), RSA_KEY, algorithm="RS256"),
        "signed by a stranger": signed(STRANGER),
        "RS256 header on the EC key": signed(RSA_KEY, "ec-1", "RS256"),
        "RS384": signed(alg="RS384"),
        "PS256": signed(alg="PS256"),
        "subject is digits": signed(sub="123456789"),
        "subject is a name": signed(sub="Jan Jansen"),
        "no subject": signed(sub=None),
        "subject is a list": signed(sub=[SUBJECT]),
        "oversized": signed(padding="x" * 9000),
        "garbage": "not-a-token",
        "three dots of garbage": "a.b.c",
        "header not json": f"{b64(b'{nope')}.{b64(b'{}')}.sig",
        "header a list": f"{b64(b'[1]')}.{b64(b'{}')}.sig",
        "empty": "",
        "non-ascii": "ä.ö.ü",
    }


@pytest.mark.parametrize("name", sorted(hostile_tokens()))
async def test_hostile_tokens_are_401(provider: tuple[Provider, str], name: str) -> None:
    _, url = provider
    token = hostile_tokens()[name]
    with pytest.raises(Unauthenticated) as caught:
        await verifier(url).resident(token)
    if len(token) > 20:
        assert token not in caught.value.detail


async def test_unknown_key_ids_refresh_the_key_set_at_most_once_per_cooldown(
    provider: tuple[Provider, str],
) -> None:
    state, url = provider
    check = verifier(url)
    assert (await check.resident(signed())).subject == SUBJECT
    assert state.fetches == 1
    for n in range(25):
        with pytest.raises(Unauthenticated):
            await check.resident(signed(kid=f"made-up-{n}"))
    assert state.fetches == 1  # within the cooldown after the first fetch: none at all


async def test_a_rotated_key_is_found_by_refreshing(provider: tuple[Provider, str]) -> None:
    state, url = provider
    check = verifier(url, jwks_refresh_cooldown_seconds=0)
    await check.resident(signed())
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    state.keys.append(jwk(rotated, "rsa-2"))
    assert (await check.resident(signed(rotated, "rsa-2"))).subject == SUBJECT
    assert state.fetches == 2


async def test_an_oversized_key_set_is_not_read(provider: tuple[Provider, str]) -> None:
    state, url = provider
    state.body = json.dumps({"keys": [jwk(RSA_KEY, "rsa-1")], "pad": "x" * 5000}).encode()
    with pytest.raises(Unauthenticated):
        await verifier(url, jwks_max_bytes=1024).resident(signed())
    state.body = b"<html>not json</html>"
    with pytest.raises(Unauthenticated):
        await verifier(url).resident(signed())


async def test_an_unreachable_provider_is_503_not_401() -> None:
    with pytest.raises(Unavailable):
        await verifier("http://127.0.0.1:9/jwks", jwks_timeout_seconds=2).resident(signed())


def test_looks_like_jwt() -> None:
    assert looks_like_jwt(signed())
    assert not looks_like_jwt("chr_0123456789abcdef_secret")
    assert not looks_like_jwt("a..c")


@pytest.mark.parametrize(
    "fields",
    [
        {"issuer": ISSUER, "jwks_url": "https://id.example.test/jwks", "tenant": "acme"},
        {"issuer": ISSUER, "audience": "a", "tenant": "acme"},
        {"issuer": ISSUER, "audience": "a", "jwks_url": "https://id.example.test/jwks"},
        {
            "issuer": ISSUER,
            "audience": "a",
            "jwks_url": "https://id.example.test/jwks",
            "tenant": "acme",
            "tenant_claim": "t",
        },
        {
            "issuer": ISSUER,
            "audience": "a",
            "jwks_url": "http://id.example.test/jwks",
            "tenant": "acme",
        },
        {"issuer": ISSUER, "audience": "a", "jwks_url": "file:///etc/passwd", "tenant": "acme"},
    ],
)
def test_incomplete_or_unsafe_settings_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        OidcSettings(**fields)


def test_off_by_default() -> None:
    assert not OidcSettings().enabled
    with pytest.raises(ValueError, match="not configured"):
        OidcVerifier(OidcSettings(), tenant_exists=lambda t: True)
