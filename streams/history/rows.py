"""Pure: canonical observations and aggregates (the JSON on Kafka) as rows of the history store.

Each function takes a record's bytes and returns the row's values in the order of the writer's
staging table (``OBSERVATION_COLUMNS``, ``AGGREGATE_COLUMNS``), or raises a ``MessageError``
saying why the record cannot be stored (it is then dead-lettered, never retried). Everything
PostgreSQL would refuse (a malformed uuid or time, a NUL character in a text) is refused here,
so one bad record never fails the batch it came in.

A sealed personal observation (``sealed`` set, ``data_subject`` named) keeps only its sealed
document: its value and location columns are NULL whatever the document says, so nothing of the
person's readings is ever stored in clear (``docs/history.md``, "Personal data").
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from cityhub.schemas.errors import InvalidTimestamp, MalformedJSON, SchemaMismatch
from cityhub.schemas.timefmt import parse_rfc3339

OBSERVATION_COLUMNS = (
    "event_id",
    "observed_at",
    "received_at",
    "tenant",
    "device_id",
    "device_type",
    "quantity",
    "unit",
    "value_number",
    "value_text",
    "value_boolean",
    "area",
    "longitude",
    "latitude",
    "altitude",
    "classification",
    "data_subject",
    "doc",
)
"""The staging table's columns: the table's, with the point as longitude and latitude."""

AGGREGATE_COLUMNS = (
    "aggregate_id",
    "window_start",
    "window_end",
    "window_size",
    "group_kind",
    "group_key",
    "tenant",
    "device_id",
    "area",
    "quantity",
    "unit",
    "classification",
    "count",
    "min",
    "max",
    "sum",
    "mean",
    "last",
    "last_observed_at",
    "revision",
    "readings",
    "flagged",
    "expected",
    "coverage",
    "doc",
)

Values = tuple[Any, ...]

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class Row:
    """One record as a row: its key in the table, the time that picks its partition, and the
    values in the staging table's column order."""

    key: str
    """The event id, or the aggregate id (one per window, whatever the revision)."""
    at: datetime
    """``observed_at`` or ``window_start``: the partition key."""
    values: Values
    revision: int = 0
    """Aggregates: the revision; the highest of an id is the current one."""


