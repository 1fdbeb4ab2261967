"""Bulk import from JSON: an array of ``DeviceSpec`` objects or of The Things Stack's end devices.

Pure: text in, parsed rows out. A TTS end device (``ttn-lw-cli end-devices list``) is bound to
its application, and to the ``tts_tenant`` given to the import, since the export does not name
the tenant; cityhub's own fields beside TTS's win over what is read from TTS's.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from pydantic import ValidationError

from cityhub.schemas.registry import NetworkBinding, NetworkServer
from cityhub.streams.registry.import_rows import Duplicates, ParsedImport, Row, TooManyRows
from cityhub.streams.registry.spec_errors import field_error, validate_row
from cityhub.streams.service_errors import FieldError, Invalid
from cityhub.streams.unique_json import DuplicateMember, TooDeep, loads_unique


def read_json(
    text: str, *, default_type: str | None, max_rows: int, tts_tenant: str | None = None
) -> ParsedImport:
    """The rows of a JSON array text; each item's position is its line. Invalid if the text is
    not a JSON array; TooManyRows past ``max_rows`` items."""
    try:
        doc = loads_unique(text)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"the body is not valid JSON: {exc}") from None
    except (DuplicateMember, TooDeep) as exc:
        raise Invalid(f"the body is refused: {exc}") from None
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
    dupes = Duplicates()
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
        rows.append(dupes.check(validate_row(item, errors), where, device_id, item.get("dev_eui")))
        ids.append(device_id)
    return ParsedImport(rows=rows, lines=list(range(1, len(rows) + 1)), ids=ids)


_CITYHUB_FIELDS_BESIDE_TTS: Final = (
    "type",
    "area",
    "tags",
    "active",
    "network",
    "location",
    "data_subject",
    "expected_interval_seconds",
)


def check_tts_tenant(tenant: str) -> None:
    """Invalid unless ``tenant`` is a TTS tenant id (as a network binding takes it)."""
    try:
        NetworkBinding(server=NetworkServer.TTS, application="tenant-check", tenant=tenant)
    except ValidationError as exc:
        raise Invalid(
            "The Things Stack tenant (the API's ttsTenant, the CLI's --tts-tenant): "
            + field_error(exc.errors(include_url=False)[0]).message
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
