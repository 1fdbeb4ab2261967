"""``$filter`` and ``$orderby`` of Observations compiled to parameterised SQL over the history
store's ``observations`` table.

Pure: builds text and a parameter map, runs nothing. User input only ever travels as a
parameter (``%(pN)s``); the text is put together from fragments written here. An
Observation's own properties map to columns (``phenomenonTime`` = ``observed_at``,
``resultTime`` = ``received_at``, ``result`` = the value: ``value_number`` against a number,
the value's JSON text against a string (``result gt '3'`` compares text, as FROST-Server
does), ``value_boolean`` against a boolean; ``id`` = a range of event ids). A part of the
filter that reads only navigation paths (``Datastream/...``, ``FeatureOfInterest/...``) is
handed to the caller's ``Navigation``, which evaluates it over the registry-backed entities
and answers with a SQL condition on ``device_id``/``quantity``. A comparison that mixes both
is a ``NotSupported`` 400, as are types that cannot be compared (a time with a number).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cityhub.streams.sensorthings.expr import (
    ARITHMETIC,
    COMPARISONS,
    Binary,
    Call,
    Expr,
    Geometry,
    Literal,
    Negate,
    Not,
    NotSupported,
    OrderBy,
    Path,
    QueryError,
    paths_of,
)
from cityhub.streams.sensorthings.ids import MAX_OBSERVATION_ID, event_id_bounds
from cityhub.streams.sensorthings.literals import parse_datetime

NAVIGATIONS = frozenset({"Datastream", "FeatureOfInterest"})
OWN = {
    "phenomenonTime": ("observed_at", "time"),
    "resultTime": ("received_at", "time"),
}
_RESULT = {"number": "value_number", "text": "(doc->>'value')", "bool": "value_boolean"}


@dataclass
class Params:
    """The parameters of one statement, named ``p0``, ``p1`` ... in the order added."""

    values: dict[str, Any] = field(default_factory=dict)

    def add(self, value: object) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"%({name})s"


Navigation = Callable[[Expr, Params], str]
"""Compiles a sub-filter that reads only navigation paths into a SQL condition."""


@dataclass(frozen=True, slots=True)
class _Sql:
    text: str
    type: str  # number, text, time, bool, null


def _is_navigation(path: Path) -> bool:
    return len(path.segments) > 1 and path.segments[0] in NAVIGATIONS


def _logical(expr: Expr) -> tuple[Expr, ...] | None:
    """The operands of an ``and``, ``or`` or ``not`` (what ``compile_filter`` descends
    into), None for any other node."""
    match expr:
        case Binary(op="and" | "or", left=left, right=right):
            return (left, right)
        case Not(operand=operand):
            return (operand,)
    return None


def _navigation_only(expr: Expr) -> dict[int, bool]:
    """For each logical node of ``expr`` and each node below them (by ``id``): whether it reads
    at least one path and only navigation paths (it is handed to ``Navigation`` whole).

    One pass from the leaves up, without recursion over the logical nodes (a 4 KB filter chains
    800 of them): asking ``paths_of`` at every level read the whole subtree again each time,
    quadratic (150 ms on the event loop for 372 comparisons)."""
    # (reads a path, reads navigation paths only): "only" holds vacuously without paths.
    facts: dict[int, tuple[bool, bool]] = {}
    pending: list[tuple[Expr, bool]] = [(expr, False)]
    while pending:
        node, ready = pending.pop()
        operands = _logical(node)
        if operands is None:
            paths = paths_of(node)
            facts[id(node)] = (bool(paths), all(_is_navigation(p) for p in paths))
        elif ready:
            parts = [facts[id(o)] for o in operands]
            facts[id(node)] = (any(p[0] for p in parts), all(p[1] for p in parts))
        else:
            pending.append((node, True))
            pending.extend((o, False) for o in operands)
    return {key: reads and only for key, (reads, only) in facts.items()}


def compile_filter(expr: Expr, params: Params, navigation: Navigation) -> str:
    """A SQL condition true for exactly the rows ``expr`` accepts."""
    return _compile(expr, params, navigation, _navigation_only(expr))


def _compile(expr: Expr, params: Params, navigation: Navigation, handed: dict[int, bool]) -> str:
    if handed[id(expr)]:
        return navigation(expr, params)
    match expr:
        case Binary(op="and" | "or", left=left, right=right):
            op = expr.op.upper()
            return (
                f"({_compile(left, params, navigation, handed)} {op} "
                f"{_compile(right, params, navigation, handed)})"
            )
        case Not(operand=operand):
            return f"(NOT COALESCE({_compile(operand, params, navigation, handed)}, FALSE))"
        case Binary(op=op, left=left, right=right) if op in COMPARISONS:
            if any(_is_navigation(p) for p in paths_of(expr)):
                raise NotSupported(
                    "a comparison cannot mix an Observation's own properties with navigation "
                    "paths; compare each with a literal"
                )
            return _comparison(op, left, right, params)
        case Call():
            value = _value(expr, params, None)
            if value.type != "bool":
                raise QueryError(f"$filter needs a condition, {expr.name} gives a {value.type}")
            return f"COALESCE({value.text}, FALSE)"
        case Literal(value=bool() as truth):
            return "TRUE" if truth else "FALSE"
    raise QueryError("$filter needs a condition (a comparison, a function giving true or false)")


_SQL_OPS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _comparison(op: str, left: Expr, right: Expr, params: Params) -> str:
    if _is_id(left) or _is_id(right):
        return _id_comparison(op, left, right, params)
    if isinstance(right, Literal) and right.value is None:
        return _null_test(op, _value(left, params, None).text)
    if isinstance(left, Literal) and left.value is None:
        return _null_test(op, _value(right, params, None).text)
    # The side that is neither ``result`` nor a literal decides what the other is compared as
    # (``result`` against a string is text; a string against a time is a time).
    if _is_result(left) or isinstance(left, Literal):
        b = _value(right, params, None)
        a = _value(left, params, b.type)
    else:
        a = _value(left, params, None)
        b = _value(right, params, a.type)
    if a.type != b.type:
        raise QueryError(f"cannot compare a {a.type} with a {b.type}")
    if a.type == "bool" and op not in ("eq", "ne"):
        raise QueryError("true and false compare with eq and ne only")
    return f"COALESCE({a.text} {_SQL_OPS[op]} {b.text}, FALSE)"


def _null_test(op: str, text: str) -> str:
    if op == "eq":
        return f"({text} IS NULL)"
    if op == "ne":
        return f"({text} IS NOT NULL)"
    return "FALSE"


def _time_text(value: str) -> datetime:
    # A quoted time passes the same gate as an unquoted one (RFC 3339, 1970 up to 2100).
    return parse_datetime(value)


def _is_id(expr: Expr) -> bool:
    return isinstance(expr, Path) and expr.segments in (("id",), ("@iot.id",))


def _is_result(expr: Expr) -> bool:
    return isinstance(expr, Path) and expr.segments == ("result",)


_MIRROR = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}


def _id_comparison(op: str, left: Expr, right: Expr, params: Params) -> str:
    if _is_id(right):
        left, right, op = right, left, _MIRROR[op]
    if not (isinstance(right, Literal) and type(right.value) is int):
        raise NotSupported("an Observation's id compares with an integer literal only")
    number = right.value
    if number < 0:
        return "FALSE" if op in ("eq", "lt", "le") else "TRUE"
    if number > MAX_OBSERVATION_ID:
        return "FALSE" if op in ("eq", "gt", "ge") else "TRUE"
    low, high = event_id_bounds(number)
    if op == "eq":
        return f"(event_id BETWEEN {params.add(low)} AND {params.add(high)})"
    if op == "ne":
        return f"(event_id NOT BETWEEN {params.add(low)} AND {params.add(high)})"
    if op == "lt":
        return f"(event_id < {params.add(low)})"
    if op == "le":
        return f"(event_id <= {params.add(high)})"
    if op == "gt":
        return f"(event_id > {params.add(high)})"
    return f"(event_id >= {params.add(low)})"


def _literal(value: object, params: Params) -> _Sql:
    if isinstance(value, bool):
        return _Sql(params.add(value), "bool")
    if isinstance(value, int | float):
        return _Sql(f"{params.add(float(value))}::double precision", "number")
    if isinstance(value, str):
        return _Sql(f"{params.add(value)}::text", "text")
    if isinstance(value, datetime):
        return _Sql(f"{params.add(value)}::timestamptz", "time")
    if isinstance(value, Geometry):
        raise NotSupported(
            "an Observation has no geometry of its own: filter on FeatureOfInterest/feature"
        )
    return _Sql("NULL", "null")


def _value(expr: Expr, params: Params, want: str | None) -> _Sql:
    match expr:
        case Literal(value=str() as text) if want == "time":
            return _Sql(f"{params.add(_time_text(text))}::timestamptz", "time")
        case Literal(value=value):
            return _literal(value, params)
        case Path(segments=("result",)):
            kind = want if want in _RESULT else "number"
            return _Sql(_RESULT[kind], kind)
        case Path(segments=(name,)) if name in OWN:
            column, kind = OWN[name]
            return _Sql(column, kind)
        case Path():
            if _is_navigation(expr):
                raise NotSupported(f"{expr} can only be compared with a literal")
            if _is_id(expr):
                raise NotSupported("an Observation's id compares with an integer literal only")
            raise QueryError(f"an Observation has no property {str(expr)[:64]!r}")
        case Negate(operand=operand):
            inner = _value(operand, params, "number")
            _need(inner, "number", "-")
            return _Sql(f"(-{inner.text})", "number")
        case Binary(op=op, left=left, right=right) if op in ARITHMETIC:
            a, b = _value(left, params, "number"), _value(right, params, "number")
            _need(a, "number", op)
            _need(b, "number", op)
            if op == "div":
                return _Sql(f"({a.text} / NULLIF({b.text}, 0))", "number")
            if op == "mod":
                return _Sql(
                    f"mod({a.text}::numeric, NULLIF({b.text}, 0)::numeric)::double precision",
                    "number",
                )
            symbol = {"add": "+", "sub": "-", "mul": "*"}[op]
            return _Sql(f"({a.text} {symbol} {b.text})", "number")
        case Call(name=name, args=args):
            return _function(name, args, params)
    raise QueryError("this expression is not a value")


def _need(value: _Sql, kind: str, what: str) -> None:
    if value.type not in (kind, "null"):
        raise QueryError(f"{what} needs a {kind}, got a {value.type}")


_TIME_PARTS = {
    "year": "YEAR",
    "month": "MONTH",
    "day": "DAY",
    "hour": "HOUR",
    "minute": "MINUTE",
}


def _function(name: str, args: tuple[Expr, ...], params: Params) -> _Sql:
    if name in ("substringof", "contains", "startswith", "endswith", "indexof", "concat"):
        a, b = (_value(x, params, "text") for x in args)
        _need(a, "text", name)
        _need(b, "text", name)
        if name == "substringof":
            return _Sql(f"(strpos({b.text}, {a.text}) > 0)", "bool")
        if name == "contains":
            return _Sql(f"(strpos({a.text}, {b.text}) > 0)", "bool")
        if name == "startswith":
            return _Sql(f"starts_with({a.text}, {b.text})", "bool")
        if name == "endswith":
            return _Sql(f"(right({a.text}, length({b.text})) = {b.text})", "bool")
        if name == "indexof":
            return _Sql(f"(strpos({a.text}, {b.text}) - 1)::double precision", "number")
        return _Sql(f"({a.text} || {b.text})", "text")
    if name in ("length", "tolower", "toupper", "trim"):
        s = _value(args[0], params, "text")
        _need(s, "text", name)
        sql = {"length": "length", "tolower": "lower", "toupper": "upper", "trim": "btrim"}[name]
        return _Sql(f"{sql}({s.text})", "number" if name == "length" else "text")
    if name == "substring":
        s = _value(args[0], params, "text")
        start = _value(args[1], params, "number")
        _need(s, "text", name)
        _need(start, "number", name)
        if len(args) == 3:
            length = _value(args[2], params, "number")
            _need(length, "number", name)
            return _Sql(
                f"substr({s.text}, GREATEST({start.text}::int, 0) + 1, "
                f"GREATEST({length.text}::int, 0))",
                "text",
            )
        return _Sql(f"substr({s.text}, GREATEST({start.text}::int, 0) + 1)", "text")
    if name in _TIME_PARTS or name in (
        "second",
        "fractionalseconds",
        "date",
        "time",
        "totaloffsetminutes",
    ):
        t = _value(args[0], params, "time")
        _need(t, "time", name)
        utc = f"({t.text} AT TIME ZONE 'UTC')"
        if name in _TIME_PARTS:
            return _Sql(f"EXTRACT({_TIME_PARTS[name]} FROM {utc})::double precision", "number")
        if name == "second":
            return _Sql(f"floor(EXTRACT(SECOND FROM {utc}))::double precision", "number")
        if name == "fractionalseconds":
            return _Sql(
                f"(EXTRACT(SECOND FROM {utc}) - floor(EXTRACT(SECOND FROM {utc})))"
                "::double precision",
                "number",
            )
        if name == "date":
            return _Sql(f"to_char({utc}, 'YYYY-MM-DD')", "text")
        if name == "time":
            return _Sql(f"to_char({utc}, 'HH24:MI:SS')", "text")
        return _Sql("0::double precision", "number")
    if name == "now":
        return _Sql("now()", "time")
    if name == "mindatetime":
        return _Sql("'0001-01-01T00:00:00Z'::timestamptz", "time")
    if name == "maxdatetime":
        return _Sql("'9999-12-31T23:59:59.999999Z'::timestamptz", "time")
    if name in ("round", "floor", "ceiling"):
        n = _value(args[0], params, "number")
        _need(n, "number", name)
        sql = {"round": "floor(0.5 + ", "floor": "floor(", "ceiling": "ceil("}[name]
        return _Sql(f"{sql}{n.text})", "number")
    raise NotSupported(
        f"{name} applies to geometries; an Observation has none of its own: use "
        "FeatureOfInterest/feature"
    )


def compile_orderby(orderby: tuple[OrderBy, ...], params: Params) -> str:
    """The ORDER BY list of ``$orderby`` over Observations, ending with the event id so that
    pages never overlap."""
    keys = []
    for key in orderby:
        direction = "DESC" if key.descending else "ASC"
        nulls = "NULLS LAST" if key.descending else "NULLS FIRST"
        if _is_id(key.expr):
            keys.append(f"event_id {direction}")
            continue
        if _is_result(key.expr):
            keys.append(f"value_number {direction} {nulls}")
            keys.append(f"(doc->>'value') {direction} {nulls}")
            continue
        if any(_is_navigation(p) for p in paths_of(key.expr)):
            raise NotSupported("Observations are sorted by their own properties only")
        keys.append(f"{_value(key.expr, params, None).text} {direction} {nulls}")
    keys.append("event_id ASC")
    return ", ".join(keys)
