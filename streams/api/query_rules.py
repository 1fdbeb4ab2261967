"""Pure: a request's query parameters checked against those its route documents, every fault at
once (NL API Design Rules: invalid input is a 400 that lists all schema errors), and the
lowerCamelCase rule for query keys.

A route's parameters carry a small JSON Schema each (``cityhub.streams.api.route_model.Param``);
this module understands exactly the keywords in ``SUPPORTED_KEYWORDS``, and a test keeps every
documented parameter within them, so that no documented constraint goes unchecked. Values are
read as the handlers read them: an empty value is an absent one; integers are ASCII digits;
booleans ``true``/``false``/``1``/``0``; times RFC 3339 (an unencoded ``+`` of an offset arrives
as a space and is read as ``+``). No message repeats a value: a rejected value may be a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from cityhub.schemas.errors import InvalidTimestamp
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.service_errors import FieldError

SUPPORTED_KEYWORDS = frozenset(
    {"type", "enum", "pattern", "minimum", "maximum", "maxLength", "format", "default"}
)
"""The JSON Schema keywords a query parameter's schema may use (``default`` only documents)."""

LOWER_CAMEL_CASE = re.compile(r"^\$?[a-z][a-z\d]*([A-Z][a-z\d]*)*$")
"""The ADR's pattern for query keys (/core/query-keys-camel-case); ``$`` starts OData-style ones."""

GIVEN_TWICE = "given more than once; give it once"
"""The message for a query key given twice (of /api/v1's parameters and SensorThings' options)."""

_INTEGER = re.compile(r"^-?[0-9]{1,18}$")
_WORD_BREAK = re.compile(r"[_\-\s]+")


class QueryParam(Protocol):
    """What this module reads of a route's parameter (``route_model.Param`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def location(self) -> str: ...
    @property
    def schema(self) -> Mapping[str, Any]: ...
    @property
    def required(self) -> bool: ...


def is_lower_camel_case(name: str) -> bool:
    """Whether ``name`` is a query key the ADR accepts (``windowSize``, ``from``, ``$top``)."""
    return LOWER_CAMEL_CASE.match(name) is not None


def lower_camel_case(name: str) -> str:
    """``window_size`` (or ``window-size``) as ``windowSize``: the name a query key of this
    API has when it was snake_case before."""
    first, *rest = [part for part in _WORD_BREAK.split(name) if part] or [""]
    return first[:1].lower() + first[1:] + "".join(part[:1].upper() + part[1:] for part in rest)


def unsupported_keywords(schema: Mapping[str, Any]) -> set[str]:
    """Keywords of a parameter's schema this module would not check."""
    return set(schema) - SUPPORTED_KEYWORDS


def query_errors(
    params: Iterable[QueryParam], items: Iterable[tuple[str, str]]
) -> list[FieldError]:
    """Every fault of a query (``items``: its key and value pairs, repeats included) against the
    route's documented ``params``: unknown keys (naming the new name of a renamed one), keys
    given twice, required ones missing, and each value that its schema refuses. Empty when the
    query is valid."""
    documented = {p.name: p for p in params if p.location == "query"}
    seen: dict[str, str] = {}
    repeated: set[str] = set()
    unknown: set[str] = set()
    errors: list[FieldError] = []
    for key, value in items:
        if key not in documented:
            if key not in unknown:
                unknown.add(key)
                errors.append(FieldError(key[:64], _unknown(key, documented)))
        elif key not in seen:
            seen[key] = value
        elif key not in repeated:
            repeated.add(key)
            errors.append(FieldError(key, GIVEN_TWICE))
    for name, param in documented.items():
        value = seen.get(name, "")
        if value == "":
            if param.required:
                errors.append(FieldError(name, "required; " + _expected(param.schema)))
            continue
        problem = value_error(param.schema, value)
        if problem is not None:
            errors.append(FieldError(name, problem))
    return errors


def _unknown(key: str, documented: Mapping[str, QueryParam]) -> str:
    renamed = lower_camel_case(key)
    if renamed != key and renamed in documented:
        return f"unknown query parameter; it is called {renamed} (query keys are lowerCamelCase)"
    if not documented:
        return "unknown query parameter; this route takes none"
    return "unknown query parameter; this route takes " + ", ".join(sorted(documented))


def _expected(schema: Mapping[str, Any]) -> str:
    match schema.get("type"):
        case "integer":
            return "an integer"
        case "boolean":
            return "true or false"
    if schema.get("format") == "date-time":
        return "an RFC 3339 time with a UTC offset, e.g. 2026-11-29T10:00:00Z"
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    return "a value"


def value_error(schema: Mapping[str, Any], raw: str) -> str | None:
    """What is wrong with ``raw`` as a value of ``schema``, or None if nothing is."""
    kind = schema.get("type", "string")
    if kind == "integer":
        if not raw.isascii() or _INTEGER.match(raw) is None:
            return "expected " + _integer_range(schema)
        number = int(raw)
        if "minimum" in schema and number < schema["minimum"]:
            return "expected " + _integer_range(schema)
        if "maximum" in schema and number > schema["maximum"]:
            return "expected " + _integer_range(schema)
        value: Any = number
    elif kind == "boolean":
        if raw.strip().lower() not in ("true", "false", "1", "0"):
            return "expected true or false"
        value = raw.strip().lower() in ("true", "1")
    else:
        if "maxLength" in schema and len(raw) > schema["maxLength"]:
            return f"at most {schema['maxLength']} characters"
        if "pattern" in schema and re.search(schema["pattern"], raw) is None:
            return f"does not match the pattern {schema['pattern']}"
        if schema.get("format") == "date-time":
            try:
                parse_rfc3339(raw[:19] + raw[19:].replace(" ", "+"))
            except InvalidTimestamp as exc:
                return f"not a time this API takes: {exc.why}"
        value = raw
    if "enum" in schema and value not in schema["enum"]:
        return "expected one of " + ", ".join(str(v) for v in schema["enum"])
    return None


def _integer_range(schema: Mapping[str, Any]) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f"an integer from {low} to {high}"
    if low is not None:
        return f"an integer of at least {low}"
    if high is not None:
        return f"an integer of at most {high}"
    return "an integer"
