"""Pure: the response headers the NL API Design Rules ask of every response, and the CORS
decisions (which origin may read what), as functions of plain values.

- ``API-Version``: the API's full version (/core/version-header).
- The security headers of /core/transport/security-headers: ``Cache-Control: no-store`` (but
  a handler's own ``Cache-Control: public, ...``, which only open data's answers set),
  ``Content-Security-Policy`` with ``frame-ancestors 'none'`` (a handler's own, stricter policy
  is kept, and gets ``frame-ancestors 'none'`` if it lacks it), ``Strict-Transport-Security``,
  ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, and, for defence in depth,
  ``Referrer-Policy: no-referrer``. A text body's ``Content-Type`` names its charset (UTF-8);
  JSON defines none (RFC 8259), so JSON types are left as they are.
- CORS (/core/transport/cors): an origin on the allow-list gets itself back in
  ``Access-Control-Allow-Origin`` (with ``Vary: Origin``); any other origin gets no CORS header
  at all; the paths every page may read (the OpenAPI document, /core/publish-openapi) get
  ``*``. Preflights name the resource's methods and the request headers the API reads.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from cityhub.schemas.settings import WEB_ORIGIN_PATTERN

API_VERSION_HEADER = "API-Version"

SECURITY_HEADERS: Mapping[str, str] = {
    # Every response may carry a tenant's data or a secret: no cache keeps any of them.
    "Cache-Control": "no-store",
    # Browsers honour it over HTTPS only, which is where a deployment serves the API (TLS ends
    # at its proxy); over plain HTTP on loopback it is ignored and harmless.
    "Strict-Transport-Security": "max-age=31536000",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
"""Set on every response, replacing what a handler set."""

DEFAULT_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
"""Set on every response where the handler set none (the HTML pages set a policy of their own)."""

FRAME_ANCESTORS = "frame-ancestors 'none'"

CORS_ALLOW_HEADERS = (
    "Authorization, Content-Type, If-None-Match, Last-Event-ID, X-API-Key, X-Request-Id"
)
"""The request headers the API reads, which a cross-origin page may send."""
CORS_EXPOSE_HEADERS = (
    "API-Version, Link, Location, Retry-After, WWW-Authenticate, X-Request-Id, Allow, ETag"
)
"""The response headers a cross-origin page may read (beyond the CORS-safelisted ones)."""
CORS_MAX_AGE_SECONDS = 600

_ORIGIN = re.compile(WEB_ORIGIN_PATTERN)


def valid_origin(origin: str) -> bool:
    """Whether ``origin`` is a web origin as browsers send it: ``scheme://host[:port]``,
    lower-case, with no path (no trailing slash) and no wildcard."""
    return _ORIGIN.match(origin) is not None


def charset_content_type(content_type: str | None) -> str | None:
    """``content_type`` with ``; charset=utf-8`` when it is a text type that names none;
    None when nothing is to change."""
    if not content_type:
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not media_type.startswith("text/") or "charset=" in content_type.lower():
        return None
    return f"{content_type}; charset=utf-8"


def rule_headers(existing: Mapping[str, str], *, api_version: str) -> dict[str, str]:
    """The headers to set on a response that already carries ``existing``: the version, the
    security headers, and a charset on a text type."""
    headers = {API_VERSION_HEADER: api_version, **SECURITY_HEADERS}
    cache = existing.get("Cache-Control")
    if cache is not None and cache.split(",", 1)[0].strip().lower() == "public":
        # Open data (no key, the same answer for everyone: cityhub.streams.api.open_data) is
        # meant to be cached; its handler says for how long. Nothing else may say "public".
        del headers["Cache-Control"]
    for name, value in DEFAULT_HEADERS.items():
        if name not in existing:
            headers[name] = value
    policy = existing.get("Content-Security-Policy")
    if policy is not None and "frame-ancestors" not in policy:
        headers["Content-Security-Policy"] = f"{policy.rstrip('; ')}; {FRAME_ANCESTORS}"
    content_type = charset_content_type(existing.get("Content-Type"))
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


def is_trailing_slash(path: str, *, served_as_is: bool) -> bool:
    """Whether a request for ``path`` breaks the no-trailing-slash rule: it ends in ``/``, is not
    the server's root, and no route was registered with that slash (a standard's own root such
    as ``/sta/v1.1/`` may be)."""
    return path.endswith("/") and path != "/" and not served_as_is


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """Who may read the API from a web page of another origin."""

    allowed_origins: frozenset[str] = frozenset()
    """Origins (``https://dashboard.city.example``) whose pages may call every route."""
    open_paths: frozenset[str] = frozenset()
    """Paths any origin may read (``Access-Control-Allow-Origin: *``); one that ends in ``/``
    opens every path under it (the open datasets, ``/api/v1/open/datasets/``)."""

    @classmethod
    def of(cls, origins: Iterable[str], open_paths: Iterable[str] = ()) -> CorsPolicy:
        """A policy over ``origins``; ValueError naming the first that is not an origin."""
        allowed = frozenset(origins)
        for origin in sorted(allowed):
            if not valid_origin(origin):
                raise ValueError(
                    f"{origin!r} is not a web origin: give scheme://host[:port] in lower case, "
                    "without a path, a trailing slash or a wildcard"
                )
        return cls(allowed, frozenset(open_paths))

    def allow_origin(self, origin: str | None, path: str) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for a request from ``origin``, or None for
        no CORS headers at all."""
        if path in self.open_paths or any(
            p.endswith("/") and path.startswith(p) for p in self.open_paths
        ):
            return "*"
        if origin is not None and origin in self.allowed_origins:
            return origin
        return None

    def response_headers(self, origin: str | None, path: str) -> dict[str, str]:
        """CORS headers of an ordinary (not preflight) response."""
        headers: dict[str, str] = {}
        allowed = self.allow_origin(origin, path)
        if allowed is not None:
            headers["Access-Control-Allow-Origin"] = allowed
            headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
        if allowed != "*" and self.allowed_origins:
            # The answer depends on the Origin: a shared cache must not hand it to another.
            headers["Vary"] = "Origin"
        return headers

    def preflight_headers(
        self, origin: str | None, path: str, methods: Collection[str]
    ) -> dict[str, str] | None:
        """The headers of the answer to a preflight for ``path``, whose routes take ``methods``;
        None when the origin may not call it (the answer then carries no CORS header)."""
        allowed = self.allow_origin(origin, path)
        if allowed is None:
            return None
        headers = self.response_headers(origin, path)
        headers["Access-Control-Allow-Methods"] = ", ".join(sorted(methods))
        headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_SECONDS)
        return headers
