"""The NGSI-LD query subset: q parsed and evaluated on entities, and the geo-query."""

from __future__ import annotations

from typing import Any

import pytest

from cityhub.connectors.ngsi_ld.query import (
    And,
    BadQuery,
    Or,
    Term,
    attributes_of,
    distance_m,
    geo_matches,
    matches,
    parse_geo,
    parse_q,
)

ENTITY: dict[str, Any] = {
    "id": "urn:ngsi-ld:AirQualityObserved:city:aq-1",
    "type": "AirQualityObserved",
    "pm25": {
        "type": "Property",
        "value": 14.0,
        "observedAt": "2026-12-03T10:05:00.000Z",
        "unitCode": "GQ",
    },
    "name": {"type": "Property", "value": "Damrak"},
    "status": {"type": "Property", "value": "occupied"},
    "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:city:aq-1"},
    "dateObserved": {
        "type": "Property",
        "value": {"@type": "DateTime", "@value": "2026-12-03T10:05:00.000Z"},
    },
    "controlledProperty": {"type": "Property", "value": ["pm25", "temperature"]},
}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("pm25", True),
        ("temperature", False),
        ("pm25>10", True),
        ("pm25>14", False),
        ("pm25>=14", True),
        ("pm25<20;pm25>10", True),
        ('pm25<10|name=="Damrak"', True),
        ('pm25<10|name=="Dam"', False),
        ("pm25==10..20", True),
        ("pm25!=10..13", True),
        ("pm25==1,14", True),
        ("pm25==14.0", True),
        ('status=="free","occupied"', True),
        ('status!="occupied"', False),
        ('(pm25<10|pm25>12);status=="occupied"', True),
        ('pm25<10|pm25>12;status=="free"', False),
        ('name~="^Dam"', True),
        ('name!~="^Dam"', False),
        ('refDevice=="urn:ngsi-ld:Device:city:aq-1"', True),
        ('pm25.unitCode=="GQ"', True),
        ("pm25.observedAt>2026-12-03T10:00:00.000Z", True),
        ("dateObserved<2026-12-03T10:00:00.000Z", False),
        ('controlledProperty=="temperature"', True),
        ('pm25>"10"', False),  # a string never orders against a number
        ("pm25==true", False),
    ],
)
def test_q_on_an_entity(q: str, expected: bool) -> None:
    assert matches(parse_q(q), ENTITY) is expected


def test_and_binds_tighter_than_or() -> None:
    expr = parse_q("a==1|b==2;c==3")
    assert isinstance(expr, Or)
    assert isinstance(expr.parts[1], And)
    assert expr.parts[0] == Term(("a",), "==", 1)
    assert attributes_of(expr) == {"a", "b", "c"}


@pytest.mark.parametrize(
    "q",
    [
        "",
        "pm25>",
        "(pm25>1",
        "pm25>1)",
        "pm25>>1",
        "pm25==abc",
        'pm25~="("',
        "x" * 2001,
        'pm25=="open',
        "pm25.observedAt>2026-99-99T00:00:00Z",
        "pm25.observedAt>2026-02-29T00:00:00Z",
        "pm25.observedAt==2026-01-01T00:00:00Z..2026-13-01T00:00:00Z",
    ],
)
def test_bad_q_is_bad_request_data(q: str) -> None:
    with pytest.raises(BadQuery) as caught:
        parse_q(q)
    assert caught.value.parameter == "q"


AMSTERDAM = (4.8952, 52.3702)
SQUARE = "[[[4.8,52.3],[5.0,52.3],[5.0,52.4],[4.8,52.4],[4.8,52.3]]]"


def test_a_q_date_time_is_checked_and_kept_as_written() -> None:
    assert parse_q("pm25.observedAt>2026-12-03T10:00:00Z") == Term(
        ("pm25", "observedAt"), ">", "2026-12-03T10:00:00Z"
    )
    with pytest.raises(BadQuery, match="not a day and time of the calendar"):
        parse_q("pm25.observedAt>2026-99-99T00:00:00Z")


