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

This module reads the body (media type, charset, UTF-8) and hands it to a reader:
``import_csv.py`` or ``import_json.py``. Both give the rows of ``import_rows.py`` and word their
errors by ``spec_errors.py``.
"""

from __future__ import annotations

from typing import Final

from cityhub.streams.registry.import_csv import read_csv
from cityhub.streams.registry.import_json import check_tts_tenant, read_json
from cityhub.streams.registry.import_rows import MAX_IMPORT_ROWS, ParsedImport, Row
from cityhub.streams.service_errors import Invalid

CSV_CONTENT_TYPES: Final = frozenset({"text/csv", "application/csv", "text/plain"})
JSON_CONTENT_TYPES: Final = frozenset({"application/json"})


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
        check_tts_tenant(tts_tenant)
    media_type, charset = _media_type(content_type)
    if charset not in (None, "utf-8", "utf8", "us-ascii"):
        raise Invalid(f"unsupported charset {charset!r}: send the file as UTF-8")
    text = _decode(body)
    if media_type in CSV_CONTENT_TYPES:
        return read_csv(text, default_type=default_type, max_rows=max_rows)
    if media_type in JSON_CONTENT_TYPES or media_type.endswith("+json"):
        return read_json(text, default_type=default_type, max_rows=max_rows, tts_tenant=tts_tenant)
    raise Invalid(
        f"unsupported content type {content_type!r}: send text/csv or application/json",
    )


def content_type_for(filename: str) -> str:
    """The content type ``parse_import`` expects for a file of this name (JSON or CSV)."""
    return "application/json" if filename.lower().endswith(".json") else "text/csv"


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
