"""The console's own pages: the landing redirect, sign-in and sign-out, the language switch and
an admin's tenant picker."""

from __future__ import annotations

import time

from aiohttp import web

from cityhub.schemas.console_settings import CONSOLE_LANGUAGES
from cityhub.schemas.registry import Role
from cityhub.streams.console.app import redirect
from cityhub.streams.console.i18n import LANGUAGE_COOKIE
from cityhub.streams.console.metrics import SIGN_INS
from cityhub.streams.console.pages import BASE, ConsolePage, Ctx
from cityhub.streams.registry.principals import KEY_PREFIX
from cityhub.streams.service_errors import NotFound, Unauthenticated

MAX_SECRET_CHARS = 512
LANGUAGE_COOKIE_SECONDS = 365 * 24 * 3600
LANDING = "/devices"


async def index(ctx: Ctx) -> web.StreamResponse:
    return redirect(LANDING)


async def sign_in_form(ctx: Ctx) -> web.StreamResponse:
    if ctx.principal is not None:
        return redirect(LANDING)
    notice = {"out": "signin.signed_out", "expired": "signin.expired"}.get(ctx.query("notice"))
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
    ctx.signed_out = True
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


PAGES = (
    ConsolePage("GET", "/", index, "consoleIndex"),
    ConsolePage("GET", "/sign-in", sign_in_form, "consoleSignInForm", signed_in=False),
    ConsolePage("POST", "/sign-in", sign_in, "consoleSignIn", signed_in=False),
    ConsolePage("POST", "/sign-out", sign_out, "consoleSignOut"),
    ConsolePage("POST", "/language", choose_language, "consoleLanguage", signed_in=False),
    ConsolePage("POST", "/tenant", choose_tenant, "consoleTenant", roles=frozenset({Role.ADMIN})),
)
