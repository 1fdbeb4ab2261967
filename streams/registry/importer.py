"""Bulk device import: a CSV or JSON body becomes one parsed row per device, valid or not.

Pure: bytes in, ``DeviceSpec``s and ``FieldError``s out, no I/O. The registry then creates the
valid rows and reports the bad ones (``Registry.import_devices``); the HTTP API and the CLI share
this parser, so a file that imports with one imports with the other.

CSV follows The Things Stack's end device CSV (``;`` or ``,`` separated, header row, unknown
columns ignored, ``id`` falling back to ``eui-<dev_eui>``) and adds cityhub's own columns: ``type``,
``area``, ``tags``, ``latitude``, ``longitude``, ``altitude``, ``active`` and ``network`` (the
device's network-server binding in its short form, ``tts:<application>[@<tenant>]`` or
``chirpstack:<application UUID>``). The TTS columns that cityhub has no use for (frequency plan,
versions, session keys...) are accepted and dropped.

JSON is an array of objects shaped like ``DeviceSpec``, or of The Things Stack's end devices as
its JSON exports carry them (``ttn-lw-cli end-devices list``: ``ids{device_id, dev_eui,
application_ids{application_id}}``, ``name``, ``locations.user``, ``root_keys.app_key.key``):
such a device is bound to its TTS application (and to the ``tts_tenant`` given to the import,
since the export does not name the tenant); cityhub's own fields beside TTS's (``type``,
``area``, ``tags``, ``active``, ``network``, ``location``) win over what is read from TTS's.

Errors that concern one row are returned for that row; a body that cannot be read at all (not
UTF-8, no header, not an array, too many rows) raises ``Invalid`` naming the problem.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from annotated_types import Ge, Le
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from cityhub.schemas.registry import (
    MAX_TAGS,
    DeviceSpec,
    Location,
    NetworkBinding,
    NetworkServer,
    network_binding_fields,
    normalise_dev_eui,
)
from cityhub.streams.service_errors import FieldError, Invalid

MAX_IMPORT_ROWS: Final = 100_000
"""Most data rows one import may carry; a bigger file is refused whole (split it)."""


class TooManyRows(Invalid):
    """An import with more than ``max_rows`` data rows (refused whole; the caller may name its
    own limit)."""

    def __init__(self, detail: str, *, max_rows: int) -> None:
        super().__init__(detail)
        self.max_rows = max_rows


CSV_CONTENT_TYPES: Final = frozenset({"text/csv", "application/csv", "text/plain"})
JSON_CONTENT_TYPES: Final = frozenset({"application/json"})

Row = DeviceSpec | Sequence[FieldError]
"""One parsed row: a valid spec, or the reasons it is not one."""

# Column name (lower-case) -> the name cityhub reads it as. TTS's own alias (``app_eui`` for
# ``join_eui``) and a few spellings spreadsheets tend to carry.
_ALIASES: Final = {
    "app_eui": "join_eui",
    "device_id": "id",
    "lat": "latitude",
    "lon": "longitude",
    "lng": "longitude",
    "alt": "altitude",
    "device_type": "type",
    "type_id": "type",
}

CITYHUB_COLUMNS: Final = (
    "type",
    "area",
    "tags",
    "latitude",
    "longitude",
    "altitude",
    "active",
    "network",
)
"""Columns cityhub adds to The Things Stack's."""

TTS_USED_COLUMNS: Final = ("id", "dev_eui", "join_eui", "name", "app_key")
"""The Things Stack's columns cityhub reads (``join_eui`` is only checked, not kept)."""

TTS_DROPPED_COLUMNS: Final = (
    "description",
    "frequency_plan_id",
    "lorawan_version",
    "lorawan_phy_version",
    "brand_id",
    "model_id",
    "hardware_version",
    "firmware_version",
    "band_id",
    "nwk_key",
    "rx1_delay",
    "supports_32_bit_f_cnt",
    "dev_addr",
    "app_s_key",
    "f_nwk_s_int_key",
    "last_f_cnt_up",
    "last_n_f_cnt_down",
    "last_a_f_cnt_down",
    "supports_class_c",
    "vendor_id",
    "vendor_profile_id",
)
"""The Things Stack's columns that mean nothing to cityhub: recognised, silently dropped."""

