"""Who is calling: the API key of a request, checked by the registry.

A key comes as ``Authorization: Bearer <secret>`` or as ``X-API-Key: <secret>``. A missing,
malformed, unknown or revoked key is a 401 with ``WWW-Authenticate: Bearer``; the secret itself
is never put into a message or a log line. What the principal may do is the registry's decision,
not this module's.
"""

from __future__ import annotations

from collections.abc import Mapping

from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry

MAX_SECRET_LENGTH = 512
"""Longer header values are not keys; refuse them before hashing anything."""


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of header ``name`` (a multidict's, or a plain mapping's one)."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    value = headers.get(name)
    return [] if value is None else [value]


def require_one_credential(headers: Mapping[str, str], what: str) -> None:
    """ApiProblem(400) if the request presents more than one credential (two Authorization
    headers, or Authorization and X-API-Key): which one counts would be a guess another server
    (a proxy, a log) may guess otherwise. ``what``: the credential, for the message."""
    if len(_values(headers, "Authorization")) + len(_values(headers, "X-API-Key")) > 1:
        raise ApiProblem(
            400,
            f"Send the {what} once: one Authorization header or one X-API-Key header, not several.",
        )


def presented_secret(headers: Mapping[str, str]) -> str:
    """The key secret a request presents; ApiProblem(401) saying how to present one if none,
    ApiProblem(400) if it presents more than one (``require_one_credential``)."""
    require_one_credential(headers, "API key")
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiProblem(
                401,
                "The Authorization header must be 'Bearer <API key secret>'.",
            )
        secret = token.strip()
    else:
        secret = headers.get("X-API-Key", "").strip()
        if not secret:
            raise ApiProblem(
                401,
                "No API key: send 'Authorization: Bearer <secret>' (or 'X-API-Key: <secret>'). "
                "An admin creates keys with 'cityhub keys create' or POST /api/v1/keys.",
            )
    if len(secret) > MAX_SECRET_LENGTH:
        raise ApiProblem(401, "The API key is not valid.")
    return secret


def authenticate(registry: Registry, headers: Mapping[str, str]) -> Principal:
    """The principal of a request's API key; the registry's Unauthenticated (401) if the key is
    unknown or revoked."""
    return registry.authenticate(presented_secret(headers))
