"""A device spec's validation errors as ``FieldError``s a person can act on.

Pure: dotted paths, messages that say what is expected and what was given, secrets never echoed.
The bulk import (``import_csv.py``, ``import_json.py``) reports its rows with them, and the CLI
its options.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, get_args, get_origin

from annotated_types import Ge, Le
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from cityhub.schemas.expected_interval import (
    MAX_EXPECTED_INTERVAL_SECONDS,
    MIN_EXPECTED_INTERVAL_SECONDS,
)
from cityhub.schemas.registry import MAX_TAGS, DeviceSpec, Location
from cityhub.streams.registry.import_rows import Row
from cityhub.streams.service_errors import FieldError

SECRET_FIELDS: Final = frozenset(
    {"app_key", "nwk_key", "app_s_key", "f_nwk_s_int_key", "data_subject"}
)
"""Fields whose value no message repeats: keys, and the data subject (personal data)."""


def validate_row(
    doc: dict[str, Any], errors: list[FieldError], *, skip: tuple[str, ...] = ()
) -> Row:
    """The spec of ``doc``, or all its errors: those found while reading it and pydantic's
    (except on fields already reported, or in ``skip``)."""
    try:
        spec = DeviceSpec.model_validate(doc)
    except ValidationError as exc:
        found = {error.field for error in errors}.union(skip)
        for detail in exc.errors(include_url=False):
            error = field_error(detail)
            if error.field not in found:
                errors.append(error)
        return errors
    return errors or spec


def field_errors(
    exc: ValidationError, *, model: type[BaseModel] = DeviceSpec, root: str = "row"
) -> list[FieldError]:
    """A spec's pydantic validation errors as FieldErrors a person can act on (dotted paths,
    messages that say what is expected and what was given; secrets never echoed). ``model``:
    what was validated (an unknown field's message lists the fields known where it is);
    ``root``: the name of the whole (a row, a command's option)."""
    return [field_error(detail, model=model, root=root) for detail in exc.errors(include_url=False)]


def _model_at(model: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    """The model that holds a field at ``path`` below ``model`` (through optional values,
    lists' items and dicts' values); None where the path leaves the models."""
    current: Any = model
    keyed = False  # the next part is a dict's key or a list's index, not a field
    for part in path:
        if keyed:
            keyed = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        if part not in current.model_fields:
            return None
        current = current.model_fields[part].annotation
        while not (isinstance(current, type) and issubclass(current, BaseModel)):
            inner = [arg for arg in get_args(current) if arg is not type(None)]
            if not inner:
                return None
            keyed = keyed or get_origin(current) in (dict, list)
            current = inner[-1]  # a dict's value, a list's item, an Optional's type
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _bounds(field: str) -> tuple[float, float]:
    info = Location.model_fields[field]
    low = next(m.ge for m in info.metadata if isinstance(m, Ge))
    high = next(m.le for m in info.metadata if isinstance(m, Le))
    return float(low), float(high)  # type: ignore[arg-type]  # annotated_types' SupportsGe


LOCATION_RANGES: Final = {f"location.{axis}": _bounds(axis) for axis in Location.model_fields}
_PATTERN_HINTS: Final = {
    "id": "1 to 63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit",
    "type": "a device type id: lower-case letters, digits, '.', '_' or '-'",
    "area": "letters, digits, '.', '_' or '-' (a district code)",
    "tags": "letters, digits and '.', '_', ':', '/', '=', '-' only",
}


INTERVAL_RULE: Final = (
    f"whole seconds from {MIN_EXPECTED_INTERVAL_SECONDS} to {MAX_EXPECTED_INTERVAL_SECONDS} "
    "(a month), or null for the type's (the hub's) default"
)


def number_text(value: float) -> str:
    """A bound as a message shows it (``90``, ``-180``, ``1e+04``)."""
    return f"{value:g}"


def field_error(
    detail: ErrorDetails, *, model: type[BaseModel] = DeviceSpec, root: str = "row"
) -> FieldError:
    """A pydantic error as a FieldError a person can act on. Secrets are never echoed."""
    loc = [str(part) for part in detail["loc"]]
    field = ".".join(loc) if loc else root
    top = loc[0] if loc else ""
    kind = detail["type"]
    value = detail.get("input")
    shown = "" if top in SECRET_FIELDS else f", got {value!r}"
    if kind == "missing":
        return FieldError(field, "required")
    if kind == "extra_forbidden":
        holder = _model_at(model, loc[:-1])
        known = f"; known fields: {', '.join(holder.model_fields)}" if holder is not None else ""
        return FieldError(field, f"unknown field{known}")
    if field in LOCATION_RANGES and kind in {"greater_than_equal", "less_than_equal"}:
        low, high = LOCATION_RANGES[field]
        return FieldError(
            field, f"must be between {number_text(low)} and {number_text(high)}{shown}"
        )
    if top == "expected_interval_seconds" and kind != "value_error":
        return FieldError(field, f"must be {INTERVAL_RULE}{shown}")
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


def describe_errors(errors: Iterable[FieldError]) -> str:
    """``field: message; field: message``, as reports print a bad row."""
    return "; ".join(f"{error.field}: {error.message}" for error in errors)
