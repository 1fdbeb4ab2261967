"""$filter and $orderby over entity documents (the registry-backed SensorThings sets), and the
planar geometry behind the spatial functions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cityhub.streams.sensorthings import geometry
from cityhub.streams.sensorthings.evaluate import many, matches, sort
from cityhub.streams.sensorthings.expr import QueryError
from cityhub.streams.sensorthings.literals import parse_wkt
from cityhub.streams.sensorthings.parser import parse_filter, parse_orderby

ENTITY: dict[str, Any] = {
    "name": "air-1 at Dam",
    "description": "PM sensor",
    "time": datetime(2026, 11, 1, 10, 30, 15, 250000, tzinfo=UTC),
    "count": 7,
    "location": {"type": "Point", "coordinates": [4.89, 52.37]},
    "properties": {"area": "centrum"},
    "none": None,
}


def resolve(path: tuple[str, ...]) -> Any:
    if path[0] == "Datastreams":
        return many(["pm2_5", "temperature"])
    value: Any = ENTITY.get(path[0])
    for step in path[1:]:
        value = value.get(step) if isinstance(value, dict) else None
    return value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name eq 'air-1 at Dam'", True),
        ("name ne 'air-1 at Dam'", False),
        ("name lt 'b'", True),
        ("count gt 6 and count le 7", True),
        ("count add 3 eq 10", True),
        ("count div 0 eq 1", False),
        ("count mod 4 eq 3", True),
        ("-count eq -7", True),
        ("not (count eq 7)", False),
        ("none eq null", True),
        ("none gt 1", False),
        ("count eq '7'", False),
        ("count ne '7'", True),
        ("time gt 2026-11-01T10:00:00Z", True),
        ("time lt '2026-11-01T10:00:00Z'", False),
        ("year(time) eq 2026 and month(time) eq 11 and day(time) eq 1", True),
        ("hour(time) eq 10 and minute(time) eq 30 and second(time) eq 15", True),
        ("fractionalseconds(time) eq 0.25", True),
        ("date(time) eq '2026-11-01'", True),
        ("substringof('Dam', name)", True),
        ("contains(name, 'Dam')", True),
        ("startswith(name, 'air') and endswith(name, 'Dam')", True),
        ("length(name) eq 12", True),
        ("indexof(name, 'at') eq 6", True),
        ("substring(name, 6) eq 'at Dam'", True),
        ("substring(name, 0, 3) eq 'air'", True),
        ("tolower(description) eq 'pm sensor' and toupper(description) eq 'PM SENSOR'", True),
        ("trim(concat(' ', name)) eq name", True),
        ("round(2.5) eq 3 and floor(2.5) eq 2 and ceiling(2.1) eq 3", True),
        ("properties/area eq 'centrum'", True),
        ("Datastreams eq 'temperature'", True),
        ("Datastreams eq 'wind'", False),
        ("geo.intersects(location, geography'POLYGON((4 52, 5 52, 5 53, 4 53, 4 52))')", True),
        ("st_within(location, geography'POLYGON((0 0, 1 0, 1 1, 0 0))')", False),
        ("st_disjoint(location, geography'POINT(0 0)')", True),
        ("st_equals(location, geography'POINT(4.89 52.37)')", True),
        ("geo.distance(location, geography'POINT(4.89 52.38)') lt 0.02", True),
        ("time lt now() and time gt mindatetime() and time lt maxdatetime()", True),
    ],
)
def test_filters(text: str, expected: bool) -> None:
    assert matches(parse_filter(text), resolve) is expected


@pytest.mark.parametrize(
    "text",
    [
        "length(count) eq 1",
        "year(name) eq 1",
        "count add 'x' eq 1",
        "geo.distance(name, name) lt 1",
        # overflows: a 400 as PostgreSQL gives for Observations, never an exception
        "round(1e308 mul 10) eq 1",
        "substring(name, 1e308 mul 10) eq 'x'",
        "count mul 1e308 mul 1e308 eq 1",
        # a time past year 1 or 9999 in UTC: astimezone overflowed (a 500)
        "year('0001-01-01T00:00:00+01:00') eq 1",
        "hour('9999-12-31T23:59:59-23:59') eq 1",
        "date('0001-01-01T00:30:00+00:45') eq '0001-01-01'",
    ],
)
def test_wrong_argument_types_are_query_errors(text: str) -> None:
    with pytest.raises(QueryError):
        matches(parse_filter(text), resolve)


def test_sort_orders_by_each_key_in_turn_and_is_stable() -> None:
    items = [{"a": 2, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "w"}, {"a": None, "b": "z"}]

    def resolver(item: dict[str, Any]) -> Any:
        return lambda path: item.get(path[0])

    by_a = sort(items, parse_orderby("a"), resolver)
    assert [i["a"] for i in by_a] == [None, 1, 2, 2]
    assert [i["b"] for i in by_a][2:] == ["x", "w"]  # stable
    by_a_desc_b = sort(items, parse_orderby("a desc, b"), resolver)
    assert [i["b"] for i in by_a_desc_b] == ["w", "x", "y", "z"]


def _shape(wkt: str) -> geometry.Shape:
    shape = geometry.shape_of(parse_wkt(wkt))
    assert shape is not None
    return shape


def test_geometry_predicates() -> None:
    square = _shape("POLYGON((0 0, 4 0, 4 4, 0 4, 0 0))")
    holed = _shape("POLYGON((0 0, 4 0, 4 4, 0 4, 0 0), (1 1, 3 1, 3 3, 1 3, 1 1))")
    assert geometry.within(_shape("POINT(2 2)"), square)
    assert not geometry.within(_shape("POINT(2 2)"), holed)
    assert not geometry.within(_shape("POINT(0 2)"), square)  # on the boundary
    assert geometry.intersects(_shape("POINT(0 2)"), square)
    assert geometry.intersects(_shape("LINESTRING(-1 2, 5 2)"), square)
    assert not geometry.intersects(_shape("LINESTRING(5 5, 6 6)"), square)
    assert geometry.intersects(_shape("POLYGON((3 3, 5 3, 5 5, 3 5, 3 3))"), square)
    assert geometry.within(_shape("POLYGON((1 1, 2 1, 2 2, 1 1))"), square)
    assert geometry.distance(_shape("POINT(0 0)"), _shape("POINT(3 4)")) == 5.0
    assert geometry.distance(_shape("POINT(6 2)"), square) == 2.0
    assert geometry.shape_of({"type": "Feature", "geometry": None}) is None