_KNOWN_COLUMNS: Final = frozenset(TTS_USED_COLUMNS + CITYHUB_COLUMNS + TTS_DROPPED_COLUMNS)
_SECRET_FIELDS: Final = frozenset({"app_key", "nwk_key", "app_s_key", "f_nwk_s_int_key"})

_TAG_SPLIT: Final = re.compile(r"[|\s]+")
_EUI: Final = re.compile(r"^[0-9a-fA-F]{16}$")
_TRUE: Final = frozenset({"true", "yes", "y", "1", "on"})
_FALSE: Final = frozenset({"false", "no", "n", "0", "off"})


@dataclass(frozen=True, slots=True)
class ParsedImport:
    """A parsed import body: the rows for ``Registry.import_devices`` and what a report needs to
    point a person at each of them."""

    rows: list[Row]
    lines: list[int]
    """Where each row starts: its line in the CSV file, or its 1-based position in the array."""
    ids: list[str | None]
    """Each row's device id, when it has one (also for rows with errors)."""
    ignored_columns: tuple[str, ...] = ()
    """CSV header columns cityhub does not know, in header order (not TTS's dropped ones)."""


def parse_import(
    body: bytes,
    content_type: str,
    *,
    default_type: str | None = None,
    max_rows: int = MAX_IMPORT_ROWS,
    tts_tenant: str | None = None,
) -> list[Row]:
    """One entry per data row of ``body``, in order: a valid ``DeviceSpec``, or the field errors
    that say why the row is not one.

    ``content_type`` is a media type (``text/csv``, ``application/json``; parameters such as
    ``charset=utf-8`` allowed). ``default_type`` is the device type of rows that name none (The
    Things Stack's exports have no ``type`` column). Raises ``Invalid`` when the body cannot be
    read as a whole: unknown content type, not UTF-8, no CSV header or no id column, no type
    column without a default type, not a JSON array, more than ``max_rows`` rows, a
    ``tts_tenant`` that is not a TTS tenant id. ``tts_tenant`` is the TTS tenant that The Things
    Stack's JSON end devices are bound to with their application (None: a single-tenant TTS).
    """
    return read_import(
        body, content_type, default_type=default_type, max_rows=max_rows, tts_tenant=tts_tenant
    ).rows


def read_import(
    body: bytes,
    content_type: str,
    *,
    default_type: str | None = None,
    max_rows: int = MAX_IMPORT_ROWS,
    tts_tenant: str | None = None,
) -> ParsedImport:
    """``parse_import`` with each row's source line and id, for reports that name the row."""
    if tts_tenant is not None:
        _check_tts_tenant(tts_tenant)
    media_type, charset = _media_type(content_type)
    if charset not in (None, "utf-8", "utf8", "us-ascii"):
        raise Invalid(f"unsupported charset {charset!r}: send the file as UTF-8")
    text = _decode(body)
    if media_type in CSV_CONTENT_TYPES:
        return _read_csv(text, default_type=default_type, max_rows=max_rows)
    if media_type in JSON_CONTENT_TYPES or media_type.endswith("+json"):
        return _read_json(text, default_type=default_type, max_rows=max_rows, tts_tenant=tts_tenant)
    raise Invalid(
        f"unsupported content type {content_type!r}: send text/csv or application/json",
    )


def content_type_for(filename: str) -> str:
    """The content type ``parse_import`` expects for a file of this name (JSON or CSV)."""
    return "application/json" if filename.lower().endswith(".json") else "text/csv"


# --- body -------------------------------------------------------------------------------------


def _media_type(content_type: str) -> tuple[str, str | None]:
    media_type, _, params = content_type.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return media_type.strip().lower(), charset


def _decode(body: bytes) -> str:
    try:
        # utf-8-sig drops the byte order mark that Excel puts in front of "CSV UTF-8" files.
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        raise Invalid(
            f"the file is not UTF-8 text: byte 0x{body[exc.start]:02x} on line {line} "
            "(save it as UTF-8, e.g. Excel's 'CSV UTF-8')",
        ) from None


# --- CSV --------------------------------------------------------------------------------------


