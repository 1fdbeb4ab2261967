"""The console's own pages: the landing redirect, sign-in and sign-out, the language switch and
an admin's tenant picker."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from cityhub.schemas.console_settings import CONSOLE_LANGUAGES
from cityhub.schemas.registry import Role
from cityhub.streams.console.app import redirect
from cityhub.streams.console.i18n import LANGUAGE_COOKIE
from cityhub.streams.console.metrics import SIGN_INS, SIGN_OUTS
from cityhub.streams.console.pages import BASE, ConsolePage, Ctx
from cityhub.streams.console.signouts import WRITE_ERRORS, SignOut
from cityhub.streams.registry.principals import KEY_PREFIX
from cityhub.streams.service_errors import NotFound, Unauthenticated

log = logging.getLogger("cityhub.console")

MAX_SECRET_CHARS = 512
LANGUAGE_COOKIE_SECONDS = 365 * 24 * 3600
LANDING = "/devices"
SIGN_OUT_SECONDS = 10.0
"""How long a sign-out waits for Kafka to confirm its record before it says it could not."""


async def index(ctx: Ctx) -> web.StreamResponse:
    return redirect(LANDING)


async def sign_in_form(ctx: Ctx) -> web.StreamResponse:
    if ctx.principal is not None:
        return redirect(LANDING)
    notice = NOTICES.get(ctx.query("notice"))
    return ctx.render("sign_in.html", failed=False, notice=notice)


async def sign_in(ctx: Ctx) -> web.StreamResponse:
    secret = ctx.form_text("key", MAX_SECRET_CHARS + 1)
    if not secret.startswith(KEY_PREFIX) or len(secret) > MAX_SECRET_CHARS:
        SIGN_INS.labels("key", "refused").inc()
        return ctx.render("sign_in.html", status=401, failed=True, notice=None)
    try:
        ctx.principal = ctx.services.registry.authenticate(secret)
    except Unauthenticated:
        SIGN_INS.labels("key", "refused").inc()
        return ctx.render("sign_in.html", status=401, failed=True, notice=None)
    SIGN_INS.labels("key", "ok").inc()
    ctx.session = ctx.session.signed_in(secret, time.time(), ctx.settings.session_seconds)
    return redirect(LANDING)


async def sign_out(ctx: Ctx) -> web.StreamResponse:
    """Record the session as signed out for every API process (Kafka confirms it before the
    answer), then delete this browser's cookie. If the record fails, the cookie still goes, and
    the sign-in page says that copies of it stay valid until the session expires."""
    ctx.signed_out = True
    session = ctx.session
    try:
        record = SignOut(session_id=session.id, expires_at=session.expires_at)
        await asyncio.wait_for(ctx.services.signouts.put(record), SIGN_OUT_SECONDS)
    except WRITE_ERRORS as exc:  # TimeoutError is an OSError
        SIGN_OUTS.labels("unrecorded").inc()
        # Neither the session id nor anything of the cookie: what failed, and what it means.
        log.warning(
            "a console sign-out could not be recorded (%s: %s); that session stays valid in "
            "copies of its cookie until it expires in %.0f s",
            type(exc).__name__,
            exc,
            max(0.0, session.expires_at - time.time()),
        )
        # What ends a copy before it expires: revoking the key it holds; for an OpenID
        # Connect session, which holds none, switching that sign-in off.
        notice = "unrecorded" if session.secret is not None else "unrecorded-oidc"
        return redirect(f"/sign-in?notice={notice}")
    SIGN_OUTS.labels("recorded").inc()
    return redirect("/sign-in?notice=out")


async def choose_language(ctx: Ctx) -> web.StreamResponse:
    language = ctx.form_text("lang", 8)
    back = ctx.form_text("next", 500)
    # Only a path of the console itself: never an open redirect.
    if not back.startswith(BASE + "/") or "//" in back or "\\" in back:
        back = BASE + "/"
    response = web.Response(status=303, headers={"Location": back})
    if language in CONSOLE_LANGUAGES:
        response.set_cookie(
            LANGUAGE_COOKIE,
            language,
            max_age=LANGUAGE_COOKIE_SECONDS,
            path=BASE,
            secure=ctx.request.secure,
            httponly=True,
            samesite="Strict",
        )
    return response


async def choose_tenant(ctx: Ctx) -> web.StreamResponse:
    tenant = ctx.form_text("tenant", 128)
    if tenant not in {t.id for t in ctx.services.registry.list_tenants(ctx.who)}:
        raise NotFound(f"tenant {tenant[:64]!r} not found")
    ctx.session = ctx.session.with_tenant(tenant)
    return redirect(LANDING)


NOTICES = {
    "out": "signin.signed_out",
    "expired": "signin.expired",
    "unrecorded": "signin.signed_out_unrecorded",
    "unrecorded-oidc": "signin.signed_out_unrecorded_oidc",
}
"""What the sign-in page says after ``?notice=``: only these catalogue keys, never the query's
own text."""

PAGES = (
    ConsolePage("GET", "/", index, "consoleIndex"),
    ConsolePage("GET", "/sign-in", sign_in_form, "consoleSignInForm", signed_in=False),
    ConsolePage("POST", "/sign-in", sign_in, "consoleSignIn", signed_in=False),
    ConsolePage("POST", "/sign-out", sign_out, "consoleSignOut"),
    ConsolePage("POST", "/language", choose_language, "consoleLanguage", signed_in=False),
    ConsolePage("POST", "/tenant", choose_tenant, "consoleTenant", roles=frozenset({Role.ADMIN})),
)
