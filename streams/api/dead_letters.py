"""A tenant's dead letters through the API (docs/ingest.md, "Dead letters"):

* ``GET /api/v1/tenants/{tenant}/dead-letters``: the latest letters, newest first, filtered by
  ``stage``, ``reason`` and ``subscription``, without their payloads;
* ``GET /api/v1/tenants/{tenant}/dead-letters/{letter}``: one letter, with the first bytes of
  its original payload when the caller may see them.

Who sees which letter is ``cityhub.streams.deadletters.view``'s rule, as on the console's pages:
an operator key its tenant's devices' letters and its subscriptions' deliveries', a subscriber
key its tenant's subscriptions' deliveries' only (what a webhook, MQTT or live delivery gave up
on, with the partition and offset to replay from), an admin key any tenant's; another tenant's
key gets 404. A personal device's payload shows to nobody; a shared device's (a delivery under
an agreement) to admins only. The letters come from the API process's reader of the dead-letter
topic (the console's, ``cityhub.streams.console.ops``): the last
``console.dead_letters_per_tenant`` of each tenant; a process without it answers 503.
"""

from __future__ import annotations

import base64
from typing import Protocol

from aiohttp import web
from pydantic import BaseModel

from cityhub.schemas.subscription import SUBSCRIPTION_ID_PATTERN
from cityhub.streams.api.bodies import query_limit, query_text
from cityhub.streams.api.handlers import Call, json_response
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.api.route_model import TENANT_PARAM, Param, Route
from cityhub.streams.deadletters.view import DeadLetterView, Letter, payload_visible, preview
from cityhub.streams.registry.principals import require_tenant_access
from cityhub.streams.service_errors import NotFound


class DeadLetterSource(Protocol):
    """What the routes read (``cityhub.streams.deadletters.reader.DeadLetterReader``)."""

    view: DeadLetterView
    ready: bool
    failed: str | None

    def ensure_started(self) -> None: ...


DEAD_LETTERS_KEY = web.AppKey("dead_letters", DeadLetterSource)

STAGES = ("bridge", "normalise", "worker", "deliver")
LETTER_ID_PATTERN = r"^[0-9]{1,10}-[0-9]{1,19}$"
DEFAULT_LIMIT = 100
_READ = (403, 404, 503)


class DeadLetterOut(BaseModel):
    """One dead letter (docs/topics.md, "Dead-letter record")."""

    id: str
    """``<partition>-<offset>`` of the letter on the dead-letter topic."""
    tenant: str
    stage: str
    reason: str
    detail: str
    failed_at: str
    device: str | None
    """The device it concerns, as the letter names it (a device id, a DevEUI, a record key)."""
    subscription: str | None
    """The subscription whose delivery gave up on the item (stage ``deliver``)."""
    kafka_partition: int | None
    kafka_offset: int | None
    """Where the failed record sits in the topic it was read from (for a subscription: replay
    from this offset of this partition to have it delivered again)."""
    size: int
    sha256: str
    truncated: bool
    """The letter kept only the first bytes of the payload."""


class DeadLetterDetail(DeadLetterOut):
    """One dead letter with the first bytes of its original payload."""

    payload: str | None
    """The first bytes of the payload (``console.dead_letter_preview_bytes``), as UTF-8 text or
    base64 (``payload_encoding``); null when withheld (``payload_withheld`` says why)."""
    payload_encoding: str | None
    payload_withheld: str | None
    """``personal`` (a personal device's readings: shown to nobody), ``shared`` (another
    tenant's device, delivered under an agreement: admins only); null when shown."""


class DeadLetterList(BaseModel):
    items: list[DeadLetterOut]
    complete: bool
    """Whether the reader has caught up with the dead-letter topic (false just after the API
    process started: the list may lack letters it has yet to read)."""
    kept_per_tenant: int
    """How many of each tenant's latest letters the API process keeps."""


def _reader(call: Call) -> DeadLetterSource:
    reader = call.request.app.get(DEAD_LETTERS_KEY)
    if reader is None:
        raise ApiProblem(503, "Dead letters are not served by this instance of the API.")
    reader.ensure_started()
    if reader.failed is not None:
        raise ApiProblem(
            503, "The dead letters cannot be read now. Try again.", headers={"Retry-After": "5"}
        )
    return reader


def _tenant(call: Call) -> str:
    tenant = call.path_param("tenant")
    require_tenant_access(call.registry.view, call.principal, tenant, write=False)
    return tenant


