"""The query language subset of ``GET /ngsi-ld/v1/entities`` (ETSI GS CIM 009, 4.9 and 4.10):
``q`` and the geo-query, parsed into plain data and evaluated on normalized entities.

``q``: terms ``attr`` (the attribute exists), ``attr==value``, ``!=``, ``>``, ``>=``, ``<``,
``<=``, ``attr~=regex`` and ``attr!~=regex``, joined by ``;`` (and) and ``|`` (or), ``;``
binding tighter, with parentheses. Values: numbers, ``"strings"``, ``true``/``false``, bare
date-times, a range ``min..max`` and a list ``a,b,c`` (with ``==`` and ``!=``). A term
compares the attribute's ``value`` (a Relationship's ``object``); ``attr.sub`` names a
sub-attribute (``pm25.unitCode``, ``status.observedAt``). A term on an attribute the entity
lacks is false.

Geo-query: ``georel`` ``near;maxDistance==<m>`` / ``near;minDistance==<m>``, ``within``,
``intersects``, ``disjoint``, ``equals``, with ``geometry`` ``Point`` or ``Polygon`` and
``coordinates`` as GeoJSON, on the ``location`` GeoProperty (Points; distances on a sphere of
the Earth's mean radius).

Every fault is a :class:`BadQuery` naming the parameter. Pure.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from cityhub.connectors.ngsi_ld.pattern import PatternRefused, compile_pattern
from cityhub.schemas.errors import CityhubError, InvalidTimestamp
from cityhub.schemas.timefmt import parse_rfc3339

MAX_Q_LENGTH: Final = 2000
MAX_Q_DEPTH: Final = 20
"""Parentheses nested deeper than this are refused (each level is a few frames of the parser
and of ``matches``: 340 levels raised RecursionError, a 500)."""
EARTH_RADIUS_M: Final = 6_371_008.8


class BadQuery(CityhubError):
    """A query parameter that cannot be read: NGSI-LD's ``BadRequestData``."""

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(f"{parameter}: {detail}")
        self.parameter = parameter
        self.detail = detail


# --- q -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """One comparison; ``op`` None: the attribute exists."""

    path: tuple[str, ...]
    op: str | None = None
    value: Any = None
    """A scalar, a ``(low, high)`` range (tuple) or a list of scalars."""


@dataclass(frozen=True, slots=True)
class And:
    parts: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    parts: tuple[Expr, ...]


