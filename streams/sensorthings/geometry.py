"""Planar geometry on longitude/latitude for the spatial functions of ``$filter`` over
registry-backed entities (Locations, Things, FeaturesOfInterest): points, line strings and
polygons, as PostGIS's ``geometry`` type computes them (degrees, no curvature).

Pure. Observations are filtered in PostgreSQL; these functions give the same answers for the
shapes cityhub has (a device's location is a point).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from cityhub.streams.sensorthings.expr import Geometry, QueryError

Point = tuple[float, float]
Shape = tuple[str, Any]
"""``("Point", (x, y))``, ``("LineString", [(x, y), ...])``, ``("Polygon", [[(x, y)...]...])``."""


def shape_of(value: object) -> Shape | None:
    """The shape of a geometry literal or a GeoJSON geometry/Feature; None for anything else."""
    if isinstance(value, Geometry):
        return _shape(value.type, value.coordinates)
    if isinstance(value, dict):
        if value.get("type") == "Feature":
            return shape_of(value.get("geometry"))
        return _shape(value.get("type"), value.get("coordinates"))
    return None


def _shape(kind: object, coordinates: object) -> Shape | None:
    try:
        if kind == "Point":
            return ("Point", _point(coordinates))
        if kind == "LineString":
            return ("LineString", [_point(c) for c in coordinates])  # type: ignore[attr-defined]
        if kind == "Polygon":
            return ("Polygon", [[_point(c) for c in ring] for ring in coordinates])  # type: ignore[attr-defined]
    except (TypeError, ValueError, IndexError):
        return None
    return None


def _point(value: Any) -> Point:
    return (float(value[0]), float(value[1]))


def _segments(points: Sequence[Point]) -> list[tuple[Point, Point]]:
    return list(pairwise(points))


def _edges(shape: Shape) -> list[tuple[Point, Point]]:
    kind, coords = shape
    if kind == "LineString":
        return _segments(coords)
    if kind == "Polygon":
        return [e for ring in coords for e in _segments(ring)]
    return []


def _orient(a: Point, b: Point, c: Point) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _on_segment(p: Point, a: Point, b: Point) -> bool:
    return (
        abs(_orient(a, b, p)) < 1e-12
        and min(a[0], b[0]) <= p[0] <= max(a[0], b[0])
        and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])
    )


def _crosses(a: Point, b: Point, c: Point, d: Point) -> bool:
    d1, d2 = _orient(c, d, a), _orient(c, d, b)
    d3, d4 = _orient(a, b, c), _orient(a, b, d)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and 0 not in (d1, d2, d3, d4):
        return True
    return any((_on_segment(p, s, t)) for p, s, t in ((a, c, d), (b, c, d), (c, a, b), (d, a, b)))


def _in_ring(p: Point, ring: Sequence[Point]) -> bool:
    inside = False
    for (x1, y1), (x2, y2) in _segments(ring):
        if (y1 > p[1]) != (y2 > p[1]):
            x = x1 + (p[1] - y1) * (x2 - x1) / (y2 - y1)
            if p[0] < x:
                inside = not inside
    return inside


def _in_polygon(p: Point, rings: Sequence[Sequence[Point]]) -> bool:
    """Strictly inside the outer ring and outside every hole."""
    if not rings or not _in_ring(p, rings[0]):
        return False
    return not any(_in_ring(p, hole) for hole in rings[1:])


def _on_boundary(p: Point, shape: Shape) -> bool:
    return any(_on_segment(p, a, b) for a, b in _edges(shape))


def _vertices(shape: Shape) -> list[Point]:
    kind, coords = shape
    if kind == "Point":
        return [coords]
    if kind == "LineString":
        return list(coords)
    return [p for ring in coords for p in ring]


def intersects(a: Shape, b: Shape) -> bool:
    """Whether two shapes share at least one point."""
    if a[0] == "Point" and b[0] == "Point":
        return bool(a[1] == b[1])
    if b[0] == "Point":
        a, b = b, a
    if a[0] == "Point":
        p = a[1]
        return _on_boundary(p, b) or (b[0] == "Polygon" and _in_polygon(p, b[1]))
    if any(_crosses(*e, *f) for e in _edges(a) for f in _edges(b)):
        return True
    return (b[0] == "Polygon" and any(_in_polygon(p, b[1]) for p in _vertices(a))) or (
        a[0] == "Polygon" and any(_in_polygon(p, a[1]) for p in _vertices(b))
    )


def within(a: Shape, b: Shape) -> bool:
    """Whether ``a`` lies inside ``b`` (a point on ``b``'s boundary is not within, as in
    PostGIS)."""
    if b[0] == "Point":
        return a[0] == "Point" and a[1] == b[1]
    if b[0] == "LineString":
        return all(any(_on_segment(p, s, t) for s, t in _edges(b)) for p in _vertices(a))
    if a[0] == "Point":
        return _in_polygon(a[1], b[1]) and not _on_boundary(a[1], b)
    return all(_in_polygon(p, b[1]) or _on_boundary(p, b) for p in _vertices(a)) and not any(
        _crosses(*e, *f) and not (_on_boundary(e[0], b) or _on_boundary(e[1], b))
        for e in _edges(a)
        for f in _edges(b)
    )


def equals(a: Shape, b: Shape) -> bool:
    """Whether two shapes have the same kind and coordinates."""
    return bool(a == b)


def _point_segment(p: Point, a: Point, b: Point) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    if dx == dy == 0:
        return math.dist(p, a)
    t = max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / (dx * dx + dy * dy)))
    return math.dist(p, (a[0] + t * dx, a[1] + t * dy))


def distance(a: Shape, b: Shape) -> float:
    """The planar distance between two shapes in degrees (0 when they intersect)."""
    if intersects(a, b):
        return 0.0
    if a[0] == "Point" and b[0] == "Point":
        return math.dist(a[1], b[1])
    candidates = [_point_segment(p, s, t) for p in _vertices(a) for s, t in _edges(b)] + [
        _point_segment(p, s, t) for p in _vertices(b) for s, t in _edges(a)
    ]
    if not candidates:
        raise QueryError("geo.distance needs at least one line or point")
    return min(candidates)
