"""The open-data routes (``/open/...``): no key, rate-limited per client address like every
keyless call (``cityhub.streams.api.throttle``), cacheable, and each answer with its licence.

- ``GET /open/datasets`` and ``/open/datasets/{dataset}``: what is published, under which
  licence, and the links to its windows, files, stream and the catalogue;
- ``GET /open/datasets/{dataset}/windows``: the windows of a time range (at most
  ``MAX_RANGE_DAYS`` days; default the last day), filtered by area and quantity, paged by
  cursor; ``ETag`` and ``If-None-Match`` (304); recent days from memory, older from the files;
- ``GET /open/datasets/{dataset}/files`` and ``.../files/{file}``: the daily CSV and Parquet
  files (a complete day is cacheable for a day);
- ``GET /open/stream``: newly published windows as Server-Sent Events
  (``cityhub.streams.opendata.stream``).

Every success carries ``Link: <licence URI>; rel="license"`` and a ``licence`` field (the
files: the header). Bad input is a 400 problem naming the parameter, an unknown dataset or day
a 404; a file name is parsed into a date, never joined to a path. What every route answers
with (the lookups, the licence, the cacheable answer, the 400) is in
``cityhub.streams.api.open_data_answers``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from cityhub.schemas.open_data import OpenDataset, OpenDataSettings, OpenWindow
from cityhub.schemas.registry import ID_PATTERN
from cityhub.streams.api.bodies import query_limit, query_text, query_time
from cityhub.streams.api.handlers import Call
from cityhub.streams.api.open_data_answers import (
    DATASET_ID,
    NAME_PATTERN,
    api_base,
    bad_parameter,
    cached_answer,
    cached_json,
    licence_field,
    licence_links,
    path_dataset,
    published,
    query_name,
    query_quantity,
)
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.api.route_model import PREFIX, Param, Route
from cityhub.streams.opendata.files import CSV, FORMATS, PARQUET, parse_file_name
from cityhub.streams.opendata.selection import (
    MAX_CURSOR_LENGTH,
    MAX_RANGE_DAYS,
    BadSelection,
    page,
    selection,
)
from cityhub.streams.opendata.stream import StreamFilter
from cityhub.streams.service_errors import FieldError

CATALOG_PATH = "/open/catalog"
"""The catalogue's route (``cityhub.streams.api.catalogue``), linked from every dataset."""
OPEN_DATA_CORS_PATHS = (
    f"{PREFIX}/open/datasets",
    f"{PREFIX}/open/datasets/",
    f"{PREFIX}/open/stream",
)
"""What any web page may read (``Access-Control-Allow-Origin: *``): these routes only read, need
no key and answer everyone the same (a path ending in ``/``: every path under it)."""
COMPLETE_DAY_MAX_AGE = 24 * 3600
"""``max-age`` of a complete day's file: it can change no more."""
FILE_PAGE_SIZE = 100


class OpenDatasetOut(BaseModel):
    """Documentation only: a dataset as the open API lists it."""

    model_config = {"extra": "allow"}
    id: str
    title: str
    description: str
    licence: dict[str, str]
    quantities: list[str]
    window_seconds: int
    links: dict[str, str]


class OpenDatasetList(BaseModel):
    """Documentation only: the published datasets."""

    items: list[OpenDatasetOut]
    next_cursor: str | None


class OpenWindowList(BaseModel):
    """Documentation only: a page of published windows (``cityhub.schemas.open_data``)."""

    model_config = {"extra": "allow"}
    dataset: str
    licence: dict[str, str]
    items: list[dict[str, Any]]
    next_cursor: str | None


class OpenFileList(BaseModel):
    """Documentation only: a dataset's daily files, newest first."""

    model_config = {"extra": "allow"}
    dataset: str
    licence: dict[str, str]
    items: list[dict[str, Any]]
    next_cursor: str | None


# --- the dataset document ----------------------------------------------------------------------


def _dataset_doc(settings: OpenDataSettings, dataset: OpenDataset) -> dict[str, Any]:
    base = api_base(settings)
    own = f"{base}/open/datasets/{dataset.id}"
    return {
        "id": dataset.id,
        "title": dataset.title,
        "description": dataset.description,
        "licence": licence_field(dataset),
        "theme": dataset.theme,
        "keywords": list(dataset.keywords),
        "quantities": list(dataset.quantities),
        "window_seconds": dataset.window_seconds,
        "min_devices_per_window": settings.k,
        "links": {
            "self": own,
            "windows": f"{own}/windows",
            "files": f"{own}/files",
            "stream": f"{base}/open/stream?dataset={dataset.id}",
            "catalog": f"{base}{CATALOG_PATH}",
        },
    }


# --- handlers ----------------------------------------------------------------------------------


async def list_datasets(call: Call) -> web.Response:
    data = published(call)
    datasets = data.settings.datasets
    doc = {"items": [_dataset_doc(data.settings, d) for d in datasets], "next_cursor": None}
    return cached_json(
        call, doc, max_age=data.settings.cache_seconds, links=licence_links(*datasets)
    )


