"""What a console page handler sees (``Ctx``) and how a page is declared (``ConsolePage``).

To add a page: write an ``async def handler(ctx: Ctx) -> web.StreamResponse`` that renders a
template with ``ctx.render``, list it as a ``ConsolePage`` in its family's ``PAGES`` (with a
``nav`` catalogue key if it belongs in the menu), add the family to
``cityhub.streams.console.routes.PAGES`` and its strings to ``cityhub.streams.console.i18n``.
Authorisation is the services': a handler calls them with ``ctx.principal`` and ``ctx.tenant``,
exactly as the API does, and their NotFound/Forbidden/Invalid become the console's error pages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from cityhub.schemas.console_settings import ConsoleSettings
from cityhub.schemas.registry import Role
from cityhub.streams.console.i18n import Translate
from cityhub.streams.console.session import Session
from cityhub.streams.registry.principals import Principal

if TYPE_CHECKING:
    from cityhub.streams.console.services import ConsoleServices

BASE = "/console"

Handler = Callable[["Ctx"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ConsolePage:
    """One route of the console: ``path`` under ``/console``, its handler, and its menu entry."""

    method: str
    path: str
    handler: Handler
    name: str
    nav: str | None = None
    """The catalogue key of its entry in the main menu; None: not in the menu."""
    signed_in: bool = True
    """False only for the sign-in page itself (and the static files)."""
    roles: frozenset[Role] = frozenset(Role)
    """Who may open it (and whose menu shows it); the others get a 403 page. The services still
    decide what each may do on the pages they may open."""
    max_body_bytes: int = 64 * 1024
    """A POST's largest body (a form; an upload page raises it)."""


@dataclass(frozen=True, slots=True)
class NavEntry:
    href: str
    label: str
    current: bool


@dataclass(slots=True)
class Ctx:
    """One console request, as a page handler sees it."""

    request: web.Request
    services: ConsoleServices
    settings: ConsoleSettings
    env: jinja2.Environment
    session: Session
    language: str
    t: Translate
    nav: tuple[ConsolePage, ...]
    assets_built: bool
    principal: Principal | None = None
    form: Mapping[str, Any] | None = None
    """The POSTed form, read (and its CSRF token checked) before the handler runs."""
    signed_out: bool = False
    """Set by the sign-out page: the session cookie is deleted."""

    @property
    def who(self) -> Principal:
        """The signed-in principal (the middleware lets only signed-in requests reach a page
        that needs one)."""
        assert self.principal is not None
        return self.principal

    @property
    def tenant(self) -> str:
        """The tenant the page works in: the key's own, or, for an admin, the one chosen."""
        who = self.who
        if who.role is Role.ADMIN and self.session.tenant:
            return self.session.tenant
        return who.tenant

    def form_text(self, name: str, max_chars: int = 1000) -> str:
        """A form field's text (stripped; empty if absent), cut at ``max_chars``."""
        if self.form is None:
            return ""
        value = self.form.get(name, "")
        return value.strip()[:max_chars] if isinstance(value, str) else ""

    def query(self, name: str, max_chars: int = 200) -> str:
        return self.request.query.get(name, "").strip()[:max_chars]

    def render(self, template: str, *, status: int = 200, **values: object) -> web.Response:
        """The page ``template`` (autoescaped) with the layout's values and ``values``."""
        page = self.env.get_template(template)
        text = page.render(
            t=self.t,
            lang=self.language,
            base=BASE,
            principal=self.principal,
            tenant=self.tenant if self.principal is not None else None,
            csrf=self.session.csrf,
            nav=self.nav_entries(),
            assets_built=self.assets_built,
            tenants=self._tenants(),
            path=self.request.path,
            oidc_enabled=self.settings.oidc.enabled,
            **values,
        )
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    def nav_entries(self) -> list[NavEntry]:
        if self.principal is None:
            return []
        path = self.request.path
        return [
            NavEntry(BASE + page.path, self.t(page.nav), _is_current(path, BASE + page.path))
            for page in self.nav
            if page.nav is not None and self.principal.role in page.roles
        ]

    def _tenants(self) -> list[str]:
        if self.principal is None or self.principal.role is not Role.ADMIN:
            return []
        return [tenant.id for tenant in self.services.registry.list_tenants(self.principal)]


def _is_current(path: str, href: str) -> bool:
    return path == href or path.startswith(href.rstrip("/") + "/")


def see_other(path: str) -> web.HTTPSeeOther:
    """A 303 to a console path (after a POST: the browser GETs the result)."""
    return web.HTTPSeeOther(BASE + path)
