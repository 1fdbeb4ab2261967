"""The NL API Design Rules at run time, for every response of the API process: ``install(app)``.

Promises, for the app it is installed on and every sub-app or route added to it later (the
SensorThings and NGSI-LD services too):

- every response, errors included (aiohttp's own 404, 405 and 413, the key and rate-limit
  refusals, a 500) and live streams, carries ``API-Version`` (the OpenAPI document's
  ``info.version``) and the security headers of ``cityhub.streams.api.adr_headers``;
- a path with a trailing slash answers 404 (a problem document, never a redirect), unless it is
  a service root (``SERVICE_ROOTS``, which the rule exempts) or a route was registered with that
  slash;
- CORS after ``CorsPolicy``: a preflight (``OPTIONS`` with ``Origin`` and
  ``Access-Control-Request-Method``) from an allowed origin is answered 204 before any key is
  asked for, one from another origin 403 without CORS headers; ordinary responses carry the
  CORS headers the policy gives their origin.

The query parameters of cityhub's own routes are checked by ``check_query`` (every fault in one
400) from the app's endpoint, once the caller is known.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from cityhub.streams.api.adr_headers import CorsPolicy, is_trailing_slash, rule_headers
from cityhub.streams.api.problems import ApiProblem, shown_path
from cityhub.streams.api.query_rules import QueryParam, query_errors

CORS_POLICY_KEY = web.AppKey("cors_policy", CorsPolicy)
API_VERSION_KEY = web.AppKey("api_version", str)

SERVICE_ROOTS = frozenset({"/api/v1/", "/sta/v1.1/", "/ngsi-ld/v1/"})
"""The service roots of the API process's three APIs (cityhub's, SensorThings', NGSI-LD's) with
their slash: the no-trailing-slash rule exempts a service root, and clients of the standards
often write theirs so (a test keeps these in step with the services' own constants)."""


def check_query(params: Iterable[QueryParam], request: web.Request) -> None:
    """ApiProblem(400) listing every fault of the request's query against ``params``."""
    errors = query_errors(params, request.query.items())
    if errors:
        raise ApiProblem(
            400,
            "The query is not valid; errors names each parameter to fix.",
            errors=errors,
        )


def _methods(request: web.Request) -> set[str]:
    """The methods the routes of the request's path take (aiohttp resolved the path)."""
    match = request.match_info
    error = match.http_exception
    if isinstance(error, web.HTTPMethodNotAllowed):
        return set(error.allowed_methods)
    resource = match.route.resource
    if resource is None:
        return set()
    return {route.method for route in resource if route.method != "*"}


def _served_with_slash(request: web.Request) -> bool:
    if request.path in SERVICE_ROOTS:
        return True
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical.endswith("/")


@web.middleware
async def design_rules(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The trailing-slash rule and CORS preflights, before keys and rate limits."""
    path = request.path
    if is_trailing_slash(path, served_as_is=_served_with_slash(request)):
        raise ApiProblem(
            404,
            f"No such resource: paths never end in a slash; try {shown_path(path).rstrip('/')}.",
        )
    if (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    ):
        methods = _methods(request)
        if not methods:
            raise web.HTTPNotFound()
        policy = request.config_dict[CORS_POLICY_KEY]
        headers = policy.preflight_headers(request.headers["Origin"], path, methods)
        if headers is None:
            raise ApiProblem(
                403,
                "This origin may not call the API from a browser; the hub's operators allow "
                "origins with CITYHUB_HTTP__CORS_ALLOWED_ORIGINS.",
            )
        return web.Response(status=204, headers=headers)
    return await handler(request)


async def _rule_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Add the version, security and CORS headers to a response about to be sent."""
    app = request.config_dict
    response.headers.update(rule_headers(response.headers, api_version=app[API_VERSION_KEY]))
    origin = request.headers.get("Origin")
    for name, value in app[CORS_POLICY_KEY].response_headers(origin, request.path).items():
        if name == "Vary" and "Vary" in response.headers:
            if value not in response.headers["Vary"]:
                response.headers["Vary"] = f"{response.headers['Vary']}, {value}"
        elif name not in response.headers:
            response.headers[name] = value


def install(app: web.Application, *, api_version: str, cors: CorsPolicy) -> Middleware:
    """Put the version, security and CORS headers on every response of ``app`` (and of its
    sub-apps), and return the middleware of the trailing-slash rule and CORS preflights, for
    the app's middleware list (after the one that answers errors as problem documents)."""
    app[API_VERSION_KEY] = api_version
    app[CORS_POLICY_KEY] = cors
    app.on_response_prepare.append(_rule_headers)
    return design_rules
