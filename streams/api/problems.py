"""RFC 9457 problem responses: how every error of the API reaches the client.

``ApiProblem`` is raised by handlers and helpers for HTTP-level faults (bad JSON, wrong content
type, a body too large); the services' errors (``ServiceError``, ``streams/service_errors.py``)
and pydantic's ``ValidationError`` are turned into the same shape by
:func:`problem_from_exception`. Nothing here puts an input value into a message: a rejected value
may be a secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from cityhub.streams.service_errors import FieldError, ServiceError

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://cityhub.example/problems/"

_TYPES: dict[int, str] = {
    400: "invalid-input",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    500: "internal-error",
    503: "unavailable",
}

_TITLES: dict[int, str] = {
    400: "Invalid input",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem_type(status: int) -> str:
    """The stable ``type`` URI of a status, or ``about:blank`` for one without its own page."""
    slug = _TYPES.get(status)
    return PROBLEM_BASE + slug if slug else "about:blank"


class ApiProblem(Exception):  # it is a problem document, not an "Error"
    """An HTTP-level fault, answered as a problem document with ``status``."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = tuple(errors)
        self.headers = dict(headers or {})


def field_errors(exc: ValidationError, *, prefix: str = "") -> list[FieldError]:
    """Each failed field of a pydantic error as a dotted path and a message a person can act on;
    never pydantic's repr of the input (it may hold a secret such as an app key)."""
    result = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        path = ".".join(str(part) for part in err["loc"])
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        message = str(err["msg"])
        # pydantic prefixes our validators' ValueErrors; the message alone says it better.
        message = message.removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field; remove it (see the OpenAPI document for the fields)"
        elif err["type"] == "missing":
            message = "required field is missing"
        result.append(FieldError(field=path or "(body)", message=message))
    return result


def shown_path(path: str) -> str:
    """``path`` as an answer may repeat it: a data subject's id (the segment after
    ``data-subjects``) as ``{subject}``, matched route or not; a refused id may be a citizen
    number, and no answer repeats it."""
    parts = path.split("/")
    return "/".join(
        "{subject}" if part and i > 0 and parts[i - 1] == "data-subjects" else part
        for i, part in enumerate(parts)
    )


def problem_response(
    status: int,
    detail: str,
    instance: str,
    *,
    errors: Sequence[FieldError] = (),
    title: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> web.Response:
    """A complete ``application/problem+json`` response."""
    doc: dict[str, Any] = {
        "type": problem_type(status),
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors:
        doc["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    if extra:
        doc.update(extra)
    return web.Response(
        status=status,
        body=orjson.dumps(doc),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def problem_from_exception(exc: Exception, instance: str) -> web.Response | None:
    """The problem response for a known error, or None for one that is a bug (a 500)."""
    if isinstance(exc, ApiProblem):
        headers = dict(exc.headers)
        if exc.status == 401:
            headers.setdefault("WWW-Authenticate", 'Bearer realm="cityhub"')
        return problem_response(
            exc.status, exc.detail, instance, errors=exc.errors, headers=headers
        )
    if isinstance(exc, ServiceError):
        headers = {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="cityhub"'
        elif exc.status == 503:
            headers["Retry-After"] = "5"
        return problem_response(
            exc.status,
            exc.detail,
            instance,
            errors=exc.errors,
            title=exc.title,
            headers=headers,
        )
    if isinstance(exc, ValidationError):
        return problem_response(
            400,
            "The request body is not valid; see errors for each field to fix.",
            instance,
            errors=field_errors(exc),
        )
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        return _http_exception_problem(exc, instance)
    return None


def _http_exception_problem(exc: web.HTTPException, instance: str) -> web.Response:
    status = exc.status
    headers: dict[str, str] = {}
    if status == 404:
        detail = f"No such resource: {instance}. The API's routes are in /api/v1/openapi.json."
    elif status == 405:
        allowed = sorted(getattr(exc, "allowed_methods", ()) or ())
        detail = f"{exc.method if hasattr(exc, 'method') else 'This method'} is not allowed here"
        if allowed:
            detail += f"; use {', '.join(allowed)}"
            headers["Allow"] = ", ".join(allowed)
        detail += "."
    elif status == 413:
        detail = "The request body is larger than this server accepts."
    else:
        detail = exc.reason or _TITLES.get(status, "Error")
    return problem_response(status, detail, instance, headers=headers)
