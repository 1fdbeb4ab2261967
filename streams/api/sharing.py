"""The routes of offers and agreements between tenants (docs/sharing.md): a provider's offers
under ``/tenants/{tenant}/offers``, the listed offers of every tenant under ``/offers``, and
each tenant's agreements, as provider or consumer, under ``/tenants/{tenant}/agreements``.
Every route takes a key; the rules are the service's (``cityhub.streams.sharing.service``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from cityhub.schemas.sharing import Agreement, AgreementDecision, AgreementRequest, OfferSpec
from cityhub.streams.api.bodies import query_text, read_model
from cityhub.streams.api.handlers import Call, json_response
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.api.route_model import ID_SCHEMA, TENANT_PARAM, Param, Route
from cityhub.streams.registry.principals import Principal
from cityhub.streams.service_errors import FieldError
from cityhub.streams.sharing.service import ROLES, Sharing

SHARING_KEY = web.AppKey("sharing", Sharing)


class OfferOut(BaseModel):
    """Documentation only: an offer as the API answers (its terms, ``ref``, times)."""

    model_config = {"extra": "allow"}
    tenant: str
    ref: str
    id: str
    withdrawn_at: str | None


class OfferList(BaseModel):
    """Documentation only: offers."""

    items: list[OfferOut]


class UsageOut(BaseModel):
    """Documentation only: the uses counted under an agreement, over every process."""

    delivered: int
    read: int
    updated_at: str | None


class AgreementOut(BaseModel):
    """Documentation only: an agreement as both parties see it."""

    model_config = {"extra": "allow"}
    id: str
    provider: str
    consumer: str
    offer: str
    state: str
    status: str
    active: bool
    usage: UsageOut


class AgreementList(BaseModel):
    """Documentation only: agreements."""

    items: list[AgreementOut]


def _sharing(call: Call) -> Sharing:
    sharing = call.request.app.get(SHARING_KEY)
    if sharing is None:
        raise ApiProblem(503, "Offers and agreements are not served by this instance of the API.")
    return sharing


def _agreement_doc(sharing: Sharing, agreement: Agreement) -> dict[str, Any]:
    return {
        **agreement.public(sharing.now()),
        "usage": sharing.usage(agreement.id).public(),
    }


def _offer_location(tenant: str, offer_id: str) -> str:
    return f"/api/v1/tenants/{tenant}/offers/{offer_id}"


async def list_listed_offers(call: Call) -> web.Response:
    tenant = query_text(call.request, "tenant", max_length=64)
    offers = _sharing(call).listed_offers(call.principal, tenant)
    return json_response({"items": [o.public() for o in offers]})


async def list_offers(call: Call) -> web.Response:
    offers = _sharing(call).list_offers(call.principal, call.path_param("tenant"))
    return json_response({"items": [o.public() for o in offers]})


async def get_offer(call: Call) -> web.Response:
    offer = _sharing(call).get_offer(
        call.principal, call.path_param("tenant"), call.path_param("offer")
    )
    return json_response(offer.public())


async def create_offer(call: Call) -> web.Response:
    spec = await read_model(call.request, OfferSpec, call.limits.max_body_bytes)
    offer = await _sharing(call).create_offer(call.principal, call.path_param("tenant"), spec)
    location = _offer_location(offer.tenant, offer.id)
    return json_response(offer.public(), status=201, headers={"Location": location})


async def replace_offer(call: Call) -> web.Response:
    spec = await read_model(call.request, OfferSpec, call.limits.max_body_bytes)
    offer = await _sharing(call).replace_offer(
        call.principal, call.path_param("tenant"), call.path_param("offer"), spec
    )
    return json_response(offer.public())


async def withdraw_offer(call: Call) -> web.Response:
    offer = await _sharing(call).withdraw_offer(
        call.principal, call.path_param("tenant"), call.path_param("offer")
    )
    return json_response(offer.public())


async def list_agreements(call: Call) -> web.Response:
    sharing = _sharing(call)
    role = query_text(call.request, "role", max_length=16)
    if role is not None and role not in ROLES:
        raise ApiProblem(
            400,
            "The query parameter role is provider or consumer.",
            errors=[FieldError("role", "provider or consumer")],
        )
    found = sharing.list_agreements(call.principal, call.path_param("tenant"), role)
    return json_response({"items": [_agreement_doc(sharing, a) for a in found]})


async def list_all_agreements(call: Call) -> web.Response:
    sharing = _sharing(call)
    found = sharing.all_agreements(call.principal)
    return json_response({"items": [_agreement_doc(sharing, a) for a in found]})


async def get_agreement(call: Call) -> web.Response:
    sharing = _sharing(call)
    found = sharing.get_agreement(
        call.principal, call.path_param("tenant"), call.path_param("agreement")
    )
    return json_response(_agreement_doc(sharing, found))


async def request_agreement(call: Call) -> web.Response:
    sharing = _sharing(call)
    body = await read_model(call.request, AgreementRequest, call.limits.max_body_bytes)
    tenant = call.path_param("tenant")
    made = await sharing.request_agreement(call.principal, tenant, body)
    location = f"/api/v1/tenants/{tenant}/agreements/{made.id}"
    return json_response(_agreement_doc(sharing, made), status=201, headers={"Location": location})


async def _decision(call: Call) -> AgreementDecision:
    if not call.request.can_read_body:
        return AgreementDecision()
    return await read_model(call.request, AgreementDecision, call.limits.max_body_bytes)


Decide = Callable[[Sharing, Principal, str, str, AgreementDecision], Awaitable[Agreement]]
"""One of ``Sharing.approve``, ``.reject`` and ``.revoke``."""


async def _answer_decision(call: Call, decide: Decide) -> web.Response:
    sharing = _sharing(call)
    decided = await decide(
        sharing,
        call.principal,
        call.path_param("tenant"),
        call.path_param("agreement"),
        await _decision(call),
    )
    return json_response(_agreement_doc(sharing, decided))


async def approve_agreement(call: Call) -> web.Response:
    return await _answer_decision(call, Sharing.approve)


async def reject_agreement(call: Call) -> web.Response:
    return await _answer_decision(call, Sharing.reject)


async def revoke_agreement(call: Call) -> web.Response:
    return await _answer_decision(call, Sharing.revoke)


_OFFER = Param("offer", "path", ID_SCHEMA, "The offer's id (unique in its tenant).", required=True)
_AGREEMENT = Param(
    "agreement",
    "path",
    {"type": "string", "pattern": "^agr-[0-9a-f]{16}$"},
    "The agreement's id.",
    required=True,
)
_ROLE = Param(
    "role",
    "query",
    {"type": "string", "enum": list(ROLES)},
    "Only the agreements in which the tenant is the provider, or the consumer.",
)
_TENANT_FILTER = Param("tenant", "query", ID_SCHEMA, "Only this tenant's listed offers.")
_OFFERS = "offers"
_AGREEMENTS = "agreements"
_READ = (404, 429, 503)
_WRITE = (400, 403, 404, 409, 413, 415, 429, 503)

SHARING_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/offers",
        "listListedOffers",
        "The offers every tenant listed and has not withdrawn, to ask for (any key)",
        _OFFERS,
        list_listed_offers,
        response=OfferList,
        params=(_TENANT_FILTER,),
        problems=(400, 429, 503),
    ),
    Route(
        "GET",
        "/tenants/{tenant}/offers",
        "listOffers",
        "The tenant's own offers, withdrawn ones included",
        _OFFERS,
        list_offers,
        response=OfferList,
        params=(TENANT_PARAM,),
        problems=_READ,
    ),
    Route(
        "POST",
        "/tenants/{tenant}/offers",
        "createOffer",
        "Offer a selection of the tenant's data to other tenants (operator or admin key)",
        _OFFERS,
        create_offer,
        status=201,
        response=OfferOut,
        body=OfferSpec,
        params=(TENANT_PARAM,),
        problems=_WRITE,
        headers=("Location",),
    ),
    Route(
        "GET",
        "/tenants/{tenant}/offers/{offer}",
        "getOffer",
        "One offer (the tenant's keys; other tenants' keys while it is listed)",
        _OFFERS,
        get_offer,
        response=OfferOut,
        params=(TENANT_PARAM, _OFFER),
        problems=_READ,
    ),
    Route(
        "PUT",
        "/tenants/{tenant}/offers/{offer}",
        "replaceOffer",
        "Replace an offer's terms (agreements already approved keep theirs)",
        _OFFERS,
        replace_offer,
        response=OfferOut,
        body=OfferSpec,
        params=(TENANT_PARAM, _OFFER),
        problems=_WRITE,
    ),
    Route(
        "POST",
        "/tenants/{tenant}/offers/{offer}/withdraw",
        "withdrawOffer",
        "Withdraw an offer: no new agreements; approved ones run on until they end or are revoked",
        _OFFERS,
        withdraw_offer,
        response=OfferOut,
        params=(TENANT_PARAM, _OFFER),
        problems=(403, 404, 409, 429, 503),
    ),
    Route(
        "GET",
        "/tenants/{tenant}/agreements",
        "listAgreements",
        "The agreements the tenant is a party to, with the uses counted under each",
        _AGREEMENTS,
        list_agreements,
        response=AgreementList,
        params=(TENANT_PARAM, _ROLE),
        problems=(400, 404, 429, 503),
    ),
    Route(
        "GET",
        "/agreements",
        "listAllAgreements",
        "Every tenant's agreements, with their uses (an admin key)",
        _AGREEMENTS,
        list_all_agreements,
        response=AgreementList,
        problems=(403, 429, 503),
    ),
    Route(
        "POST",
        "/tenants/{tenant}/agreements",
        "requestAgreement",
        "Ask another tenant for access to one of its offers (the consumer's operator or admin key)",
        _AGREEMENTS,
        request_agreement,
        status=201,
        response=AgreementOut,
        body=AgreementRequest,
        params=(TENANT_PARAM,),
        problems=_WRITE,
        headers=("Location",),
    ),
    Route(
        "GET",
        "/tenants/{tenant}/agreements/{agreement}",
        "getAgreement",
        "One agreement the tenant is a party to, with its history and uses",
        _AGREEMENTS,
        get_agreement,
        response=AgreementOut,
        params=(TENANT_PARAM, _AGREEMENT),
        problems=_READ,
    ),
    Route(
        "POST",
        "/tenants/{tenant}/agreements/{agreement}/approve",
        "approveAgreement",
        "Approve a requested agreement (the provider's operator or admin key)",
        _AGREEMENTS,
        approve_agreement,
        response=AgreementOut,
        body=AgreementDecision,
        params=(TENANT_PARAM, _AGREEMENT),
        problems=_WRITE,
    ),
    Route(
        "POST",
        "/tenants/{tenant}/agreements/{agreement}/reject",
        "rejectAgreement",
        "Reject a requested agreement (the provider's operator or admin key)",
        _AGREEMENTS,
        reject_agreement,
        response=AgreementOut,
        body=AgreementDecision,
        params=(TENANT_PARAM, _AGREEMENT),
        problems=_WRITE,
    ),
    Route(
        "POST",
        "/tenants/{tenant}/agreements/{agreement}/revoke",
        "revokeAgreement",
        "End an approved agreement at once (either party's operator or admin key), or "
        "withdraw a request (the consumer's)",
        _AGREEMENTS,
        revoke_agreement,
        response=AgreementOut,
        body=AgreementDecision,
        params=(TENANT_PARAM, _AGREEMENT),
        problems=_WRITE,
    ),
)
