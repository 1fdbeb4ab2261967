"""The tenant's erasure route: ``POST /tenants/{tenant}/data-subjects/{subject}/erasure``.

An operator or admin key of the tenant erases one of its data subjects
(``cityhub.streams.privacy.erasure``): the subject's keys are shredded, consents withdrawn,
devices unlinked, and the erasure logged. Another tenant's key gets 404 (as a tenant that does
not exist), a subscriber key 403, a subject id that is not a pseudonym 400 (without repeating
it). Erasing again answers 200 with ``nothing_left: true``. The resident's own route
(``/me/erasure``) calls the same service.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from cityhub.streams.api.handlers import Call, json_response
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.api.route_model import SUBJECT_PARAM, TENANT_PARAM, Route
from cityhub.streams.privacy.erasure import Erasure

ERASURE_KEY = web.AppKey("erasure", Erasure)


class ErasureOut(BaseModel):
    """What an erasure did (the subject is not repeated)."""

    tenant: str
    keys_shredded: int
    consents_withdrawn: int
    devices_unlinked: list[str]
    erased_at: str
    logged: bool
    nothing_left: bool


def erasure_service(call: Call) -> Erasure:
    """The erasure service; 503 where this instance of the API runs without one."""
    erasure = call.request.app.get(ERASURE_KEY)
    if erasure is None:
        raise ApiProblem(503, "Erasure is not served by this instance of the API.")
    return erasure


async def erase_subject(call: Call) -> web.Response:
    report = await erasure_service(call).erase(
        call.principal, call.path_param("tenant"), call.path_param("subject")
    )
    return json_response(report.public())


ERASURE_ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/tenants/{tenant}/data-subjects/{subject}/erasure",
        "eraseDataSubject",
        "Erase a data subject: shred their keys (no interface can read their sealed values "
        "from then on), withdraw their consents, unlink their devices, log it; idempotent",
        "data-subjects",
        erase_subject,
        response=ErasureOut,
        params=(TENANT_PARAM, SUBJECT_PARAM),
        problems=(403, 404, 503),
    ),
)

__all__ = ["ERASURE_KEY", "ERASURE_ROUTES", "ErasureOut", "erase_subject"]
