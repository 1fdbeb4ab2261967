"""The operator console's aiohttp sub-application: ``build_console(services, settings, kek)``,
mounted by the API at ``/console/`` (``docs/console.md``).

Promises, for every console page:
- the session lives only in a sealed cookie (``cityhub.streams.console.session``): HttpOnly,
  SameSite=Strict, Secure over https, path ``/console``, expiring after
  ``console.session_seconds``; the API key it holds is never rendered, put in a URL or logged,
  and is checked against the registry on every request (a revoked key signs the browser out);
- a signed-out session stays signed out in every API process: its id is on the sign-out topic
  (``cityhub.streams.console.signouts``), and a cookie with that id opens no session; while this
  process's view of that topic is not ready, or has not caught up with it for
  ``signouts.MAX_STALENESS_S`` (Kafka unreachable), a signed-in cookie gets a 503 page (fail
  closed: never served unchecked) and is left as it is;
- a page that needs a signed-in key sends anyone else to the sign-in page (303);
- every POST is checked: its ``Origin`` (when sent) must be this host, ``Sec-Fetch-Site`` must
  not be cross-site, its body at most the page's cap, and its ``csrf`` field the session's
  token; else a 403 page and nothing changes;
- the services' NotFound, Forbidden, Invalid and Conflict are pages with that status (another
  tenant's device is a 404 here as in the API);
- every response carries a strict Content-Security-Policy: scripts and styles from the console
  itself only (no inline script or style), images also from the map's tile host.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
import markupsafe
from aiohttp import web
from aiohttp.typedefs import Handler as AiohttpHandler

from cityhub.schemas.console_settings import ConsoleSettings
from cityhub.schemas.plain_text import shown
from cityhub.schemas.registry import Role
from cityhub.streams.console.i18n import LANGUAGE_COOKIE, choose_language, translator
from cityhub.streams.console.oidc_flow import principal_key_id
from cityhub.streams.console.pages import BASE, ConsolePage, Ctx
from cityhub.streams.console.services import ConsoleServices
from cityhub.streams.console.session import COOKIE_NAME, Session, SessionCodec
from cityhub.streams.console.signouts import current
from cityhub.streams.registry.principals import Principal
from cityhub.streams.service_errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    ServiceError,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger("cityhub.console")

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
VENDOR = STATIC / "third-party"
VENDOR_FILES = ("htmx.min.js", "leaflet.js", "leaflet.css")
"""What ``make console-assets`` copies from the npm packages (deploy/console)."""

_STATUS: dict[type[ServiceError], int] = {
    NotFound: 404,
    Forbidden: 403,
    Invalid: 400,
    Conflict: 409,
    Unavailable: 503,
}


@dataclass(frozen=True, slots=True)
class Console:
    services: ConsoleServices
    settings: ConsoleSettings
    codec: SessionCodec
    env: jinja2.Environment
    pages: tuple[ConsolePage, ...]
    csp: str

    @property
    def assets_built(self) -> bool:
        return all((VENDOR / name).is_file() for name in VENDOR_FILES)


CONSOLE_KEY = web.AppKey("console", Console)


def content_security_policy(settings: ConsoleSettings) -> str:
    """The console's policy: nothing inline, nothing foreign but the map's tiles."""
    images = "'self' data:"
    if settings.map_tile_url is not None:
        tiles = urlsplit(settings.map_tile_url.replace("{s}", "a"))
        images += f" {tiles.scheme}://{tiles.netloc}"
    forms = "'self'"
    if settings.oidc.authorization_endpoint is not None:
        # The operators' sign-in form is answered with a redirect to the provider, which
        # form-action governs too.
        provider = urlsplit(settings.oidc.authorization_endpoint)
        forms += f" {provider.scheme}://{provider.netloc}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src {images}; connect-src 'self'; form-action {forms}; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


def _readable(value: object) -> object:
    """What a template prints: text as a person may be shown it (``plain_text.shown``: a
    bidirectional override or control character stored before the rule refused it, an
    uploaded file's name, shows as its escape); the templates' own markup as it is."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return shown(value)
    return value


def template_environment() -> jinja2.Environment:
    """Every template autoescaped, every printed text readable as itself (``_readable``); an
    undefined value is an error, not an empty string."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_readable,
    )


def build_console(
    services: ConsoleServices,
    settings: ConsoleSettings,
    kek: bytes,
    pages: tuple[ConsolePage, ...] | None = None,
) -> web.Application:
    """The console's sub-application (mount it at ``/console``), its session cookies sealed
    with a key derived from ``kek``; ``pages`` default to every page of the console."""
    if pages is None:
        from cityhub.streams.console.routes import PAGES

        pages = PAGES
    app = web.Application(middlewares=[_headers])
    console = Console(
        services=services,
        settings=settings,
        codec=SessionCodec(kek),
        env=template_environment(),
        pages=pages,
        csp=content_security_policy(settings),
    )
    app[CONSOLE_KEY] = console
    for page in pages:
        app.router.add_route(page.method, page.path, _endpoint(page), name=page.name)
    app.router.add_static("/static", STATIC, name="static")
    app.on_cleanup.append(_close_live)
    if settings.oidc.enabled:
        from cityhub.streams.console.oidc_pages import OIDC_KEY, IdTokens

        app[OIDC_KEY] = IdTokens(settings.oidc)
    if not console.assets_built:
        log.warning(
            "the console's vendor assets are missing from %s: run `make console-assets`", VENDOR
        )
    return app


async def _close_live(app: web.Application) -> None:
    live = app[CONSOLE_KEY].services.live
    if live is not None:
        await live.close()


@web.middleware
async def _headers(request: web.Request, handler: AiohttpHandler) -> web.StreamResponse:
    response = await handler(request)
    response.headers["Content-Security-Policy"] = request.app[CONSOLE_KEY].csp
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Vary"] = "Cookie, Accept-Language"
    return response


def redirect(path: str) -> web.Response:
    """A 303 to a console path (returned, not raised, so that its cookies are kept)."""
    return web.Response(status=303, headers={"Location": BASE + path})


def _endpoint(page: ConsolePage) -> AiohttpHandler:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        console = request.app[CONSOLE_KEY]
        ctx, fresh = _context(request, console)
        if _signed_in(ctx.session) and not current(console.services.signouts, time.time()):
            # Not ready to tell whether it was signed out: refused, its cookie kept for later.
            unready = _error(ctx, 503, "error.signouts_unready")
            unready.headers["Retry-After"] = "5"
            return unready
        opened = ctx.session
        response = await _respond(page, ctx)
        if ctx.signed_out:
            response.del_cookie(COOKIE_NAME, path=BASE)
        elif fresh or ctx.session != opened:
            _set_session(response, request, console, ctx.session)
        return response

    endpoint.__name__ = page.name
    return endpoint


def _signed_in(session: Session) -> bool:
    return session.secret is not None or session.oidc is not None


def _open_session(request: web.Request, console: Console, now: float) -> tuple[Session, bool]:
    """The cookie's session, or a new anonymous one (True) where there is none or it was signed
    out, in this browser or in the one the cookie was copied from."""
    session = console.codec.open(request.cookies.get(COOKIE_NAME, ""), now)
    if session is not None and not console.services.signouts.view.signed_out(session.id):
        return session, False
    return Session.anonymous(now, console.settings.session_seconds), True


def session_principal(
    services: ConsoleServices, settings: ConsoleSettings, session: Session
) -> Principal | None:
    """Whom a signed-in session acts for; None once that no longer holds (a revoked key, a
    tenant gone, OpenID Connect sign-in switched off)."""
    if session.secret is not None:
        try:
            return services.registry.authenticate(session.secret)
        except Unauthenticated:
            return None
    if session.oidc is not None:
        subject, tenant = session.oidc
        # An operator of the provider, in a tenant that (still) exists; OIDC sign-in off: out.
        if settings.oidc.enabled and services.registry.view.tenant(tenant):
            return Principal(principal_key_id(subject), tenant, Role.OPERATOR)
    return None


def _context(request: web.Request, console: Console) -> tuple[Ctx, bool]:
    """The request's context, and whether its session is new (its cookie to be set). While the
    sign-out view is not ready, a signed-in session is left as it is, without a principal."""
    now = time.time()
    session, fresh = _open_session(request, console, now)
    principal = None
    if _signed_in(session) and current(console.services.signouts, now):
        principal = session_principal(console.services, console.settings, session)
        if principal is None:  # a revoked key, a tenant gone, OIDC switched off: signed out
            session, fresh = Session.anonymous(now, console.settings.session_seconds), True
    language = choose_language(
        request.cookies.get(LANGUAGE_COOKIE),
        request.headers.get("Accept-Language"),
        console.settings.default_language,
    )
    ctx = Ctx(
        request=request,
        services=console.services,
        settings=console.settings,
        env=console.env,
        session=session,
        language=language,
        t=translator(language),
        nav=console.pages,
        assets_built=console.assets_built,
        principal=principal,
    )
    return ctx, fresh


async def _respond(page: ConsolePage, ctx: Ctx) -> web.StreamResponse:
    if page.signed_in and ctx.principal is None:
        if ctx.request.method == "GET":
            return redirect("/sign-in")
        return _error(ctx, 403, "error.csrf")
    if ctx.principal is not None and ctx.principal.role not in page.roles:
        # A page of another role, asked for by its address (the menu does not offer it).
        roles = " / ".join(sorted(role.value for role in page.roles))
        message = ctx.t("error.role_page", roles=roles)
        return ctx.render("error.html", status=403, message=message, detail=None, errors=[])
    if ctx.request.method == "POST":
        refusal = await _check_post(page, ctx)
        if refusal is not None:
            return refusal
    try:
        return await page.handler(ctx)
    except Unauthenticated:
        return redirect("/sign-in")
    except ServiceError as exc:
        status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 400)
        return _error(ctx, status, f"error.{status}" if status != 409 else "error.400", exc)


async def _check_post(page: ConsolePage, ctx: Ctx) -> web.Response | None:
    """A refusal page unless the POST comes from this console's own form."""
    request = ctx.request
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        return _error(ctx, 403, "error.csrf")
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in {"same-origin", "none"}:
        return _error(ctx, 403, "error.csrf")
    if (request.content_length or 0) > page.max_body_bytes:
        return _error(ctx, 413, "error.400")
    try:
        ctx.form = await request.post()
    except (ValueError, web.HTTPException):
        return _error(ctx, 400, "error.400")
    token = ctx.form.get("csrf")
    if not isinstance(token, str) or not _same(token, ctx.session.csrf):
        return _error(ctx, 403, "error.csrf")
    return None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _error(ctx: Ctx, status: int, message: str, exc: ServiceError | None = None) -> web.Response:
    # The service's own detail names what was wrong (never a secret); shown beside the message.
    detail = exc.detail[:500] if exc is not None else None
    errors = [(e.field, e.message) for e in exc.errors][:50] if exc is not None else []
    return ctx.render(
        "error.html", status=status, message=ctx.t(message), detail=detail, errors=errors
    )


def _set_session(
    response: web.StreamResponse, request: web.Request, console: Console, session: Session
) -> None:
    response.set_cookie(
        COOKIE_NAME,
        console.codec.seal(session),
        max_age=max(0, int(session.expires_at - time.time())),
        path=BASE,
        secure=request.secure,
        httponly=True,
        samesite="Strict",
    )
