"""What every open-data route (``cityhub.streams.api.open_data``) answers with, besides its
own document: the published data (404 when the hub publishes none, 503 while it loads) and the
dataset a path names (404 for an unknown one); the licence each answer carries (its
``licence`` field and ``Link: <licence URI>; rel="license"``); the cacheable answer with a
strong ``ETag`` (304 when ``If-None-Match`` names it); and the 400 problem naming the query
parameter that cannot be served.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from cityhub.schemas.open_data import OpenDataset, OpenDataSettings
from cityhub.schemas.quantities import canonical_quantity
from cityhub.schemas.registry import ID_PATTERN
from cityhub.streams.api.bodies import query_text
from cityhub.streams.api.handlers import Call
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.api.route_model import PREFIX
from cityhub.streams.opendata.distributions import OpenDataDistributions
from cityhub.streams.opendata.selection import entity_tag, matches
from cityhub.streams.service_errors import FieldError

OPEN_DATA_KEY = web.AppKey("open_data", OpenDataDistributions)

DATASET_ID = re.compile(ID_PATTERN)
NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
"""An area's or a quantity's name in a query parameter."""
_NAME = re.compile(NAME_PATTERN)


def published(call: Call) -> OpenDataDistributions:
    found = call.request.app.get(OPEN_DATA_KEY)
    if found is None:
        raise ApiProblem(404, "This hub publishes no open data (open_data.enabled is false).")
    if not found.ready:
        raise ApiProblem(
            503,
            "The open data is still being loaded; try again shortly.",
            headers={"Retry-After": "5"},
        )
    return found


def path_dataset(call: Call, data: OpenDataDistributions) -> OpenDataset:
    raw = call.path_param("dataset")
    dataset = data.settings.dataset(raw) if DATASET_ID.fullmatch(raw) else None
    if dataset is None:
        raise ApiProblem(404, "No such dataset; GET /api/v1/open/datasets lists them.")
    return dataset


def api_base(settings: OpenDataSettings) -> str:
    return (settings.base_url or "").rstrip("/") + PREFIX


def licence_field(dataset: OpenDataset) -> dict[str, str]:
    return {"id": dataset.licence.value, "uri": dataset.licence.uri}


def licence_links(*datasets: OpenDataset) -> list[str]:
    uris = dict.fromkeys(d.licence.uri for d in datasets)
    return [f'<{uri}>; rel="license"' for uri in uris]


def cached_json(call: Call, doc: Any, *, max_age: int, links: list[str]) -> web.Response:
    """A JSON answer anyone may cache for ``max_age`` seconds, with a strong ETag; 304 when
    the client's ``If-None-Match`` already names it."""
    body = orjson.dumps(doc)
    return cached_answer(call, body, "application/json", max_age=max_age, links=links)


def cached_answer(
    call: Call,
    body: bytes,
    content_type: str,
    *,
    max_age: int,
    links: list[str],
    extra: dict[str, str] | None = None,
) -> web.Response:
    tag = entity_tag(body)
    headers = {
        "ETag": tag,
        "Cache-Control": f"public, max-age={max_age}",
        "Link": ", ".join(links),
        "Vary": "Accept-Encoding",
    }
    if matches(call.request.headers.get("If-None-Match"), tag):
        return web.Response(status=304, headers=headers)
    headers.update(extra or {})
    headers["Content-Type"] = content_type
    return web.Response(body=body, headers=headers)


def bad_parameter(field: str, why: str) -> ApiProblem:
    return ApiProblem(
        400,
        f"The query parameter {field} cannot be served: {why}.",
        errors=[FieldError(field, why)],
    )


def query_name(call: Call, name: str) -> str | None:
    value = query_text(call.request, name, max_length=64)
    if value is not None and not _NAME.match(value):
        raise bad_parameter(name, "letters, digits, '.', '_' and '-' only; 1 to 64")
    return value


def query_quantity(call: Call) -> str | None:
    """``quantity``, an alias as the catalogue's name (``laeq`` is ``sound_level``)."""
    value = query_name(call, "quantity")
    return canonical_quantity(value) if value is not None else None