def test_distances_on_the_sphere() -> None:
    # Amsterdam to Utrecht: about 35 km.
    assert 34_000 < distance_m(AMSTERDAM, (5.1214, 52.0907)) < 36_000
    assert distance_m(AMSTERDAM, AMSTERDAM) == 0


def test_near_within_and_disjoint() -> None:
    near = parse_geo("near;maxDistance==2000", "Point", "[4.90,52.37]")
    assert near.max_distance == 2000
    assert geo_matches(near, AMSTERDAM)
    assert not geo_matches(near, (5.1214, 52.0907))
    assert not geo_matches(near, None)
    assert parse_geo("near;maxDistance==0", "Point", "[4.90,52.37]").max_distance == 0
    assert parse_geo("near;maxDistance==2.5e3", "Point", "[4.90,52.37]").max_distance == 2500
    far = parse_geo("near;minDistance==2000", "Point", "[4.90,52.37]")
    assert geo_matches(far, (5.1214, 52.0907))
    within = parse_geo("within", "Polygon", SQUARE)
    assert geo_matches(within, AMSTERDAM)
    assert not geo_matches(within, (5.1214, 52.0907))
    assert geo_matches(parse_geo("disjoint", "Polygon", SQUARE), (5.1214, 52.0907))
    assert geo_matches(parse_geo("equals", "Point", "[4.8952,52.3702]"), AMSTERDAM)


@pytest.mark.parametrize(
    ("georel", "geometry", "coordinates", "parameter"),
    [
        ("around", "Point", "[4.9,52.3]", "georel"),
        ("near", "Point", "[4.9,52.3]", "georel"),
        ("near;maxDistance==-1", "Point", "[4.9,52.3]", "georel"),
        ("near;maxDistance==NaN", "Point", "[4.9,52.3]", "georel"),
        ("near;maxDistance==nan", "Point", "[4.9,52.3]", "georel"),
        ("near;maxDistance==inf", "Point", "[4.9,52.3]", "georel"),
        ("near;minDistance==-inf", "Point", "[4.9,52.3]", "georel"),
        ("near;maxDistance==1e999", "Point", "[4.9,52.3]", "georel"),
        ("near;maxDistance==1_000", "Point", "[4.9,52.3]", "georel"),
        ("near;maxDistance==", "Point", "[4.9,52.3]", "georel"),
        ("near;maxDistance==2000", "Polygon", SQUARE, "geometry"),
        ("within", "LineString", "[[4.9,52.3],[5,52]]", "geometry"),
        ("within", "Polygon", "[[[4.8,52.3],[5.0,52.3],[5.0,52.4]]]", "coordinates"),
        ("within", "Polygon", "[[[4.8,52.3],[5.0,52.3],[5.0,52.4],[4.9,52.4]]]", "coordinates"),
        ("within", "Point", "[200,52.3]", "coordinates"),
        ("within", "Point", "not json", "coordinates"),
        ("within", "Point", None, "coordinates"),
    ],
)
def test_bad_geo_queries(
    georel: str, geometry: str, coordinates: str | None, parameter: str
) -> None:
    with pytest.raises(BadQuery) as caught:
        parse_geo(georel, geometry, coordinates)
    assert caught.value.parameter == parameter


@pytest.mark.parametrize(
    ("accept", "ld"),
    [
        (None, False),
        ("*/*", False),
        ("application/json", False),
        ("application/ld+json", True),
        ("application/json, application/ld+json", True),
        ("application/ld+json;q=0.5, application/json", False),
        ("application/json;q=0.5, application/ld+json;q=0.9", True),
        ("text/html, */*;q=0.1", False),
        ("application/*", False),
    ],
)
def test_the_answers_form_follows_accept(accept: str | None, ld: bool) -> None:
    from aiohttp.test_utils import make_mocked_request

    from cityhub.streams.ngsi_ld.params import wants_ld

    headers = {} if accept is None else {"Accept": accept}
    assert wants_ld(make_mocked_request("GET", "/ngsi-ld/v1/entities", headers=headers)) is ld


@pytest.mark.parametrize("accept", ["text/html", "application/ld+json;q=0, text/html"])
def test_an_accept_of_neither_is_406(accept: str) -> None:
    from aiohttp.test_utils import make_mocked_request

    from cityhub.streams.ngsi_ld.params import NgsiError, wants_ld

    with pytest.raises(NgsiError) as caught:
        wants_ld(make_mocked_request("GET", "/", headers={"Accept": accept}))
    assert caught.value.status == 406


