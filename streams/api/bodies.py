"""Reading what a request carries: capped bodies, JSON into a model, query parameters.

Each helper raises ``ApiProblem`` with the status a client can act on: 413 for a body over the
cap (checked on ``Content-Length`` before reading, and again while reading a chunked body), 415
for a content type the route does not take, 400 for bytes that are not JSON and for values that
do not validate (each named in ``errors``: the NL API Design Rules' invalid input).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from cityhub.schemas.errors import InvalidTimestamp
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.api.problems import ApiProblem, field_errors
from cityhub.streams.registry.paging import MAX_PAGE_SIZE
from cityhub.streams.service_errors import FieldError
from cityhub.streams.unique_json import DuplicateMember, TooDeep, loads_unique

M = TypeVar("M", bound=BaseModel)

JSON = "application/json"


def _too_large(cap: int) -> ApiProblem:
    return ApiProblem(
        413,
        f"The request body is larger than {cap} bytes, the most this route accepts; "
        "split it into smaller requests.",
    )


def require_content_type(request: web.Request, accepted: Collection[str]) -> str:
    """The request's media type if the route accepts it; ApiProblem(415) naming those it does."""
    media_type = request.content_type.lower()  # aiohttp drops parameters such as charset
    if media_type not in accepted:
        sent = request.headers.get("Content-Type") or "no Content-Type"
        raise ApiProblem(
            415,
            f"This route takes {' or '.join(sorted(accepted))}, not {sent[:100]}.",
            headers={"Accept-Post": ", ".join(sorted(accepted))},
        )
    return media_type


async def read_capped(
    request: web.Request, cap: int, *, too_large: Callable[[int], Exception] = _too_large
) -> bytes:
    """The whole body, at most ``cap`` bytes; ``too_large(cap)`` (by default ApiProblem(413))
    past it, without reading a body whose declared length is already too large."""
    declared = request.content_length
    if declared is not None and declared > cap:
        raise too_large(cap)
    body = bytearray()
    try:
        async for chunk in request.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > cap:
                raise too_large(cap)
    except web.HTTPRequestEntityTooLarge as exc:  # aiohttp's own client_max_size
        raise too_large(cap) from exc
    return bytes(body)


def parse_json(body: bytes) -> object:
    """The JSON value of ``body``; ApiProblem(400) saying where it breaks if it is not JSON, or
    which member an object names twice (``cityhub.streams.unique_json``)."""
    if not body.strip():
        raise ApiProblem(400, "The request body is empty; send a JSON document.")
    try:
        return loads_unique(body)
    except orjson.JSONDecodeError as exc:
        raise ApiProblem(
            400, f"The request body is not valid JSON (UTF-8): {exc.msg} at character {exc.pos}."
        ) from exc
    except (DuplicateMember, TooDeep) as exc:
        raise ApiProblem(400, f"The request body is refused: {exc}.") from None


async def read_model(request: web.Request, model: type[M], cap: int) -> M:
    """The JSON body validated as ``model``: 415, 413 or 400 (naming each field) otherwise."""
    require_content_type(request, {JSON})
    doc = parse_json(await read_capped(request, cap))
    if not isinstance(doc, dict):
        raise ApiProblem(
            400,
            "The request body must be a JSON object.",
            errors=[FieldError("(body)", "expected a JSON object")],
        )
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise ApiProblem(
            400,
            "The request body is not valid; see errors for each field to fix.",
            errors=field_errors(exc),
        ) from exc


def query_limit(request: web.Request, default: int) -> int:
    """``limit`` as a positive integer, capped at the registry's largest page."""
    raw = request.query.get("limit")
    if raw is None:
        return default
    # ASCII digits only: int() also takes Arabic-Indic digits, '1_0' and ' 10 '.
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else 0
    if value < 1:
        raise ApiProblem(
            400,
            "The query parameter limit must be a positive integer.",
            errors=[FieldError("limit", f"expected an integer from 1 to {MAX_PAGE_SIZE}")],
        )
    return min(value, MAX_PAGE_SIZE)


def query_bool(request: web.Request, name: str) -> bool | None:
    """A boolean query parameter (``true``/``false``, also ``1``/``0``), or None if absent."""
    raw = request.query.get(name)
    if raw is None:
        return None
    match raw.strip().lower():
        case "true" | "1":
            return True
        case "false" | "0":
            return False
    raise ApiProblem(
        400,
        f"The query parameter {name} must be true or false.",
        errors=[FieldError(name, "expected true or false")],
    )


def query_text(request: web.Request, name: str, *, max_length: int = 256) -> str | None:
    """A free-text query parameter, or None if absent or empty; 400 naming it when it is too
    long or holds a character that is not printable (NUL, other controls, line separators,
    bidirectional overrides): no id, area, name or cursor has one, and a store may refuse it
    (PostgreSQL's text cannot hold NUL) as if it had failed."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_length:
        raise ApiProblem(
            400,
            f"The query parameter {name} is too long.",
            errors=[FieldError(name, f"at most {max_length} characters")],
        )
    if not raw.isprintable():
        raise ApiProblem(
            400,
            f"The query parameter {name} holds a control or other non-printable character.",
            errors=[FieldError(name, "printable characters only")],
        )
    return raw


def query_time(request: web.Request, name: str) -> datetime | None:
    """An RFC 3339 query parameter (the project's time gate), or None if absent or empty; 400
    naming it otherwise, without echoing the value. Not capped here: the time gate bounds what
    it parses, and the request line is capped by aiohttp."""
    raw = request.query.get(name)
    if not raw:
        return None
    # An unencoded '+' of an offset arrives as a space: past the date and time it can only be one.
    text = raw[:19] + raw[19:].replace(" ", "+")
    try:
        return parse_rfc3339(text)
    except InvalidTimestamp as exc:
        # exc.why, not exc.detail: problem documents never echo an input value.
        raise ApiProblem(
            400,
            f"The query parameter {name} is not a time this API takes: {exc.why}.",
            errors=[FieldError(name, exc.why)],
        ) from None
