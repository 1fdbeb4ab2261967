"""Residents' tokens in the API: the tenant issues, lists and revokes them, and a resident's
request is authenticated by one.

Tenant routes (an ``operator`` or ``admin`` key of the tenant; ``resident_token_service.py``
has the rules): ``POST``/``GET /tenants/{tenant}/data-subjects/{subject}/tokens`` and
``DELETE .../tokens/{id}``. The secret is in the answer to the ``POST`` only.

Residents' routes (``/me/...``, ``streams/api/resident.py``) take no API key but a bearer
token that is a resident token (``chr_...``) or, when ``privacy.oidc`` is configured, an OpenID
Connect token of the municipality's identity provider; anything else is a 401 with
``WWW-Authenticate: Bearer``. A resident token presented to any other route is not an API key
and is a 401 there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from cityhub.streams.api.auth import MAX_SECRET_LENGTH, require_one_credential
from cityhub.streams.api.bodies import read_model
from cityhub.streams.api.handlers import Call, Handler, json_response
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.api.route_model import SUBJECT_PARAM, TENANT_PARAM, Param, Route
from cityhub.streams.privacy.oidc import OidcVerifier, looks_like_jwt
from cityhub.streams.privacy.resident import Resident
from cityhub.streams.privacy.resident_token_service import (
    ResidentTokens,
    TokenSpec,
    looks_like_token,
)
from cityhub.streams.privacy.resident_tokens import TOKEN_ID_PATTERN
from cityhub.streams.privacy.subject_access import SubjectAccess
from cityhub.streams.service_errors import Unauthenticated


@dataclass(frozen=True, slots=True)
class ResidentServices:
    """What the residents' routes need, at ``app[RESIDENTS_KEY]`` (``build_api(residents=)``).
    Consents, erasure and the processing log are the app's own services (``build_api``'s
    ``consents``, ``erasure``, ``processing_log``), which the ``/me`` routes call with the
    ``Resident``; without one, its routes answer 503."""

    tokens: ResidentTokens
    access: SubjectAccess
    oidc: OidcVerifier | None = None


RESIDENTS_KEY = web.AppKey("residents", ResidentServices)


def residents(call: Call) -> ResidentServices:
    """The residents' services; 503 where this instance of the API runs without them."""
    services = call.request.app.get(RESIDENTS_KEY)
    if services is None:
        raise ApiProblem(503, "Residents' access is not served by this instance of the API.")
    return services


def presented_bearer(headers: Mapping[str, str]) -> str:
    """The bearer token of ``Authorization: Bearer <token>``; Unauthenticated saying how to
    present one otherwise (``X-API-Key`` is an API key's header, not a resident's); 400 for
    more than one credential, as for API keys."""
    require_one_credential(headers, "token")
    scheme, _, token = headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(
            "Present your resident token (or your identity provider's token) as "
            "'Authorization: Bearer <token>'; your municipality issues it."
        )
    return token


async def authenticate_resident(services: ResidentServices, headers: Mapping[str, str]) -> Resident:
    """The resident of a request: its bearer token is a resident token, or an OIDC token when
    the identity provider is configured; Unauthenticated otherwise (an API key included)."""
    token = presented_bearer(headers)
    if looks_like_token(token) and len(token) <= MAX_SECRET_LENGTH:
        return services.tokens.authenticate(token)
    if services.oidc is not None and looks_like_jwt(token):
        return await services.oidc.resident(token)
    raise Unauthenticated(
        "This route takes a resident's token, not an API key or anything else."
        if token.startswith("chk_")
        else "Not a resident token."
    )


ResidentHandler = Callable[[Call, ResidentServices, Resident], Awaitable[web.StreamResponse]]


def as_resident(handler: ResidentHandler) -> Handler:
    """A route handler that runs ``handler`` for the authenticated resident only."""

    async def run(call: Call) -> web.StreamResponse:
        services = residents(call)
        resident = await authenticate_resident(services, call.request.headers)
        return await handler(call, services, resident)

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


# --- the tenant's routes ---------------------------------------------------------------------


class ResidentTokenOut(BaseModel):
    """A resident token as it is listed: never its secret."""

    model_config = ConfigDict(extra="forbid")
    id: str
    tenant: str
    subject: str
    name: str
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None


class ResidentTokenCreated(ResidentTokenOut):
    """The token just issued, with its secret: shown this once, never again."""

    secret: str


class ResidentTokenList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ResidentTokenOut]


def _path(call: Call) -> tuple[str, str]:
    return call.path_param("tenant"), call.path_param("subject")


async def issue_token(call: Call) -> web.Response:
    spec = await read_model(call.request, TokenSpec, call.limits.max_body_bytes)
    tenant, subject = _path(call)
    token, secret = await residents(call).tokens.issue(call.principal, tenant, subject, spec)
    doc = {**token.public(), "secret": secret}
    location = f"{call.request.path}/{token.id}"
    return json_response(doc, status=201, headers={"Location": location})


async def list_tokens(call: Call) -> web.Response:
    tenant, subject = _path(call)
    found = residents(call).tokens.list(call.principal, tenant, subject)
    return json_response({"items": [t.public() for t in found]})


async def revoke_token(call: Call) -> web.Response:
    tenant, subject = _path(call)
    token = await residents(call).tokens.revoke(
        call.principal, tenant, subject, call.path_param("id")
    )
    return json_response(token.public())


_TOKEN_ID = Param(
    "id", "path", {"type": "string", "pattern": TOKEN_ID_PATTERN}, "The token's id.", required=True
)
_TOKENS = "/tenants/{tenant}/data-subjects/{subject}/tokens"
_TAG = "residents"

TOKEN_ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        _TOKENS,
        "issueResidentToken",
        "Issue a resident a token for their own data (operator or admin key of the tenant; "
        "the subject must be linked to a device); the secret is shown once",
        _TAG,
        issue_token,
        status=201,
        response=ResidentTokenCreated,
        body=TokenSpec,
        params=(TENANT_PARAM, SUBJECT_PARAM),
        problems=(403, 404, 409, 413, 415, 503),
        headers=("Location",),
    ),
    Route(
        "GET",
        _TOKENS,
        "listResidentTokens",
        "A data subject's tokens, revoked and expired ones too (no secrets)",
        _TAG,
        list_tokens,
        response=ResidentTokenList,
        params=(TENANT_PARAM, SUBJECT_PARAM),
        problems=(403, 404, 503),
    ),
    Route(
        "DELETE",
        _TOKENS + "/{id}",
        "revokeResidentToken",
        "Revoke a resident token: it opens nothing from the next request on",
        _TAG,
        revoke_token,
        response=ResidentTokenOut,
        params=(TENANT_PARAM, SUBJECT_PARAM, _TOKEN_ID),
        problems=(403, 404, 503),
    ),
)

__all__ = [
    "RESIDENTS_KEY",
    "TOKEN_ROUTES",
    "ResidentServices",
    "as_resident",
    "authenticate_resident",
    "residents",
]