def _sniff_separator(header_line: str) -> str:
    # As The Things Stack does: ';' if the header has one (its default, and what Excel writes in
    # locales with a decimal comma), else ','. Only the header is looked at, since values may
    # hold either.
    for separator in (";", ",", "\t"):
        if separator in header_line:
            return separator
    return ";"


def _header(cells: list[str], line: int) -> tuple[list[str | None], tuple[str, ...]]:
    """Column names as cityhub reads them (None: ignored) and the unknown ones."""
    columns: list[str | None] = []
    unknown: list[str] = []
    seen: dict[str, str] = {}
    for cell in cells:
        raw = cell.strip()
        name = raw.lower()
        name = _ALIASES.get(name, name)
        if name not in _KNOWN_COLUMNS:
            columns.append(None)
            if raw:
                unknown.append(raw)
            continue
        if name in seen:
            raise Invalid(
                f"the header (line {line}) has column {name!r} twice "
                f"({seen[name]!r} and {raw!r}): keep one",
            )
        seen[name] = raw
        columns.append(None if name in TTS_DROPPED_COLUMNS else name)
    if "id" not in seen and "dev_eui" not in seen:
        raise Invalid(
            f"the header (line {line}) has neither an 'id' nor a 'dev_eui' column; the first "
            f"non-blank line must name the columns, e.g. 'id;dev_eui;type;latitude;longitude' "
            f"(found: {', '.join(repr(c.strip()) for c in cells[:8])})",
        )
    return columns, tuple(unknown)


def _read_csv(text: str, *, default_type: str | None, max_rows: int) -> ParsedImport:
    source = io.StringIO(text, newline="")
    first = ""
    for candidate in io.StringIO(text):
        if candidate.strip():
            first = candidate
            break
    if not first:
        raise Invalid("the CSV file is empty: it needs a header row and one row per device")
    reader = csv.reader(source, delimiter=_sniff_separator(first), skipinitialspace=True)
    rows: list[Row] = []
    lines: list[int] = []
    ids: list[str | None] = []
    columns: list[str | None] | None = None
    ignored: tuple[str, ...] = ()
    dupes = _Duplicates()
    ended = 0
    try:
        for cells in reader:
            # csv counts the lines it consumed: a record (a quoted value may span lines) starts
            # on the line after the previous record ended.
            start, ended = ended + 1, reader.line_num
            if not any(cells) or not any(cell.strip() for cell in cells):
                continue
            if columns is None:
                columns, ignored = _header(cells, start)
                if "type" not in columns and not default_type:
                    raise Invalid(
                        "the CSV has no 'type' column and no default type was given: add a "
                        "'type' column (a device type id) or give a default type for all rows",
                    )
                continue
            if len(rows) >= max_rows:
                raise TooManyRows(
                    f"too many rows: an import takes at most {max_rows} devices; split the file",
                    max_rows=max_rows,
                )
            row, device_id, dev_eui = _csv_row(cells, columns, default_type)
            rows.append(dupes.check(row, f"line {start}", device_id, dev_eui))
            lines.append(start)
            ids.append(device_id)
    except csv.Error as exc:
        raise Invalid(f"the CSV cannot be read at line {reader.line_num}: {exc}") from None
    if columns is None:  # pragma: no cover - the first non-blank line always becomes the header
        raise Invalid("the CSV file has no header row")
    return ParsedImport(rows=rows, lines=lines, ids=ids, ignored_columns=ignored)