Expr = Term | And | Or

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<lparen>\() | (?P<rparen>\)) | (?P<and>;) | (?P<or>\|)
    | (?P<term>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
      (?:(?P<op>==|!=|>=|<=|>|<|~=|!~=)(?P<value>(?:"(?:[^"\\]|\\.)*"|[^;|()"\s])+))?
    )""",
    re.VERBOSE,
)
_LIST_ITEM = re.compile(r'"(?:[^"\\]|\\.)*"|[^,]+')
_NUMBER = re.compile(r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$")
_DATETIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+-][0-9]{2}:[0-9]{2})$")


def _scalar(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return json.loads(text)
        except ValueError:
            raise BadQuery("q", f"the string {text[:40]} is not well formed") from None
    if text in ("true", "false"):
        return text == "true"
    if _NUMBER.match(text):
        return float(text) if any(c in text for c in ".eE") else int(text)
    if _DATETIME.match(text):
        try:  # through cityhub's one gate for times: 2026-99-99 is no date
            parse_rfc3339(text)
        except InvalidTimestamp as exc:
            raise BadQuery("q", f"the date-time {text[:40]!r}: {exc.why}") from None
        return text
    raise BadQuery("q", f'{text[:40]!r} is not a number, a "string", true, false or a date-time')


def _value(op: str, text: str) -> Any:
    if op in ("~=", "!~="):
        pattern = text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text
        try:
            return compile_pattern(pattern)
        except PatternRefused as exc:
            raise BadQuery("q", f"the pattern {pattern[:40]!r} {exc}") from None
    if op in ("==", "!=") and '"' not in text and ".." in text:
        low, _, high = text.partition("..")
        return (_scalar(low), _scalar(high))
    parts = _LIST_ITEM.findall(text)
    if op in ("==", "!=") and len(parts) > 1:
        return [_scalar(part) for part in parts]
    return _scalar(text)


def _tokens(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    at = 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            raise BadQuery("q", f"cannot read the query from {text[at : at + 40]!r}")
        at = match.end()
        kind = match.lastgroup if match["term"] is None else "term"
        if kind == "term":
            op = match["op"]
            value = None if op is None else _value(op, match["value"])
            tokens.append(("term", Term(tuple(match["term"].split(".")), op, value)))
        else:
            tokens.append((str(kind), None))
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens = tokens
        self.at = 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.tokens[self.at][0] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def parse_or(self) -> Expr:
        parts = [self.parse_and()]
        while self.peek() == "or":
            self.take()
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def parse_and(self) -> Expr:
        parts = [self.parse_atom()]
        while self.peek() == "and":
            self.take()
            parts.append(self.parse_atom())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def parse_atom(self) -> Expr:
        kind = self.peek()
        if kind == "term":
            term: Term = self.take()[1]
            return term
        if kind == "lparen":
            self.take()
            self.depth += 1
            if self.depth > MAX_Q_DEPTH:
                raise BadQuery("q", f"parentheses nest at most {MAX_Q_DEPTH} deep")
            inner = self.parse_or()
            self.depth -= 1
            if self.peek() != "rparen":
                raise BadQuery("q", "a parenthesis is not closed")
            self.take()
            return inner
        raise BadQuery("q", "expected an attribute or '(' here")


def parse_q(text: str) -> Expr:
    """The expression of a ``q`` parameter; BadQuery saying what is wrong."""
    if not text.strip():
        raise BadQuery("q", "is empty")
    if len(text) > MAX_Q_LENGTH:
        raise BadQuery("q", f"is at most {MAX_Q_LENGTH} characters")
    parser = _Parser(_tokens(text))
    expr = parser.parse_or()
    if parser.peek() is not None:
        raise BadQuery("q", "unexpected text after the end of the query")
    return expr


def _target(entity: dict[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    attribute = entity.get(path[0])
    if not isinstance(attribute, dict):
        return False, None
    if len(path) == 1:
        value = attribute.get("object") if attribute.get("type") == "Relationship" else None
        if value is None:
            value = attribute.get("value")
    else:
        value = attribute
        for name in path[1:]:
            if not isinstance(value, dict) or name not in value:
                return False, None
            value = value[name]
            if isinstance(value, dict) and "value" in value and name != "value":
                value = value["value"]
    if isinstance(value, dict) and "@value" in value:  # a DateTime value
        value = value["@value"]
    return True, value


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if op in ("~=", "!~="):
        found = isinstance(actual, str) and expected.search(actual) is not None
        return found if op == "~=" else not found
    if isinstance(expected, tuple):
        inside = _ordered(actual, expected[0], ">=") and _ordered(actual, expected[1], "<=")
        return inside if op == "==" else not inside
    if isinstance(expected, list):
        member = any(_equal(actual, one) for one in expected)
        return member if op == "==" else not member
    if op == "==":
        return _equal(actual, expected)
    if op == "!=":
        return not _equal(actual, expected)
    return _ordered(actual, expected, op)


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(actual, list):
        return any(_equal(one, expected) for one in actual)
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    return bool(actual == expected)


def _ordered(actual: Any, expected: Any, op: str) -> bool:
    numbers = (int, float)
    same = (
        isinstance(actual, numbers)
        and isinstance(expected, numbers)
        and not isinstance(actual, bool)
        and not isinstance(expected, bool)
    ) or (isinstance(actual, str) and isinstance(expected, str))
    if not same:
        return False
    if op == ">":
        return bool(actual > expected)
    if op == ">=":
        return bool(actual >= expected)
    if op == "<":
        return bool(actual < expected)
    return bool(actual <= expected)


def matches(expr: Expr, entity: dict[str, Any]) -> bool:
    """Whether a normalized entity satisfies ``expr``."""
    if isinstance(expr, And):
        return all(matches(part, entity) for part in expr.parts)
    if isinstance(expr, Or):
        return any(matches(part, entity) for part in expr.parts)
    present, actual = _target(entity, expr.path)
    if not present:
        return False
    if expr.op is None:
        return True
    return _compare(actual, expr.op, expr.value)


def attributes_of(expr: Expr) -> set[str]:
    """The attributes an expression names."""
    if isinstance(expr, And | Or):
        return set().union(*(attributes_of(part) for part in expr.parts))
    return {expr.path[0]}


# --- geo-query ---------------------------------------------------------------------------------

GEORELS: Final = ("near", "within", "intersects", "disjoint", "equals")


@dataclass(frozen=True, slots=True)
class GeoQuery:
    georel: str
    geometry: str
    """``Point`` or ``Polygon``."""
    coordinates: Any
    max_distance: float | None = None
    min_distance: float | None = None


def _position(value: Any) -> tuple[float, float]:
    if (
        isinstance(value, list)
        and len(value) in (2, 3)
        and all(isinstance(c, int | float) and not isinstance(c, bool) for c in value)
        and -180 <= value[0] <= 180
        and -90 <= value[1] <= 90
    ):
        return float(value[0]), float(value[1])
    raise BadQuery("coordinates", "a position is [longitude, latitude] in degrees")


def parse_geo(georel: str, geometry: str | None, coordinates: str | None) -> GeoQuery:
    """The geo-query of ``georel``, ``geometry`` and ``coordinates``; BadQuery otherwise."""
    name, *modifiers = georel.split(";")
    if name not in GEORELS:
        raise BadQuery("georel", f"must be one of {', '.join(GEORELS)}")
    if geometry not in ("Point", "Polygon"):
        raise BadQuery("geometry", "must be Point or Polygon (with georel)")
    if coordinates is None:
        raise BadQuery("coordinates", "is required with georel")
    try:
        # orjson: nesting past its limit (1 024) is a parse error, not a RecursionError; NaN and
        # Infinity, which json.loads takes, are no JSON.
        parsed = orjson.loads(coordinates)
    except orjson.JSONDecodeError:
        raise BadQuery("coordinates", "must be GeoJSON coordinates, e.g. [4.89,52.37]") from None
    if geometry == "Point":
        _position(parsed)
    else:
        rings = parsed if isinstance(parsed, list) else None
        if not rings or not all(isinstance(r, list) and len(r) >= 4 for r in rings):
            raise BadQuery("coordinates", "a Polygon is a list of closed rings of 4+ positions")
        for ring in rings:
            for position in ring:
                _position(position)
            if ring[0] != ring[-1]:
                raise BadQuery("coordinates", "a Polygon's ring ends where it starts")
    query = GeoQuery(name, geometry, parsed)
    if name == "near":
        if geometry != "Point":
            raise BadQuery("geometry", "near takes a Point")
        for modifier in modifiers:
            key, sep, raw = modifier.partition("==")
            if not sep or key not in ("maxDistance", "minDistance"):
                raise BadQuery("georel", "near takes maxDistance==<metres> or minDistance==<m>")
            # A plain decimal (float() also takes NaN, inf and 1_000), finite (1e999 is not).
            distance = float(raw) if _NUMBER.match(raw) else math.nan
            if not (math.isfinite(distance) and distance >= 0):
                raise BadQuery(
                    "georel", f"{key} must be a number of metres, 0 or more (not {raw[:40]!r})"
                )
            if key == "maxDistance":
                query = GeoQuery(name, geometry, parsed, distance, query.min_distance)
            else:
                query = GeoQuery(name, geometry, parsed, query.max_distance, distance)
        if query.max_distance is None and query.min_distance is None:
            raise BadQuery("georel", "near needs maxDistance==<metres> or minDistance==<m>")
    elif modifiers:
        raise BadQuery("georel", f"{name} takes no modifier")
    return query


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two (longitude, latitude) positions."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _in_ring(point: tuple[float, float], ring: Sequence[Sequence[float]]) -> bool:
    x, y = point
    inside = False
    for (x1, y1), (x2, y2) in zip(
        [(p[0], p[1]) for p in ring], [(p[0], p[1]) for p in ring[1:]], strict=False
    ):
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def _in_polygon(point: tuple[float, float], rings: Sequence[Any]) -> bool:
    return _in_ring(point, rings[0]) and not any(_in_ring(point, hole) for hole in rings[1:])


def geo_matches(query: GeoQuery, point: tuple[float, float] | None) -> bool:
    """Whether an entity located at ``point`` (longitude, latitude; None: no location)
    satisfies the geo-query."""
    if point is None:
        return False
    if query.geometry == "Point":
        target = _position(query.coordinates)
        if query.georel == "near":
            distance = distance_m(point, target)
            return (query.max_distance is None or distance <= query.max_distance) and (
                query.min_distance is None or distance >= query.min_distance
            )
        same = point == target
        if query.georel in ("equals", "intersects", "within"):
            return same
        return not same  # disjoint
    inside = _in_polygon(point, query.coordinates)
    if query.georel in ("within", "intersects"):
        return inside
    if query.georel == "disjoint":
        return not inside
    return False  # a point never equals a polygon