@pytest.mark.parametrize(
    ("query", "simple"),
    [
        ("", False),
        ("?options=keyValues", True),
        ("?options=normalized", False),
        ("?format=simplified", True),
        ("?format=normalized", False),
        ("?options=keyValues&format=simplified", True),
    ],
)
def test_the_form_options(query: str, simple: bool) -> None:
    from aiohttp.test_utils import make_mocked_request

    from cityhub.streams.ngsi_ld.params import key_values

    assert key_values(make_mocked_request("GET", "/ngsi-ld/v1/entities" + query)) is simple


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("?options=foo", "options"),
        ("?options=", "options"),
        ("?options=keyValues,sysAttrs", "options"),
        ("?options=keyValues,normalized", "options"),
        ("?options=keyValues&format=normalized", "options"),
        ("?format=concise", "format"),
        ("?count=maybe", "count"),
        ("?count=TRUE", "count"),
        ("?count=", "count"),
    ],
)
def test_bad_form_options_and_count_are_bad_request_data(query: str, parameter: str) -> None:
    from aiohttp.test_utils import make_mocked_request

    from cityhub.streams.ngsi_ld.params import NgsiError, count_param, key_values

    request = make_mocked_request("GET", "/ngsi-ld/v1/entities" + query)
    with pytest.raises(NgsiError) as caught:
        count_param(request) if parameter == "count" else key_values(request)
    assert (caught.value.status, caught.value.name) == (400, "BadRequestData")
    assert caught.value.detail.startswith(parameter + ": ")


@pytest.mark.parametrize(
    ("query", "count"), [("", False), ("?count=true", True), ("?count=false", False)]
)
def test_count(query: str, count: bool) -> None:
    from aiohttp.test_utils import make_mocked_request

    from cityhub.streams.ngsi_ld.params import count_param

    assert count_param(make_mocked_request("GET", "/ngsi-ld/v1/entities" + query)) is count


@pytest.mark.parametrize(
    ("time_at", "says"),
    [
        ("0001-01-01T00:00:00Z", "from 1970-01-01T00:00:00Z up to"),
        ("2150-06-01T00:00:00Z", "outside the times cityhub takes"),
        ("2026-02-30T00:00:00Z", "not a day and time of the calendar"),
        ("yesterday", "YYYY-MM-DDTHH:MM:SS"),
    ],
)
def test_a_time_it_does_not_take_says_why_without_echoing_it(time_at: str, says: str) -> None:
    from urllib.parse import quote

    from aiohttp.test_utils import make_mocked_request

    from cityhub.streams.ngsi_ld.params import NgsiError, time_range

    query = f"?timerel=after&timeAt={quote(time_at)}"
    with pytest.raises(NgsiError) as caught:
        time_range(make_mocked_request("GET", "/ngsi-ld/v1/temporal/entities" + query))
    assert (caught.value.status, caught.value.name) == (400, "BadRequestData")
    assert caught.value.detail.startswith("timeAt: is not a time this API takes: ")
    assert says in caught.value.detail
    assert time_at not in caught.value.detail


def test_deep_nesting_is_a_bad_query_not_a_recursion_error() -> None:
    # Found by fuzzing: 340 parentheses in q, and coordinates nested 1 000 deep, were 500s.
    assert parse_q("(" * 20 + "pm25>10" + ")" * 20) == Term(("pm25",), ">", 10)
    with pytest.raises(BadQuery, match="nest at most 20 deep"):
        parse_q("(" * 21 + "pm25>10" + ")" * 21)
    with pytest.raises(BadQuery, match="nest at most"):
        parse_q("(" * 340 + "a==1" + ")" * 340)
    for coordinates in ("[" * 1000 + "]" * 1000, "[" * 2000 + "]" * 2000, "[NaN, 52.3]"):
        with pytest.raises(BadQuery) as refused:
            parse_geo("near;maxDistance==10", "Point", coordinates)
        assert refused.value.parameter == "coordinates"
