"""Consent records through the tenant's side of the API: a tenant's operator or admin key reads
a data subject's consents and gives or withdraws one on the resident's documented behalf
(``evidence``). Residents use ``/api/v1/me/consents`` (``streams/api/resident*``) over the same
service. Every answer carries the records' hash chains; authorisation is the service's
(``streams/privacy/consent_service.py``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from cityhub.schemas.consent import ConsentRecord, verify
from cityhub.schemas.consent_change import ConsentGiveSpec, ConsentWithdrawSpec
from cityhub.streams.api.bodies import read_model
from cityhub.streams.api.handlers import Call, json_response
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.api.route_model import ID_SCHEMA, SUBJECT_PARAM, TENANT_PARAM, Param, Route
from cityhub.streams.privacy.consent_service import Consents
from cityhub.streams.privacy.resident import Resident
from cityhub.streams.registry.principals import Principal

CONSENTS_KEY = web.AppKey("consents", Consents)


class ConsentEventOut(BaseModel):
    """Documentation only: one entry of a record's status history, with its place in the hash
    chain (``prev_hash``, ``hash``)."""

    model_config = {"extra": "allow"}
    seq: int
    status: str
    indicated_at: str
    collection_method: str
    prev_hash: str
    hash: str


class ConsentRecordOut(BaseModel):
    """Documentation only: a consent record (ISO/IEC TS 27560 in DPV's terms) with its whole
    hash-chained ``history``, its current ``status`` and ``active``, its ``head`` (the last
    hash: keep it to check later that the record still extends it), and ``verified`` (the
    chain checked as it was served)."""

    model_config = {"extra": "allow"}
    id: str
    conforms_to: str
    tenant: str
    data_subject: str
    processing_activity: dict[str, str]
    status: str
    active: bool
    head: str
    history: list[ConsentEventOut]
    verified: dict[str, Any]


class ConsentList(BaseModel):
    """Documentation only: a data subject's consent records, by activity slug."""

    items: list[ConsentRecordOut]


def consent_doc(record: ConsentRecord) -> dict[str, Any]:
    """A record as the API answers it: ``public()`` and the chain's check."""
    return {**record.public(), "verified": verify(record).public()}


def _consents(call: Call) -> Consents:
    service = call.request.app.get(CONSENTS_KEY)
    if service is None:
        raise ApiProblem(503, "Consent records are not served by this instance of the API.")
    return service


def _where(call: Call) -> tuple[str, str]:
    return call.path_param("tenant"), call.path_param("subject")


async def list_consents(call: Call) -> web.Response:
    tenant, subject = _where(call)
    records = _consents(call).of_subject(call.principal, tenant, subject)
    return json_response({"items": [consent_doc(r) for r in records]})


async def get_consent(call: Call) -> web.Response:
    tenant, subject = _where(call)
    record = _consents(call).get(call.principal, tenant, subject, call.path_param("activity"))
    return json_response(consent_doc(record))


async def give_as(call: Call, who: Principal | Resident, tenant: str, subject: str) -> web.Response:
    """Give the consent of the request's body and path activity, as ``who``."""
    spec = await read_model(call.request, ConsentGiveSpec, call.limits.max_body_bytes)
    record = await _consents(call).give(
        who,
        tenant,
        subject,
        call.path_param("activity"),
        evidence=spec.evidence,
        notice=spec.notice,
    )
    return json_response(consent_doc(record))


async def withdraw_as(
    call: Call, who: Principal | Resident, tenant: str, subject: str
) -> web.Response:
    """Withdraw the consent of the request's path activity, as ``who``."""
    spec = await read_model(call.request, ConsentWithdrawSpec, call.limits.max_body_bytes)
    record = await _consents(call).withdraw(
        who,
        tenant,
        subject,
        call.path_param("activity"),
        evidence=spec.evidence,
        reason=spec.reason,
    )
    return json_response(consent_doc(record))


async def give_consent(call: Call) -> web.Response:
    return await give_as(call, call.principal, *_where(call))


async def withdraw_consent(call: Call) -> web.Response:
    return await withdraw_as(call, call.principal, *_where(call))


_ACTIVITY = Param(
    "activity", "path", ID_SCHEMA, "The processing activity's slug in the tenant.", required=True
)
_TAG = "consents"
_BASE = "/tenants/{tenant}/data-subjects/{subject}/consents"
_WRITE = (403, 404, 409, 413, 415, 503)

CONSENT_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        _BASE,
        "listConsents",
        "A data subject's consent records with their hash chains (operator or admin key of "
        "the tenant)",
        _TAG,
        list_consents,
        response=ConsentList,
        params=(TENANT_PARAM, SUBJECT_PARAM),
        problems=(403, 404, 503),
    ),
    Route(
        "GET",
        _BASE + "/{activity}",
        "getConsent",
        "A data subject's consent record for one processing activity",
        _TAG,
        get_consent,
        response=ConsentRecordOut,
        params=(TENANT_PARAM, SUBJECT_PARAM, _ACTIVITY),
        problems=(403, 404, 503),
    ),
    Route(
        "POST",
        _BASE + "/{activity}/give",
        "giveConsent",
        "Record a resident's consent on their documented behalf (evidence required); giving "
        "an active consent again writes nothing",
        _TAG,
        give_consent,
        response=ConsentRecordOut,
        body=ConsentGiveSpec,
        params=(TENANT_PARAM, SUBJECT_PARAM, _ACTIVITY),
        problems=_WRITE,
    ),
    Route(
        "POST",
        _BASE + "/{activity}/withdraw",
        "withdrawConsent",
        "Record the withdrawal of a resident's consent on their documented behalf (evidence "
        "required); withdrawing a withdrawn consent writes nothing",
        _TAG,
        withdraw_consent,
        response=ConsentRecordOut,
        body=ConsentWithdrawSpec,
        params=(TENANT_PARAM, SUBJECT_PARAM, _ACTIVITY),
        problems=_WRITE,
    ),
)
