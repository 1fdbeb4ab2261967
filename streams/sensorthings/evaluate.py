"""``$filter`` and ``$orderby`` over entity documents in Python: how the registry-backed
entity sets (Things, Locations, HistoricalLocations, Sensors, ObservedProperties,
Datastreams, FeaturesOfInterest) are filtered and sorted.

Pure. A property path is resolved by the caller's ``Resolve`` (which follows navigation
properties; a to-many path gives a list, and a comparison over a list is true when it holds
for any member, as FROST-Server does). Comparisons follow OData: ``null eq null`` is true, a
comparison with null or between values of different types is false (``ne`` true), a number
never equals a boolean. A bad function argument is a ``QueryError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cmp_to_key
from typing import Any

from cityhub.streams.sensorthings import geometry
from cityhub.streams.sensorthings.expr import (
    Binary,
    Call,
    Expr,
    Literal,
    Negate,
    Not,
    OrderBy,
    Path,
    QueryError,
)

Resolve = Callable[[tuple[str, ...]], Any]
"""A property path's value for one entity (a list when it crosses a to-many navigation)."""

MIN_DATETIME = datetime(1, 1, 1, tzinfo=UTC)
MAX_DATETIME = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


class _Many(list[Any]):
    """Values reached through a to-many navigation (a comparison holds if any member does)."""


def many(values: Sequence[Any]) -> _Many:
    """Mark ``values`` as the members of a to-many navigation for the evaluator."""
    return _Many(values)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, datetime):
        return "time"
    return "other"


def _compare(op: str, left: object, right: object) -> bool:
    if isinstance(left, _Many):
        return any(_compare(op, v, right) for v in left)
    if isinstance(right, _Many):
        return any(_compare(op, left, v) for v in right)
    if isinstance(left, datetime) and isinstance(right, str):
        right = _as_time(right)
    elif isinstance(right, datetime) and isinstance(left, str):
        left = _as_time(left)
    kinds = (_kind(left), _kind(right))
    if op in ("eq", "ne"):
        same = kinds[0] == kinds[1] and left == right
        return same if op == "eq" else not same
    if kinds[0] != kinds[1] or kinds[0] in ("null", "other"):
        return False
    a: Any = left
    b: Any = right
    if op == "gt":
        return bool(a > b)
    if op == "ge":
        return bool(a >= b)
    if op == "lt":
        return bool(a < b)
    return bool(a <= b)


def _as_time(text: str) -> datetime | str:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _number(value: object, what: str) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise QueryError(f"{what} needs a number")
    return value


def _finite(value: float | int) -> float | int:
    # PostgreSQL refuses an overflow (a 400 there); the same here, for every set alike.
    if isinstance(value, float) and not math.isfinite(value):
        raise QueryError("the filter computes a value out of range")
    return value


def _arithmetic(op: str, left: object, right: object) -> object:
    a, b = _number(left, op), _number(right, op)
    if a is None or b is None:
        return None
    a, b = float(_finite(a)), float(_finite(b))
    if op == "add":
        return _finite(a + b)
    if op == "sub":
        return _finite(a - b)
    if op == "mul":
        return _finite(a * b)
    if b == 0:
        return None  # as SQL NULLIF: no entity matches a division by zero
    if op == "div":
        return _finite(a / b)
    return _finite(math.fmod(a, b))


def evaluate(expr: Expr, resolve: Resolve) -> Any:
    """The value of ``expr`` for the entity that ``resolve`` reads."""
    match expr:
        case Literal(value=value):
            return value
        case Path(segments=segments):
            return resolve(segments)
        case Not(operand=operand):
            return not _truth(evaluate(operand, resolve))
        case Negate(operand=operand):
            value = _number(evaluate(operand, resolve), "-")
            return None if value is None else -value
        case Binary(op="and", left=left, right=right):
            return _truth(evaluate(left, resolve)) and _truth(evaluate(right, resolve))
        case Binary(op="or", left=left, right=right):
            return _truth(evaluate(left, resolve)) or _truth(evaluate(right, resolve))
        case Binary(op=op, left=left, right=right) if op in ("add", "sub", "mul", "div", "mod"):
            return _arithmetic(op, evaluate(left, resolve), evaluate(right, resolve))
        case Binary(op=op, left=left, right=right):
            return _compare(op, evaluate(left, resolve), evaluate(right, resolve))
        case Call(name=name, args=args):
            return _call(name, [evaluate(a, resolve) for a in args])
    raise QueryError(f"cannot evaluate {expr!r}")


def _truth(value: object) -> bool:
    if isinstance(value, _Many):
        return any(_truth(v) for v in value)
    return value is True


def matches(expr: Expr, resolve: Resolve) -> bool:
    """Whether the entity passes ``$filter`` (a non-boolean result does not pass)."""
    return _truth(evaluate(expr, resolve))