async def get_dataset(call: Call) -> web.Response:
    data = published(call)
    dataset = path_dataset(call, data)
    return cached_json(
        call,
        _dataset_doc(data.settings, dataset),
        max_age=data.settings.cache_seconds,
        links=licence_links(dataset),
    )


async def list_windows(call: Call) -> web.Response:
    data = published(call)
    dataset = path_dataset(call, data)
    request = call.request
    try:
        chosen = selection(
            dataset.id,
            start=query_time(request, "from"),
            end=query_time(request, "to"),
            now=datetime.fromtimestamp(data.now(), UTC),
            area=query_name(call, "area"),
            quantity=query_quantity(call),
            cursor=query_text(request, "cursor", max_length=MAX_CURSOR_LENGTH),
            limit=query_limit(request, 100),
        )
    except BadSelection as exc:
        raise bad_parameter(exc.field, exc.why) from None
    if chosen.quantity is not None and chosen.quantity not in dataset.quantities:
        raise bad_parameter(
            "quantity", f"not a quantity of this dataset ({', '.join(dataset.quantities)})"
        )
    # Day by day, in order (the order starts with the window's start, so each day's windows
    # follow the last day's), until one more than a page: a page reads no more days than it
    # needs, and a filter is applied while an old day's file is read.
    windows: list[OpenWindow] = []
    after_day = date.fromisoformat(chosen.after[0][:10]) if chosen.after is not None else None
    for day in chosen.days():
        if after_day is not None and day < after_day:
            continue
        found = await data.windows_of_day(
            dataset.id, day, area=chosen.area, quantity=chosen.quantity
        )
        windows.extend(w for w in found if chosen.admits(w))
        if len(windows) > chosen.limit:
            break
    items, next_cursor = page(windows, chosen)
    links = licence_links(dataset)
    if next_cursor is not None:
        links.insert(0, f'<{request.rel_url.update_query(cursor=next_cursor)}>; rel="next"')
    doc = {
        "dataset": dataset.id,
        "licence": licence_field(dataset),
        "from": chosen.start_text,
        "to": chosen.end_text,
        "items": [w.public() for w in items],
        "next_cursor": next_cursor,
    }
    return cached_json(call, doc, max_age=data.settings.cache_seconds, links=links)


async def list_files(call: Call) -> web.Response:
    data = published(call)
    dataset = path_dataset(call, data)
    request = call.request
    limit = query_limit(request, FILE_PAGE_SIZE)
    cursor = query_text(request, "cursor", max_length=16)
    before: date | None = None
    if cursor is not None:
        try:
            before = date.fromisoformat(cursor)
        except ValueError:
            raise bad_parameter("cursor", "not a cursor of this API") from None
    days = [d for d in reversed(data.file_days(dataset.id)) if before is None or d < before]
    shown = days[:limit]
    next_cursor = shown[-1].isoformat() if len(days) > limit else None
    own = f"{api_base(data.settings)}/open/datasets/{dataset.id}/files"
    items = [
        {
            "day": day.isoformat(),
            "complete": data.day_complete(day),
            "csv": f"{own}/{day.isoformat()}.csv",
            "parquet": f"{own}/{day.isoformat()}.parquet",
        }
        for day in shown
    ]
    links = licence_links(dataset)
    if next_cursor is not None:
        links.insert(0, f'<{request.rel_url.update_query(cursor=next_cursor)}>; rel="next"')
    doc = {
        "dataset": dataset.id,
        "licence": licence_field(dataset),
        "items": items,
        "next_cursor": next_cursor,
    }
    return cached_json(call, doc, max_age=data.settings.cache_seconds, links=links)


async def get_file(call: Call) -> web.Response:
    data = published(call)
    dataset = path_dataset(call, data)
    parsed = parse_file_name(call.path_param("file"))
    if parsed is None:
        raise ApiProblem(404, "No such file: files are named YYYY-MM-DD.csv or YYYY-MM-DD.parquet.")
    day, fmt = parsed
    body = await data.read_file(dataset.id, day, fmt)
    if body is None:
        raise ApiProblem(404, f"No {fmt} file of {day.isoformat()} for this dataset.")
    max_age = COMPLETE_DAY_MAX_AGE if data.day_complete(day) else data.settings.cache_seconds
    return cached_answer(
        call,
        body,
        FORMATS[fmt],
        max_age=max_age,
        links=licence_links(dataset),
        extra={
            "Content-Disposition": f'attachment; filename="{dataset.id}-{day.isoformat()}.{fmt}"'
        },
    )


def _last_event_id(call: Call) -> int | None:
    raw = call.request.headers.get("Last-Event-ID", "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise ApiProblem(
            400,
            "Last-Event-ID must be the id of an event of this stream (ASCII digits).",
            errors=[FieldError("Last-Event-ID", "expected the id the stream sent, e.g. 42")],
        )
    return int(raw)


