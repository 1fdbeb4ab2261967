"""Bulk import from CSV: The Things Stack's end device columns and cityhub's own.

Pure: text in, parsed rows out. ``;`` or ``,`` separated (as the header shows), a header row,
unknown columns ignored and reported, ``id`` falling back to ``eui-<dev_eui>``. cityhub's own
columns: ``type``, ``area``, ``tags``, ``latitude``, ``longitude``, ``altitude``, ``active``,
``network``, ``data_subject`` and ``expected_interval_seconds``. The TTS columns that cityhub has
no use for are accepted and dropped.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping
from typing import Any, Final

from cityhub.schemas.expected_interval import parse_expected_interval
from cityhub.schemas.registry import network_binding_fields
from cityhub.streams.registry.import_rows import (
    Duplicates,
    ParsedImport,
    Row,
    TooManyRows,
    eui_or_none,
)
from cityhub.streams.registry.spec_errors import LOCATION_RANGES, number_text, validate_row
from cityhub.streams.service_errors import FieldError, Invalid

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
    "expected_interval": "expected_interval_seconds",
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
    "data_subject",
    "expected_interval_seconds",
)
"""Columns cityhub adds to The Things Stack's. ``data_subject``: a pseudonym links the device
(of a personal type) to it, ``-`` unlinks it, an empty cell keeps the link as it is.
``expected_interval_seconds`` (or ``expected_interval``): the device's own reporting interval,
``900`` or ``15m``; empty: its type's."""

UNLINK_SUBJECT: Final = "-"

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

_TAG_SPLIT: Final = re.compile(r"[|\s]+")
_EUI: Final = re.compile(r"^[0-9a-fA-F]{16}$")
_TRUE: Final = frozenset({"true", "yes", "y", "1", "on"})
_FALSE: Final = frozenset({"false", "no", "n", "0", "off"})


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


def read_csv(text: str, *, default_type: str | None, max_rows: int) -> ParsedImport:
    """The rows of a CSV text (its first non-blank line is the header). Invalid if the file
    cannot be read as a whole; TooManyRows past ``max_rows`` data rows."""
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
    dupes = Duplicates()
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
        eui = eui_or_none(dev_eui)
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

    if subject := values.get("data_subject"):
        doc["data_subject"] = None if subject == UNLINK_SUBJECT else subject

    if interval := values.get("expected_interval_seconds"):
        try:
            doc["expected_interval_seconds"] = parse_expected_interval(interval)
        except ValueError as exc:
            errors.append(FieldError("expected_interval_seconds", str(exc)))

    location, location_errors = _csv_location(values)
    errors.extend(location_errors)
    if location is not None:
        doc["location"] = location

    # Without an id there is no default name either: one error says it all.
    skip = ("name",) if device_id is None else ()
    return validate_row(doc, errors, skip=skip), device_id, dev_eui


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
        low, high = LOCATION_RANGES[f"location.{axis}"]
        if not low <= value <= high:
            errors.append(
                FieldError(
                    f"location.{axis}",
                    f"must be between {number_text(low)} and {number_text(high)}, got {cell!r}",
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