def _csv_row(
    cells: list[str], columns: list[str | None], default_type: str | None
) -> tuple[Row, str | None, str | None]:
    """The row, its device id and its DevEUI as written (for the duplicate check)."""
    if len(cells) != len(columns):
        ragged = FieldError(
            "row",
            f"has {len(cells)} values but the header has {len(columns)} columns "
            "(quote values that contain the separator)",
        )
        return [ragged], None, None
    values = {name: cell.strip() for name, cell in zip(columns, cells, strict=True) if name}
    errors: list[FieldError] = []
    doc: dict[str, Any] = {}

    dev_eui = values.get("dev_eui") or None
    device_id = values.get("id") or None
    if device_id is None and dev_eui is not None:
        # The Things Stack's fallback for rows without an id; a bad DevEUI is reported below.
        eui = _eui_or_none(dev_eui)
        device_id = None if eui is None else f"eui-{eui}"
    if device_id is None:
        errors.append(FieldError("id", "required: give an id or a dev_eui"))
    else:
        doc["id"] = device_id
    if dev_eui is not None:
        doc["dev_eui"] = dev_eui

    join_eui = values.get("join_eui")
    if join_eui and not _EUI.match(join_eui.replace("-", "").replace(":", "")):
        errors.append(FieldError("join_eui", f"must be 16 hexadecimal digits, got {join_eui!r}"))

    name = values.get("name") or device_id
    if name is not None:
        doc["name"] = name

    device_type = values.get("type") or default_type
    if device_type:
        doc["type"] = device_type
    else:
        errors.append(
            FieldError("type", "required: fill in the device type, or give a default type")
        )

    if area := values.get("area"):
        doc["area"] = area
    if tags := values.get("tags"):
        doc["tags"] = [tag for tag in _TAG_SPLIT.split(tags) if tag]
    if active := values.get("active"):
        flag = active.lower()
        if flag in _TRUE:
            doc["active"] = True
        elif flag in _FALSE:
            doc["active"] = False
        else:
            errors.append(FieldError("active", f"must be true or false, got {active!r}"))
    if app_key := values.get("app_key"):
        doc["app_key"] = app_key
    if network := values.get("network"):
        try:
            doc["network"] = network_binding_fields(network)
        except ValueError as exc:
            errors.append(FieldError("network", str(exc)))

    location, location_errors = _csv_location(values)
    errors.extend(location_errors)
    if location is not None:
        doc["location"] = location

    # Without an id there is no default name either: one error says it all.
    skip = ("name",) if device_id is None else ()
    return _validate(doc, errors, skip=skip), device_id, dev_eui


def _csv_location(
    values: Mapping[str, str],
) -> tuple[dict[str, float] | None, list[FieldError]]:
    errors: list[FieldError] = []
    location: dict[str, float] = {}
    for axis in ("latitude", "longitude", "altitude"):
        cell = values.get(axis)
        if not cell:
            continue
        # Excel in decimal-comma locales writes 52,3702 (inside a ';'-separated file).
        number = cell.replace(",", ".") if cell.count(",") == 1 and "." not in cell else cell
        try:
            value = float(number)
        except ValueError:
            errors.append(FieldError(f"location.{axis}", f"must be a number, got {cell!r}"))
            continue
        if not math.isfinite(value):
            errors.append(FieldError(f"location.{axis}", f"must be a number, got {cell!r}"))
            continue
        low, high = _RANGES[f"location.{axis}"]
        if not low <= value <= high:
            errors.append(
                FieldError(
                    f"location.{axis}",
                    f"must be between {_number(low)} and {_number(high)}, got {cell!r}",
                )
            )
            continue
        location[axis] = value
    has_lat = "latitude" in location or bool(values.get("latitude"))
    has_lon = "longitude" in location or bool(values.get("longitude"))
    if has_lat != has_lon:
        missing = "longitude" if has_lat else "latitude"
        errors.append(
            FieldError(f"location.{missing}", "required: give latitude and longitude together")
        )
    elif not has_lat and values.get("altitude"):
        errors.append(FieldError("location.altitude", "needs a latitude and a longitude"))
    if errors or not location:
        return None, errors
    return location, errors


# --- JSON -------------------------------------------------------------------------------------


def _read_json(
    text: str, *, default_type: str | None, max_rows: int, tts_tenant: str | None = None
) -> ParsedImport:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, list):
        raise Invalid(
            f"a JSON import is an array of device objects, got {_json_kind(doc)}",
        )
    if len(doc) > max_rows:
        raise TooManyRows(
            f"too many rows: an import takes at most {max_rows} devices, got {len(doc)}; "
            "split the file",
            max_rows=max_rows,
        )
    rows: list[Row] = []
    ids: list[str | None] = []
    dupes = _Duplicates()
    for item in doc:
        if not isinstance(item, dict):
            rows.append([FieldError("row", f"must be a JSON object, got {_json_kind(item)}")])
            ids.append(None)
            continue
        errors: list[FieldError] = []
        if isinstance(item.get("ids"), dict):
            item, errors = _tts_end_device(item, tts_tenant)
        if default_type and item.get("type") in (None, ""):
            item = {**item, "type": default_type}
        device_id = item.get("id") if isinstance(item.get("id"), str) else None
        where = f"item {len(rows) + 1}"
        rows.append(dupes.check(_validate(item, errors), where, device_id, item.get("dev_eui")))
        ids.append(device_id)
    return ParsedImport(rows=rows, lines=list(range(1, len(rows) + 1)), ids=ids)