async def stream_windows(call: Call) -> web.StreamResponse:
    # throttle imports the OpenAPI document, which imports the route table, which imports us.
    from cityhub.streams.api.throttle import client_network

    data = published(call)
    request = call.request
    dataset_id = query_text(request, "dataset", max_length=64)
    datasets = data.settings.datasets
    if dataset_id is not None:
        found = data.settings.dataset(dataset_id) if DATASET_ID.fullmatch(dataset_id) else None
        if found is None:
            raise ApiProblem(
                404,
                "No such dataset; GET /api/v1/open/datasets lists them.",
                errors=[FieldError("dataset", "not a published dataset")],
            )
        datasets = (found,)
    chosen = StreamFilter(dataset_id, query_name(call, "area"), query_quantity(call))
    return await data.streams.serve(
        request,
        client_network(request.remote),
        chosen,
        last_event_id=_last_event_id(call),
        headers={"Link": ", ".join(licence_links(*datasets))},
    )


# --- the routes --------------------------------------------------------------------------------

DATASET = Param(
    "dataset", "path", {"type": "string", "pattern": ID_PATTERN}, "The dataset's id.", required=True
)
FILE = Param(
    "file",
    "path",
    {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}\.(csv|parquet)$"},
    "The day's file: YYYY-MM-DD.csv or YYYY-MM-DD.parquet (UTC days).",
    required=True,
)
AREA = Param(
    "area",
    "query",
    {"type": "string", "pattern": NAME_PATTERN, "maxLength": 64},
    "Only this area's windows (other-areas: the merged small areas).",
)
QUANTITY = Param(
    "quantity",
    "query",
    {"type": "string", "pattern": NAME_PATTERN, "maxLength": 64},
    "Only this quantity's windows.",
)
LIMIT = Param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "default": 100},
    "Items per page; values above 1000 are served as 1000.",
)
CURSOR = Param(
    "cursor",
    "query",
    {"type": "string", "maxLength": MAX_CURSOR_LENGTH},
    "The next_cursor of the previous page (also in its Link header); absent for the first.",
)
FROM = Param(
    "from",
    "query",
    {"type": "string", "format": "date-time"},
    "Windows that start at or after this RFC 3339 time (default: a day before to).",
)
TO = Param(
    "to",
    "query",
    {"type": "string", "format": "date-time"},
    "Windows that start before this RFC 3339 time (default: the next whole minute); at most "
    f"{MAX_RANGE_DAYS} days after from.",
)
STREAM_DATASET = Param(
    "dataset",
    "query",
    {"type": "string", "pattern": ID_PATTERN},
    "Only this dataset's windows.",
)

_TAG = "open-data"

OPEN_DATA_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/open/datasets",
        "listOpenDatasets",
        "List the open datasets, their licences and links (no key)",
        _TAG,
        list_datasets,
        response=OpenDatasetList,
        public=True,
        headers=("Link",),
        cacheable=True,
    ),
    Route(
        "GET",
        "/open/datasets/{dataset}",
        "getOpenDataset",
        "Read an open dataset's description (no key)",
        _TAG,
        get_dataset,
        response=OpenDatasetOut,
        params=(DATASET,),
        problems=(404,),
        public=True,
        headers=("Link",),
        cacheable=True,
    ),
    Route(
        "GET",
        "/open/datasets/{dataset}/windows",
        "listOpenWindows",
        "List an open dataset's published windows (no key; cacheable, ETag)",
        _TAG,
        list_windows,
        response=OpenWindowList,
        params=(DATASET, FROM, TO, AREA, QUANTITY, LIMIT, CURSOR),
        problems=(404,),
        public=True,
        headers=("Link",),
        cacheable=True,
    ),
    Route(
        "GET",
        "/open/datasets/{dataset}/files",
        "listOpenFiles",
        "List an open dataset's daily CSV and Parquet files (no key)",
        _TAG,
        list_files,
        response=OpenFileList,
        params=(DATASET, LIMIT, CURSOR),
        problems=(404,),
        public=True,
        headers=("Link",),
        cacheable=True,
    ),
    Route(
        "GET",
        "/open/datasets/{dataset}/files/{file}",
        "getOpenFile",
        "Download a daily file: CSV (text/csv) or Parquet (application/vnd.apache.parquet)",
        _TAG,
        get_file,
        params=(DATASET, FILE),
        problems=(404,),
        headers=("Link", "Content-Disposition"),
        media_type=FORMATS[CSV],
        other_media_types=(FORMATS[PARQUET],),
        public=True,
        cacheable=True,
    ),
    Route(
        "GET",
        "/open/stream",
        "streamOpenData",
        "Newly published windows as Server-Sent Events (no key; capped per address)",
        _TAG,
        stream_windows,
        params=(STREAM_DATASET, AREA, QUANTITY),
        problems=(404,),
        headers=("Link",),
        media_type="text/event-stream",
        public=True,
    ),
)