def _text(value: object, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, _Many):
        raise QueryError(f"{name} cannot take a to-many navigation path")
    if not isinstance(value, str):
        raise QueryError(f"{name} needs a string")
    return value


def _time(value: object, name: str) -> datetime | None:
    if isinstance(value, str):
        value = _as_time(value)
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise QueryError(f"{name} needs a date and time")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # A string read as a time (a quoted literal, a property): year 1 with a positive
        # offset, or 9999-12-31 with a negative one, is before year 1 or after 9999 in UTC.
        raise QueryError(f"{name} needs a date and time between years 1 and 9999 in UTC") from None


def _call(name: str, args: list[Any]) -> Any:
    if name in ("substringof", "contains", "startswith", "endswith", "indexof", "concat"):
        a, b = _text(args[0], name), _text(args[1], name)
        if a is None or b is None:
            return None
        if name == "substringof":
            return a in b
        if name == "contains":
            return b in a
        if name == "startswith":
            return a.startswith(b)
        if name == "endswith":
            return a.endswith(b)
        if name == "indexof":
            return a.find(b)
        return a + b
    if name in ("length", "tolower", "toupper", "trim"):
        s = _text(args[0], name)
        if s is None:
            return None
        return {"length": len, "tolower": str.lower, "toupper": str.upper, "trim": str.strip}[name](
            s
        )
    if name == "substring":
        s = _text(args[0], name)
        start = _number(args[1], name)
        length = _number(args[2], name) if len(args) == 3 else None
        if s is None or start is None:
            return None
        begin = max(int(start), 0)
        return s[begin:] if length is None else s[begin : begin + max(int(length), 0)]
    if name in ("year", "month", "day", "hour", "minute", "second", "fractionalseconds"):
        t = _time(args[0], name)
        if t is None:
            return None
        if name == "fractionalseconds":
            return t.microsecond / 1_000_000
        return getattr(t, name)
    if name == "date":
        t = _time(args[0], name)
        return None if t is None else t.date().isoformat()
    if name == "time":
        t = _time(args[0], name)
        return None if t is None else t.time().isoformat()
    if name == "totaloffsetminutes":
        t = _time(args[0], name)
        return None if t is None else 0
    if name == "now":
        return datetime.now(UTC)
    if name == "mindatetime":
        return MIN_DATETIME
    if name == "maxdatetime":
        return MAX_DATETIME
    if name in ("round", "floor", "ceiling"):
        n = _number(args[0], name)
        if n is None:
            return None
        if name == "round":
            return math.floor(n + 0.5)
        return math.floor(n) if name == "floor" else math.ceil(n)
    return _spatial(name, args)


def _spatial(name: str, args: list[Any]) -> Any:
    if any(isinstance(a, _Many) for a in args):
        return _Many(
            _spatial(name, [m if isinstance(a, _Many) else a for a in args])
            for m in next(a for a in args if isinstance(a, _Many))
        )
    shapes = [geometry.shape_of(a) for a in args]
    if any(a is None for a in args):
        return None
    first, second = shapes
    if first is None or second is None:
        raise QueryError(f"{name} needs two geometries (a location property or geography'...')")
    if name == "geo.distance":
        return geometry.distance(first, second)
    if name in ("geo.intersects", "st_intersects"):
        return geometry.intersects(first, second)
    if name == "st_disjoint":
        return not geometry.intersects(first, second)
    if name == "st_within":
        return geometry.within(first, second)
    if name == "st_contains":
        return geometry.within(second, first)
    return geometry.equals(first, second)


def _order_key(value: object) -> tuple[int, Any]:
    kind = _kind(value)
    rank = {"null": 0, "bool": 1, "number": 2, "text": 3, "time": 4}.get(kind, 5)
    if rank == 5:
        return (rank, str(value))
    return (rank, value)


def sort(
    items: list[Any], orderby: Sequence[OrderBy], resolver: Callable[[Any], Resolve]
) -> list[Any]:
    """``items`` in ``$orderby`` order (nulls first ascending, as PostgreSQL's DESC NULLS
    LAST mirror); a stable sort, so equal items keep the order they came in."""
    if not orderby:
        return items
    keyed = [
        (
            [_order_key(_single(evaluate(o.expr, resolver(item)))) for o in orderby],
            item,
        )
        for item in items
    ]

    def compare(a: tuple[list[Any], Any], b: tuple[list[Any], Any]) -> int:
        for (ka, kb), order in zip(zip(a[0], b[0], strict=True), orderby, strict=True):
            if ka != kb:
                less = ka < kb
                result = -1 if less else 1
                return -result if order.descending else result
        return 0

    keyed.sort(key=cmp_to_key(compare))
    return [item for _, item in keyed]


def _single(value: object) -> object:
    if isinstance(value, _Many):
        return value[0] if value else None
    return value