_CITYHUB_FIELDS_BESIDE_TTS: Final = ("type", "area", "tags", "active", "network", "location")


def _check_tts_tenant(tenant: str) -> None:
    try:
        NetworkBinding(server=NetworkServer.TTS, application="tenant-check", tenant=tenant)
    except ValidationError as exc:
        raise Invalid(
            f"tts_tenant: {_field_error(exc.errors(include_url=False)[0]).message}"
        ) from None


def _tts_object(
    doc: dict[str, Any], key: str, path: str, errors: list[FieldError]
) -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    errors.append(FieldError(path, f"must be an object, got {_json_kind(value)}"))
    return {}


def _tts_end_device(
    item: dict[str, Any], tts_tenant: str | None
) -> tuple[dict[str, Any], list[FieldError]]:
    """A ``DeviceSpec`` document from The Things Stack's JSON end device (see the module
    docstring), and the errors of TTS fields of the wrong shape. TTS's other fields (versions,
    frequency plan, sessions...) are dropped."""
    errors: list[FieldError] = []
    ids = item["ids"]
    doc: dict[str, Any] = {}
    if "device_id" in ids:
        doc["id"] = ids["device_id"]
    if ids.get("dev_eui"):
        doc["dev_eui"] = ids["dev_eui"]
    name = item.get("name") or ids.get("device_id")
    if name is not None:
        doc["name"] = name
    application = _tts_object(ids, "application_ids", "ids.application_ids", errors).get(
        "application_id"
    )
    if application is not None:
        network: dict[str, Any] = {"server": NetworkServer.TTS.value, "application": application}
        if tts_tenant is not None:
            network["tenant"] = tts_tenant
        doc["network"] = network
    locations = _tts_object(item, "locations", "locations", errors)
    user = _tts_object(locations, "user", "locations.user", errors)
    if "latitude" in user or "longitude" in user:
        doc["location"] = {k: user[k] for k in ("latitude", "longitude", "altitude") if k in user}
    root_keys = _tts_object(item, "root_keys", "root_keys", errors)
    app_key = _tts_object(root_keys, "app_key", "root_keys.app_key", errors).get("key")
    if app_key is not None:
        doc["app_key"] = app_key
    for key in _CITYHUB_FIELDS_BESIDE_TTS:
        if key in item:
            doc[key] = item[key]
    return doc, errors


def _json_kind(value: object) -> str:
    match value:
        case dict():
            return "an object"
        case list():
            return "an array"
        case str():
            return "a string"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case None:
            return "null"
    return type(value).__name__  # pragma: no cover - JSON has no other types


# --- validation and messages ------------------------------------------------------------------


def _validate(doc: dict[str, Any], errors: list[FieldError], *, skip: tuple[str, ...] = ()) -> Row:
    """The spec of ``doc``, or all its errors: those found while reading it and pydantic's
    (except on fields already reported, or in ``skip``)."""
    try:
        spec = DeviceSpec.model_validate(doc)
    except ValidationError as exc:
        found = {error.field for error in errors}.union(skip)
        for detail in exc.errors(include_url=False):
            error = _field_error(detail)
            if error.field not in found:
                errors.append(error)
        return errors
    return errors or spec


def field_errors(exc: ValidationError) -> list[FieldError]:
    """A spec's pydantic validation errors as FieldErrors a person can act on (dotted paths,
    messages that say what is expected and what was given; secrets never echoed)."""
    return [_field_error(detail) for detail in exc.errors(include_url=False)]


