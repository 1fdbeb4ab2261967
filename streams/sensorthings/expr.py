"""The expression tree of SensorThings ``$filter`` and ``$orderby`` (the OData subset that
OGC 18-088 section 9.3.3.5 defines), and the errors of a bad query.

Pure: frozen dataclasses, no I/O. ``parser.py`` builds these; ``evaluate.py`` runs them over
entity documents and ``sql.py`` compiles them to parameterised SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

COMPARISONS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
LOGICAL = frozenset({"and", "or"})
ARITHMETIC = frozenset({"add", "sub", "mul", "div", "mod"})

FUNCTIONS: dict[str, tuple[int, int]] = {
    # name: (fewest, most) arguments
    "substringof": (2, 2),
    "contains": (2, 2),
    "startswith": (2, 2),
    "endswith": (2, 2),
    "length": (1, 1),
    "indexof": (2, 2),
    "substring": (2, 3),
    "tolower": (1, 1),
    "toupper": (1, 1),
    "trim": (1, 1),
    "concat": (2, 2),
    "year": (1, 1),
    "month": (1, 1),
    "day": (1, 1),
    "hour": (1, 1),
    "minute": (1, 1),
    "second": (1, 1),
    "fractionalseconds": (1, 1),
    "date": (1, 1),
    "time": (1, 1),
    "totaloffsetminutes": (1, 1),
    "now": (0, 0),
    "mindatetime": (0, 0),
    "maxdatetime": (0, 0),
    "round": (1, 1),
    "floor": (1, 1),
    "ceiling": (1, 1),
    "geo.distance": (2, 2),
    "geo.intersects": (2, 2),
    "st_within": (2, 2),
    "st_intersects": (2, 2),
    "st_contains": (2, 2),
    "st_disjoint": (2, 2),
    "st_equals": (2, 2),
}
"""The functions the service evaluates. Others of the standard (``geo.length``, ``st_relate``,
``st_crosses``, ``st_touches``, ``st_overlaps``) answer 400 saying they are not supported."""


class QueryError(ValueError):
    """A query option the service cannot accept: answered 400 with this message."""


class NotSupported(QueryError):
    """A valid option the service does not implement (also a 400, saying so)."""


@dataclass(frozen=True, slots=True)
class Geometry:
    """A geometry literal (``geography'POINT(1 2)'``): GeoJSON type and coordinates, lon/lat."""

    type: str
    coordinates: tuple[object, ...]
    wkt: str

    def geojson(self) -> dict[str, object]:
        """The geometry as a GeoJSON object."""
        return {"type": self.type, "coordinates": _lists(self.coordinates)}


def _lists(value: object) -> object:
    if isinstance(value, tuple):
        return [_lists(v) for v in value]
    return value


Value = str | int | float | bool | None | datetime | Geometry


@dataclass(frozen=True, slots=True)
class Literal:
    value: Value


@dataclass(frozen=True, slots=True)
class Path:
    """A property path: ``result``, ``Datastream/id``, ``Thing/Locations/location``."""

    segments: tuple[str, ...]

    def __str__(self) -> str:
        return "/".join(self.segments)


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True)
class Negate:
    operand: Expr


Expr = Literal | Path | Call | Binary | Not | Negate


def paths_of(expr: Expr) -> list[Path]:
    """Every property path the expression reads, in order."""
    match expr:
        case Path():
            return [expr]
        case Literal():
            return []
        case Call(args=args):
            return [p for a in args for p in paths_of(a)]
        case Binary(left=left, right=right):
            return paths_of(left) + paths_of(right)
        case Not(operand=operand) | Negate(operand=operand):
            return paths_of(operand)
    raise TypeError(f"not an expression: {expr!r}")


@dataclass(frozen=True, slots=True)
class OrderBy:
    expr: Expr
    descending: bool


@dataclass(frozen=True, slots=True)
class Query:
    """The query options of one request, or of one ``$expand`` item (nested)."""

    top: int | None = None
    skip: int = 0
    count: bool = False
    filter: Expr | None = None
    orderby: tuple[OrderBy, ...] = ()
    select: tuple[str, ...] = ()
    expand: tuple[Expand, ...] = ()
    options: tuple[tuple[str, str], ...] = ()
    """The options as given (name, text): what a next page's link repeats."""


@dataclass(frozen=True, slots=True)
class Expand:
    """One ``$expand`` item: a navigation property and the options applied to what it
    reaches (``Datastreams($top=3;$expand=Observations)``)."""

    navigation: str
    query: Query
