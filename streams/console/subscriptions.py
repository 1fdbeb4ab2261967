"""The subscriptions page: a subscriber's own (an admin's of every tenant), each with its state,
lag, delivery rate and failures, and pause, resume and replay (POSTs with the session's CSRF
token, through the same ``Subscriptions`` service the API calls, so every rule is the API's).

The figures come from the ``subscription-status`` topic that the delivery processes write every
few seconds (``cityhub.streams.delivery.status_publisher``), followed by the API process
(``ConsoleServices.subscription_status``); each row says how old its figures are. Kafka-topic
and live-stream subscriptions are read by the subscriber's own client: no delivery process
reports them.
"""

from __future__ import annotations

import re
import time

from aiohttp import web
from pydantic import ValidationError

from cityhub.schemas.registry import Role
from cityhub.schemas.replay import ReplaySpec
from cityhub.schemas.subscription import (
    SUBSCRIPTION_ID_PATTERN,
)
from cityhub.streams.console.app import redirect
from cityhub.streams.console.pages import ConsolePage, Ctx
from cityhub.streams.delivery.status_view import subscription_row
from cityhub.streams.registry.spec_errors import field_errors
from cityhub.streams.service_errors import FieldError, Invalid, Unavailable
from cityhub.streams.subscriptions.service import MANAGING_ROLES, Subscriptions

MAX_ROWS = 1000
"""Subscriptions one page shows (an admin's of every tenant could be many more)."""
_DONE = {"paused": "subs.paused_done", "resumed": "subs.resumed_done", "replay": "subs.replay_done"}


async def subscription_list(ctx: Ctx) -> web.StreamResponse:
    service = ctx.services.subscriptions
    who = ctx.who
    if service is None or who.role not in MANAGING_ROLES:
        refusal = "subs.not_allowed" if service is not None else "error.503"
        return ctx.render("subscriptions.html", rows=[], message=refusal, done=None, all=False)
    if who.role is Role.ADMIN:
        tenants = [t.id for t in ctx.services.registry.list_tenants(who)]
    else:
        tenants = [who.tenant]
    statuses = ctx.services.subscription_status
    now = time.time()
    records = [record for tenant in tenants for record in service.list(who, tenant)]
    rows = [
        subscription_row(record, statuses.of(record.tenant, record.id) if statuses else None, now)
        for record in records[:MAX_ROWS]
    ]
    done_key = _DONE.get(ctx.query("done", 16))
    # The notice names the subscription only by an id of the right shape: never text from the
    # address that merely looks like a message.
    done_id = ctx.query("id", 63)
    if done_key is None or not re.fullmatch(SUBSCRIPTION_ID_PATTERN, done_id):
        done = None
    else:
        done = ctx.t(done_key, id=done_id)
    message: str | None = None if statuses is not None else "subs.status_unavailable"
    if len(records) > MAX_ROWS:
        message = "subs.cut"
    return ctx.render(
        "subscriptions.html",
        rows=rows,
        message=message,
        done=done,
        all=who.role is Role.ADMIN,
    )


def _service(ctx: Ctx) -> Subscriptions:
    service = ctx.services.subscriptions
    if service is None:
        raise Unavailable("subscriptions are not served by this process")
    return service


def _target(ctx: Ctx) -> tuple[str, str]:
    info = ctx.request.match_info
    return info["tenant"][:63], info["id"][:63]


def _back(action: str, subscription_id: str) -> web.Response:
    return redirect(f"/subscriptions?done={action}&id={subscription_id}")


async def pause(ctx: Ctx) -> web.StreamResponse:
    service = _service(ctx)
    tenant, subscription_id = _target(ctx)
    record = await service.pause(ctx.who, tenant, subscription_id)
    return _back("paused", record.id)


async def resume(ctx: Ctx) -> web.StreamResponse:
    service = _service(ctx)
    tenant, subscription_id = _target(ctx)
    record = await service.resume(ctx.who, tenant, subscription_id)
    return _back("resumed", record.id)


def replay_spec(from_time: str, from_offset: str) -> ReplaySpec:
    """The replay a form asks for; Invalid naming the field otherwise (never 422)."""
    doc: dict[str, object] = {}
    if from_time:
        doc["from_time"] = from_time
    if from_offset:
        # ASCII digits only (int() also takes '١٢' and '1_0'), and no more than a Kafka offset.
        if not (from_offset.isascii() and from_offset.isdigit() and len(from_offset) <= 18):
            raise Invalid(
                "The replay is not valid: give a time or an offset.",
                errors=[
                    FieldError("from_offset", "expected an offset: 0 or more, 18 digits at most")
                ],
            )
        doc["from_offset"] = int(from_offset)
    try:
        return ReplaySpec.model_validate(doc)
    except ValidationError as exc:
        raise Invalid(
            "The replay is not valid: give a time or an offset.", errors=field_errors(exc)
        ) from None


async def replay(ctx: Ctx) -> web.StreamResponse:
    service = _service(ctx)
    tenant, subscription_id = _target(ctx)
    spec = replay_spec(ctx.form_text("from_time", 64), ctx.form_text("from_offset", 32))
    record = await service.replay(ctx.who, tenant, subscription_id, spec)
    return _back("replay", record.id)


_ROLES = frozenset({Role.ADMIN, Role.SUBSCRIBER})

PAGES = (
    ConsolePage(
        "GET",
        "/subscriptions",
        subscription_list,
        "consoleSubscriptions",
        nav="nav.subscriptions",
        roles=_ROLES,
    ),
    ConsolePage("POST", "/subscriptions/{tenant}/{id}/pause", pause, "consoleSubscriptionPause"),
    ConsolePage("POST", "/subscriptions/{tenant}/{id}/resume", resume, "consoleSubscriptionResume"),
    ConsolePage("POST", "/subscriptions/{tenant}/{id}/replay", replay, "consoleSubscriptionReplay"),
)
