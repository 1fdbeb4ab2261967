"""The parameters and answers of the NGSI-LD API (``cityhub.streams.ngsi_ld.api``): reading
each query parameter into plain values (a ``BadRequestData`` naming it otherwise), the answer's
form by ``Accept`` (the ``@context`` in the body or in a ``Link`` header), and NGSI-LD
ProblemDetails."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import orjson
from aiohttp import web

from cityhub.connectors.ngsi_ld.context import (
    CONTEXT_PATH,
    JSON,
    LD_JSON,
    link_header,
)
from cityhub.connectors.ngsi_ld.models import SDM_TERMS
from cityhub.connectors.ngsi_ld.pattern import PatternRefused, TextPattern, compile_pattern
from cityhub.connectors.ngsi_ld.query import GeoQuery, parse_geo
from cityhub.schemas.errors import InvalidTimestamp
from cityhub.schemas.timefmt import parse_rfc3339

ERRORS: Final = "https://uri.etsi.org/ngsi-ld/errors/"
DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 1000
TIMERELS: Final = ("before", "after", "between")
_TERM_OF_IRI: Final = {iri: term for term, iri in SDM_TERMS.items()} | {
    f"https://uri.etsi.org/ngsi-ld/{term}": term for term in ("status", "location")
}
"""IRI -> term, for the terms cityhub's entities use (the core context's two among them)."""
_DEFAULT_VOCAB: Final = "https://uri.etsi.org/ngsi-ld/default-context/"


class NgsiError(Exception):
    """An answer as an NGSI-LD ProblemDetails."""

    def __init__(self, status: int, name: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.name = name
        self.detail = detail

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        body = {
            "type": ERRORS + self.name if self.name else "about:blank",
            "title": _TITLES.get(self.name, "Error"),
            "status": self.status,
            "detail": self.detail,
        }
        return web.json_response(body, status=self.status, content_type=JSON, headers=headers)


_TITLES: Final = {
    "BadRequestData": "The request includes input data which does not meet the requirements",
    "InvalidRequest": "The request is not well formed",
    "ResourceNotFound": "The referred resource has not been found",
    "TooManyResults": "The query matches too many entities",
    "TooComplexQuery": "The query is too complex to be answered",
    "InternalError": "The history store cannot be read now",
    "": "Not Acceptable",
}


def bad(parameter: str, detail: str) -> NgsiError:
    return NgsiError(400, "BadRequestData", f"{parameter}: {detail}")


# --- the answer's form ------------------------------------------------------------------------


def _weights(accept: str) -> dict[str, float]:
    """Each media range of an ``Accept`` header and its ``q`` (1 when not given; the highest
    when a range comes twice)."""
    weights: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value)))
                except ValueError:
                    q = 0.0
        weights[media.lower()] = max(q, weights.get(media.lower(), 0.0))
    return weights


def wants_ld(request: web.Request) -> bool:
    """True for ``application/ld+json``, False for ``application/json`` (also for ``*/*``,
    ``application/*`` and no ``Accept``), by the ranges' ``q`` (JSON-LD on a tie); 406 when
    the request accepts neither."""
    accept = request.headers.get("Accept", "").strip()
    if not accept:
        return False
    weights = _weights(accept)
    ld = weights.get(LD_JSON, 0.0)
    plain = max(weights.get(r, 0.0) for r in (JSON, "*/*", "application/*"))
    if ld <= 0 and plain <= 0:
        raise NgsiError(406, "", "Accept application/ld+json or application/json.")
    return ld >= plain


def context_url(request: web.Request) -> str:
    """The absolute URL of the context document on the host the request came to."""
    return f"{request.scheme}://{request.host}{CONTEXT_PATH}"


def answer(
    request: web.Request,
    body: dict[str, Any] | list[dict[str, Any]],
    *,
    headers: dict[str, str] | None = None,
) -> web.Response:
    url = context_url(request)
    out_headers = dict(headers or {})
    if wants_ld(request):
        if isinstance(body, list):
            body = [{**doc, "@context": url} for doc in body]
        else:
            body = {**body, "@context": url}
        content_type = LD_JSON
    else:
        out_headers["Link"] = link_header(url)
        content_type = JSON
    return web.Response(
        body=orjson.dumps(body), content_type=content_type, headers=out_headers, status=200
    )


# --- parameters -------------------------------------------------------------------------------


def names(request: web.Request, name: str, *, terms: bool = False) -> list[str] | None:
    """A comma-separated list parameter (None when absent). ``terms``: an item given as an IRI
    (``https://smartdatamodels.org/dataModel.Environment/pm25``, or the core context's default
    vocabulary) is read as cityhub's term for it."""
    raw = request.query.get(name)
    if raw is None:
        return None
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise bad(name, "must name at least one item")
    if terms:
        items = [_TERM_OF_IRI.get(item, item.removeprefix(_DEFAULT_VOCAB)) for item in items]
    return items


def int_param(request: web.Request, name: str, *, low: int, high: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else -1
    if value < low or (high is not None and value > high):
        most = "" if high is None else f" up to {high}"
        raise bad(name, f"must be an integer from {low}{most}")
    return value


def time_param(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return parse_rfc3339(raw)
    except InvalidTimestamp as exc:
        # exc.why: the reason (shape, calendar or range) without echoing the value.
        raise bad(name, f"is not a time this API takes: {exc.why}") from None


def simplified(doc: dict[str, Any]) -> dict[str, Any]:
    """``options=keyValues``: each attribute by its value (a Relationship by its object)."""
    out: dict[str, Any] = {}
    for name, value in doc.items():
        if isinstance(value, dict) and value.get("type") == "Relationship":
            out[name] = value.get("object")
        elif isinstance(value, dict) and "value" in value:
            out[name] = value["value"]
        else:
            out[name] = value
    return out


OPTIONS: Final = ("keyValues", "normalized")
"""The ``options`` cityhub takes: the simplified form, or the normalized one (the default)."""
FORMATS: Final = ("simplified", "normalized")
"""The same as ``format`` (NGSI-LD's newer name)."""


def key_values(request: web.Request) -> bool:
    """Whether the answer is the simplified form: ``options=keyValues`` or
    ``format=simplified``; ``normalized`` (the default) may be asked for too. Anything else, or
    both forms at once, is a ``BadRequestData`` (never quietly the normalized form)."""
    forms: set[str] = set()
    raw = request.query.get("options")
    if raw is not None:
        options = set(raw.split(","))
        if not options <= set(OPTIONS):
            unknown = ", ".join(sorted(repr(o[:40]) for o in options - set(OPTIONS)))
            raise bad("options", f"must be keyValues or normalized, not {unknown}")
        forms |= options
    shape = request.query.get("format")
    if shape is not None:
        if shape not in FORMATS:
            raise bad("format", f"must be simplified or normalized, not {shape[:40]!r}")
        forms.add("keyValues" if shape == "simplified" else shape)
    if len(forms) > 1:
        raise bad("options", "asks for both the simplified and the normalized form")
    return forms == {"keyValues"}


def count_param(request: web.Request) -> bool:
    """``count``: true or false (default false)."""
    raw = request.query.get("count")
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise bad("count", f"must be true or false, not {raw[:40]!r}")


def id_pattern_param(request: web.Request) -> TextPattern | None:
    """The ``idPattern``, compiled for matching in linear time (``compile_pattern``)."""
    raw = request.query.get("idPattern")
    if raw is None:
        return None
    try:
        return compile_pattern(raw)
    except PatternRefused as exc:
        raise bad("idPattern", str(exc)) from None


def geo_query(request: web.Request) -> GeoQuery | None:
    georel = request.query.get("georel")
    if georel is None:
        return None
    geoproperty = request.query.get("geoproperty", "location")
    if geoproperty != "location":
        raise bad("geoproperty", "cityhub's entities have one GeoProperty: location")
    return parse_geo(georel, request.query.get("geometry"), request.query.get("coordinates"))


def time_range(request: web.Request) -> tuple[datetime | None, datetime | None]:
    timerel = request.query.get("timerel")
    time_at = time_param(request, "timeAt")
    end_time_at = time_param(request, "endTimeAt")
    if timerel is None:
        if time_at is not None or end_time_at is not None:
            raise bad("timerel", "is required with timeAt")
        return None, None
    if timerel not in TIMERELS:
        raise bad("timerel", "must be before, after or between")
    if time_at is None:
        raise bad("timeAt", f"is required with timerel={timerel}")
    if timerel == "before":
        return None, time_at
    if timerel == "after":
        return time_at, None
    if end_time_at is None:
        raise bad("endTimeAt", "is required with timerel=between")
    if end_time_at <= time_at:
        raise bad("endTimeAt", "must be after timeAt")
    return time_at, end_time_at