def _out(letter: Letter, tenant: str) -> dict[str, object]:
    return {
        "id": letter.id,
        "tenant": tenant,
        "stage": letter.stage,
        "reason": letter.reason,
        "detail": letter.detail,
        "failed_at": letter.failed_at,
        "device": letter.device_id or letter.device,
        "subscription": letter.subscription,
        "kafka_partition": letter.kafka_partition,
        "kafka_offset": letter.kafka_offset,
        "size": letter.size,
        "sha256": letter.sha256,
        "truncated": letter.preview_cut,
    }


async def list_dead_letters(call: Call) -> web.Response:
    tenant = _tenant(call)
    reader = _reader(call)
    request = call.request
    stage, subscription = query_text(request, "stage"), query_text(request, "subscription")
    limit = min(query_limit(request, DEFAULT_LIMIT), reader.view.per_tenant)
    letters = [
        letter
        for letter in reader.view.letters(
            call.principal, reason=query_text(request, "reason", max_length=64), tenant=tenant
        )
        if (stage is None or letter.stage == stage)
        and (subscription is None or letter.subscription == subscription)
    ]
    answer = DeadLetterList(
        items=[DeadLetterOut.model_validate(_out(letter, tenant)) for letter in letters[:limit]],
        complete=reader.ready,
        kept_per_tenant=reader.view.per_tenant,
    )
    return json_response(answer.model_dump(mode="json"))


async def get_dead_letter(call: Call) -> web.Response:
    tenant = _tenant(call)
    view = _reader(call).view
    letter_id = call.path_param("letter")
    letter = view.get(call.principal, letter_id)
    if letter is None or letter.tenant != tenant:
        raise NotFound(f"dead letter {letter_id!r} not found in tenant {tenant!r}")
    personal = view.personal(letter)
    payload = encoding = withheld = None
    if payload_visible(call.principal, letter, personal):
        kind, text = preview(letter.preview)
        payload, encoding = (
            (text, "utf-8")
            if kind == "text"
            else (base64.b64encode(letter.preview).decode("ascii"), "base64")
        )
    else:
        withheld = "personal" if personal else "shared"
    answer = DeadLetterDetail.model_validate(
        _out(letter, tenant)
        | {"payload": payload, "payload_encoding": encoding, "payload_withheld": withheld}
    )
    return json_response(answer.model_dump(mode="json"))


_LETTER = Param(
    "letter",
    "path",
    {"type": "string", "pattern": LETTER_ID_PATTERN},
    "The letter's id, <partition>-<offset> on the dead-letter topic.",
    required=True,
)

DEAD_LETTER_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/tenants/{tenant}/dead-letters",
        "listDeadLetters",
        "The tenant's latest dead letters, newest first: its devices' (operators) and its "
        "subscriptions' deliveries' (operators and subscribers)",
        "dead-letters",
        list_dead_letters,
        response=DeadLetterList,
        params=(
            TENANT_PARAM,
            Param(
                "stage",
                "query",
                {"type": "string", "enum": list(STAGES)},
                "Only letters of this stage (deliver: a subscription's delivery gave up).",
            ),
            Param(
                "reason",
                "query",
                {"type": "string", "pattern": r"^[a-z_]{1,64}$"},
                "Only letters of this reason (docs/ingest.md lists them).",
            ),
            Param(
                "subscription",
                "query",
                {"type": "string", "pattern": SUBSCRIPTION_ID_PATTERN},
                "Only the letters of this subscription's deliveries.",
            ),
            Param(
                "limit",
                "query",
                {"type": "integer", "minimum": 1, "default": DEFAULT_LIMIT},
                "Letters at most; values above the letters kept per tenant are served as that.",
            ),
        ),
        problems=_READ,
    ),
    Route(
        "GET",
        "/tenants/{tenant}/dead-letters/{letter}",
        "getDeadLetter",
        "One dead letter, with the first bytes of its payload where the caller may see them",
        "dead-letters",
        get_dead_letter,
        response=DeadLetterDetail,
        params=(TENANT_PARAM, _LETTER),
        problems=_READ,
    ),
)

__all__ = [
    "DEAD_LETTERS_KEY",
    "DEAD_LETTER_ROUTES",
    "DeadLetterDetail",
    "DeadLetterList",
    "DeadLetterOut",
    "DeadLetterSource",
]
