"""The literal values of the SensorThings query language that need more than a token:
date-times (through the project's time gate) and WKT geometries.

Pure: strings in, values out, or a ``QueryError`` saying what is wrong.
"""

from __future__ import annotations

import re
from datetime import datetime

from cityhub.schemas.errors import InvalidTimestamp
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.sensorthings.expr import Geometry, QueryError


def parse_datetime(text: str) -> datetime:
    """A date-time literal (unquoted, or a quoted string read as a time) through the project's
    gate, ``parse_rfc3339``: RFC 3339 with a time zone, 1970 up to 2100 (UTC). OData's form
    without seconds (``2026-11-01T10:00Z``) is the same with ``:00``. Anything else is a
    QueryError saying why without echoing it: year 1 with a positive offset overflowed
    wherever the time was taken to UTC, and the history store holds nothing outside the range.
    """
    if len(text) > 16 and text[10] == "T" and text[16] != ":":
        text = f"{text[:16]}:00{text[16:]}"
    try:
        return parse_rfc3339(text)
    except InvalidTimestamp as exc:
        raise QueryError(f"a date-time literal is refused: {exc.why}") from None


_WKT = re.compile(r"^\s*(POINT|LINESTRING|POLYGON)\s*\((.*)\)\s*$", re.IGNORECASE | re.DOTALL)


def _coordinates(text: str) -> tuple[tuple[float, float], ...]:
    points = []
    for pair in text.split(","):
        parts = pair.split()
        if len(parts) not in (2, 3):
            raise QueryError(f"a WKT position has two or three numbers, got {pair.strip()!r}")
        try:
            lon, lat = float(parts[0]), float(parts[1])
        except ValueError:
            raise QueryError(f"a WKT position has numbers, got {pair.strip()!r}") from None
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise QueryError(f"WKT position {pair.strip()!r} is not a longitude and latitude")
        points.append((lon, lat))
    return tuple(points)


def parse_wkt(wkt: str) -> Geometry:
    """A POINT, LINESTRING or POLYGON in WKT (lon lat order); QueryError otherwise."""
    match = _WKT.match(wkt)
    if match is None:
        raise QueryError(
            "a geometry literal is WKT: POINT(lon lat), LINESTRING(...), POLYGON((...))"
        )
    kind, body = match.group(1).upper(), match.group(2)
    if kind == "POINT":
        points = _coordinates(body)
        if len(points) != 1:
            raise QueryError("a WKT POINT has one position")
        return Geometry("Point", points[0], wkt)
    if kind == "LINESTRING":
        points = _coordinates(body)
        if len(points) < 2:
            raise QueryError("a WKT LINESTRING has at least two positions")
        return Geometry("LineString", points, wkt)
    rings = re.findall(r"\(([^()]*)\)", body)
    if not rings or re.sub(r"\([^()]*\)|[\s,]", "", body):
        raise QueryError("a WKT POLYGON reads POLYGON((lon lat, lon lat, ...))")
    parsed = tuple(_coordinates(ring) for ring in rings)
    for ring in parsed:
        if len(ring) < 4 or ring[0] != ring[-1]:
            raise QueryError("a WKT POLYGON ring has at least four positions, the last the first")
    return Geometry("Polygon", parsed, wkt)