def _bounds(field: str) -> tuple[float, float]:
    info = Location.model_fields[field]
    low = next(m.ge for m in info.metadata if isinstance(m, Ge))
    high = next(m.le for m in info.metadata if isinstance(m, Le))
    return float(low), float(high)  # type: ignore[arg-type]  # annotated_types' SupportsGe


_RANGES: Final = {f"location.{axis}": _bounds(axis) for axis in Location.model_fields}
_PATTERN_HINTS: Final = {
    "id": "1 to 63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit",
    "type": "a device type id: lower-case letters, digits, '.', '_' or '-'",
    "area": "letters, digits, '.', '_' or '-' (a district code)",
    "tags": "letters, digits and '.', '_', ':', '/', '=', '-' only",
}


def _number(value: float) -> str:
    return f"{value:g}"


def _field_error(detail: ErrorDetails) -> FieldError:
    """A pydantic error as a FieldError a person can act on. Secrets are never echoed."""
    loc = [str(part) for part in detail["loc"]]
    field = ".".join(loc) if loc else "row"
    top = loc[0] if loc else ""
    kind = detail["type"]
    value = detail.get("input")
    shown = "" if top in _SECRET_FIELDS else f", got {value!r}"
    if kind == "missing":
        return FieldError(field, "required")
    if kind == "extra_forbidden":
        return FieldError(
            field, f"unknown field; known fields: {', '.join(DeviceSpec.model_fields)}"
        )
    if field in _RANGES and kind in {"greater_than_equal", "less_than_equal"}:
        low, high = _RANGES[field]
        return FieldError(field, f"must be between {_number(low)} and {_number(high)}{shown}")
    if kind == "float_parsing" or kind == "float_type":
        return FieldError(field, f"must be a number{shown}")
    if kind == "bool_parsing" or kind == "bool_type":
        return FieldError(field, f"must be true or false{shown}")
    if kind == "string_pattern_mismatch" and top in _PATTERN_HINTS:
        return FieldError(field, f"must be {_PATTERN_HINTS[top]}{shown}")
    if kind == "string_too_short":
        return FieldError(field, "must not be empty")
    if kind == "string_too_long":
        limit = detail.get("ctx", {}).get("max_length")
        return FieldError(field, f"must be at most {limit} characters")
    if kind == "too_long" and top == "tags":
        return FieldError(field, f"at most {MAX_TAGS} tags")
    if kind == "value_error" and top == "dev_eui":
        return FieldError(field, f"must be 16 hexadecimal digits{shown}")
    if kind == "value_error" and top == "app_key":
        return FieldError(field, "must be 32 hexadecimal digits (the value is not shown)")
    message = detail["msg"].removeprefix("Value error, ")
    return FieldError(field, message[:1].lower() + message[1:])


class _Duplicates:
    """Finds ids and DevEUIs already used by an earlier row of the same file."""

    __slots__ = ("_eui_rows", "_id_rows")

    def __init__(self) -> None:
        self._id_rows: dict[str, str] = {}
        self._eui_rows: dict[str, str] = {}

    def check(self, row: Row, where: str, device_id: str | None, dev_eui: object) -> Row:
        """``row`` with an error added for an id or DevEUI that an earlier row has; remembers
        both, a bad row's too, so that a later row cannot silently take a broken row's place.
        ``where`` names the row in messages (``line 7``, ``item 3``)."""
        eui = row.dev_eui if isinstance(row, DeviceSpec) else _eui_or_none(dev_eui)
        extra: list[FieldError] = []
        if device_id is not None:
            first = self._id_rows.setdefault(device_id, where)
            if first != where:
                extra.append(FieldError("id", f"{device_id!r} is already used on {first}"))
        if eui is not None:
            first = self._eui_rows.setdefault(eui, where)
            if first != where:
                extra.append(FieldError("dev_eui", f"{eui!r} is already used on {first}"))
        if not extra:
            return row
        return [*([] if isinstance(row, DeviceSpec) else row), *extra]


def _eui_or_none(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return normalise_dev_eui(value)
    except ValueError:
        return None


def describe_errors(errors: Iterable[FieldError]) -> str:
    """``field: message; field: message``, as reports print a bad row."""
    return "; ".join(f"{error.field}: {error.message}" for error in errors)
