"""The dead-letter pages: the latest dead letters by reason, for the tenant's devices (an
operator's) or of every tenant and of unknown devices (an admin's), and one letter with its
detail, the device it concerns (linked to the device page) and its original payload, bounded and
shown as text or hex, escaped, never as HTML.

Read from ``<prefix>.deadletter`` by the API process's ``DeadLetterReader``, started the first
time the page is asked for (``cityhub.streams.deadletters``); who sees which letter, and whose
payload, is ``cityhub.streams.deadletters.view``'s rule: a personal-type device's payload only
to its own tenant's keys (docs/privacy.md), and the page says so.
"""

from __future__ import annotations

from aiohttp import web

from cityhub.schemas.registry import Role
from cityhub.streams.console.pages import ConsolePage, Ctx
from cityhub.streams.deadletters.reader import DeadLetterReader
from cityhub.streams.deadletters.view import payload_visible, preview
from cityhub.streams.service_errors import NotFound, Unavailable

MAX_SHOWN = 200
"""Letters listed on one page (the newest)."""
_ROLES = frozenset({Role.ADMIN, Role.OPERATOR})


def _reader(ctx: Ctx) -> DeadLetterReader:
    reader = ctx.services.dead_letters
    if reader is None:
        raise Unavailable("dead letters are not served by this process")
    reader.ensure_started()
    return reader


async def dead_letter_list(ctx: Ctx) -> web.StreamResponse:
    reader = _reader(ctx)
    who = ctx.who  # an admin or an operator (the page's roles)
    reasons = reader.view.reasons(who)
    reason = ctx.query("reason", 64)
    letters = reader.view.letters(who, reason=reason or None)[:MAX_SHOWN]
    return ctx.render(
        "deadletters.html",
        reader=reader,
        letters=letters,
        reasons=reasons,
        reason=reason,
        per_tenant=reader.view.per_tenant,
        preview_bytes=reader.view.preview_bytes,
    )


async def dead_letter_page(ctx: Ctx) -> web.StreamResponse:
    reader = _reader(ctx)
    letter_id = ctx.request.match_info["letter"][:40]
    letter = reader.view.get(ctx.who, letter_id)
    if letter is None:
        raise NotFound(f"dead letter {letter_id!r} not found")
    personal = reader.view.personal(letter)
    shown = payload_visible(ctx.who, letter, personal)
    kind, text = preview(letter.preview) if shown else ("", "")
    return ctx.render(
        "deadletter.html",
        letter=letter,
        personal=personal,
        shown=shown,
        kind=kind,
        text=text,
    )


PAGES = (
    ConsolePage(
        "GET",
        "/dead-letters",
        dead_letter_list,
        "consoleDeadLetters",
        nav="nav.deadletters",
        roles=_ROLES,
    ),
    ConsolePage("GET", "/dead-letters/{letter}", dead_letter_page, "consoleDeadLetter"),
)