def _document(raw: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SchemaMismatch(f"a JSON {type(doc).__name__}, not an object")
    if b"\\u0000" in raw and _holds_nul(doc):
        # PostgreSQL's text and jsonb cannot hold U+0000; checked deeply only when the bytes
        # have the escape at all (almost never), so the common path pays one bytes search.
        raise SchemaMismatch("a string holds U+0000, which PostgreSQL cannot store")
    return doc


def _holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


def _text(doc: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = doc.get(name)
    if value is None:
        if required:
            raise SchemaMismatch(f"{name} is missing")
        return None
    if not isinstance(value, str):
        raise SchemaMismatch(f"{name} is a {type(value).__name__}, not a string")
    if required and not value:
        raise SchemaMismatch(f"{name} is empty")
    return value


def _uuid(doc: dict[str, Any], name: str) -> str:
    text = doc.get(name)
    if not isinstance(text, str):
        raise SchemaMismatch(f"{name} is missing or not a string")
    if _CANONICAL_UUID.fullmatch(text):
        return text  # the form cityhub writes: no need to parse it
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise SchemaMismatch(f"{name} is not a uuid") from None


def _time(doc: dict[str, Any], name: str) -> tuple[str, datetime]:
    text = doc.get(name)
    if text is None:
        raise SchemaMismatch(f"{name} is missing")
    try:
        return text, parse_rfc3339(text)
    except InvalidTimestamp as exc:
        raise SchemaMismatch(f"{name}: {exc}") from None


def _number(doc: dict[str, Any], name: str, *, required: bool = True) -> float | None:
    value = doc.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SchemaMismatch(f"{name} is not a number")
    return float(value)


def _integer(doc: dict[str, Any], name: str, *, bits: int = 32) -> int:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaMismatch(f"{name} is not an integer")
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise SchemaMismatch(f"{name} is out of range for a {bits}-bit integer")
    return value


def _optional_integer(doc: dict[str, Any], name: str) -> int | None:
    return None if doc.get(name) is None else _integer(doc, name, bits=64)


def _coordinates(location: object) -> tuple[float | None, float | None, float | None]:
    """(longitude, latitude, altitude) of an observation's location; Nones when it has none."""
    if location is None:
        return None, None, None
    if not isinstance(location, dict):
        raise SchemaMismatch("location is not an object")
    lat = _number(location, "latitude")
    lon = _number(location, "longitude")
    if lat is None or lon is None or not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise SchemaMismatch("location is outside -90..90 latitude, -180..180 longitude")
    return lon, lat, _number(location, "altitude", required=False)


def observation_row(raw: bytes) -> Row:
    """The ``observations`` row of one canonical observation (``cityhub.observations``)."""
    doc = _document(raw)
    event_id = _uuid(doc, "event_id")
    observed_text, observed_at = _time(doc, "observed_at")
    received_text, _ = _time(doc, "received_at")
    data_subject = _text(doc, "data_subject")
    sealed = doc.get("sealed") is not None or data_subject is not None
    number: float | None = None
    text: str | None = None
    boolean: bool | None = None
    lon = lat = altitude = None
    if not sealed:
        value = doc.get("value")
        # bool before int: True is an int to Python, but a boolean reading to everyone else.
        if isinstance(value, bool):
            boolean = value
        elif isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            text = value
        elif value is not None:
            raise SchemaMismatch(f"value is a {type(value).__name__}")
        lon, lat, altitude = _coordinates(doc.get("location"))
    values = (
        event_id,
        observed_text,
        received_text,
        _text(doc, "tenant"),
        _text(doc, "device_id", required=True),
        _text(doc, "device_type"),
        _text(doc, "quantity", required=True),
        _text(doc, "unit"),
        number,
        text,
        boolean,
        _text(doc, "area"),
        lon,
        lat,
        altitude,
        _text(doc, "classification"),
        data_subject,
        raw.decode("utf-8"),
    )
    return Row(event_id, observed_at, values)


_GROUPINGS = frozenset({"device", "area"})


def aggregate_row(raw: bytes) -> Row:
    """The ``aggregates`` row of one window aggregate (``cityhub.aggregates``)."""
    doc = _document(raw)
    aggregate_id = _uuid(doc, "aggregate_id")
    start_text, window_start = _time(doc, "window_start")
    end_text, window_end = _time(doc, "window_end")
    if window_end <= window_start:
        raise SchemaMismatch("window_end is not after window_start")
    grouping = _text(doc, "grouping", required=True)
    if grouping not in _GROUPINGS:
        raise SchemaMismatch(f"grouping is neither device nor area: {grouping!r:.40}")
    last_text, _ = _time(doc, "last_observed_at")
    revision = _integer(doc, "revision")
    counted = doc.get("count") != 0
    values = (
        aggregate_id,
        start_text,
        end_text,
        _integer(doc, "window_size"),
        grouping,
        _text(doc, "key", required=True),
        _text(doc, "tenant"),
        _text(doc, "device_id"),
        _text(doc, "area"),
        _text(doc, "quantity", required=True),
        _text(doc, "unit"),
        _text(doc, "classification"),
        _integer(doc, "count", bits=64),
        # Null when every reading was flagged and kept out (aggregation.exclude_flagged).
        _number(doc, "min", required=counted),
        _number(doc, "max", required=counted),
        _number(doc, "sum", required=counted),
        _number(doc, "mean", required=counted),
        _number(doc, "last"),
        last_text,
        revision,
        # Absent from version 2 documents (written before coverage).
        _optional_integer(doc, "readings"),
        _optional_integer(doc, "flagged"),
        _number(doc, "expected", required=False),
        _number(doc, "coverage", required=False),
        raw.decode("utf-8"),
    )
    return Row(aggregate_id, window_start, values, revision)


def unique_events(rows: Iterable[Row]) -> list[Row]:
    """The rows with one per event id (the first): a replayed observation is the same one."""
    seen: dict[str, Row] = {}
    for row in rows:
        seen.setdefault(row.key, row)
    return list(seen.values())


def current_revisions(rows: Iterable[Row]) -> list[Row]:
    """One row per aggregate id, the highest revision (on a tie, the later one): one statement
    may not update a row twice, and only the current revision is kept anyway."""
    latest: dict[str, Row] = {}
    for row in rows:
        held = latest.get(row.key)
        if held is None or row.revision >= held.revision:
            latest[row.key] = row
    return list(latest.values())
