"""The SensorThings service's answers over registry-backed entities, without a database:
paths, navigation, paging links, $select, $expand, $ref, $value and the errors."""

from __future__ import annotations

from typing import Any

import pytest

from cityhub.schemas.settings import SensorThingsSettings
from cityhub.streams.history.queries import Viewer as HistoryViewer
from cityhub.streams.sensorthings import service as service_module
from cityhub.streams.sensorthings.expr import QueryError
from cityhub.streams.sensorthings.ids import entity_id
from cityhub.streams.sensorthings.model import Graph, StreamFacts, Viewer
from cityhub.streams.sensorthings.service import Context, Missing, answer
from tests.unit.test_sta_model import DEVICES, STREAMS, T0, TYPES

BASE = "http://hub.example/sta/v1.1"


def context(top: int = 100) -> Context:
    graph = Graph(DEVICES, TYPES, STREAMS, Viewer("city"))
    settings = SensorThingsSettings(default_top=min(top, 100), max_top=top)
    return Context(graph, HistoryViewer.of_tenant("city"), BASE, settings, None)


async def get(path: str, **options: str) -> dict[str, Any]:
    result = await answer(context(), path, options)
    assert result.document is not None
    return result.document


THING = entity_id("Thing", "air-1")


async def test_root_and_collections() -> None:
    root = await get("")
    assert root["value"][0]["name"] == "Things"
    things = await get("Things")
    assert {t["name"] for t in things["value"]} == {"air-1", "noise-1"}
    first = things["value"][0]
    assert first["@iot.selfLink"] == f"{BASE}/Things({first['@iot.id']})"
    assert (
        first["Datastreams@iot.navigationLink"] == f"{BASE}/Things({first['@iot.id']})/Datastreams"
    )


async def test_paging_links_keep_the_other_options() -> None:
    result = await answer(context(top=1), "Things", {"$filter": "name ne 'x'", "$count": "true"})
    doc = result.document
    assert doc is not None
    assert doc["@iot.count"] == 2
    assert len(doc["value"]) == 1
    assert doc["@iot.nextLink"] == (
        f"{BASE}/Things?$filter=name%20ne%20'x'&$count=true&$top=1&$skip=1"
    )


async def test_navigation_select_expand_ref_and_value() -> None:
    streams = await get(f"Things({THING})/Datastreams")
    assert [s["name"] for s in streams["value"]] == ["air-1 temperature"]
    sensor = await get(f"Things({THING})/Datastreams({streams['value'][0]['@iot.id']})/Sensor")
    assert sensor["name"] == "air"
    picked = await get(f"Things({THING})", **{"$select": "name,Locations"})
    assert set(picked) == {"@iot.selfLink", "name", "Locations@iot.navigationLink"}
    expanded = await get(
        f"Things({THING})", **{"$expand": "Datastreams/ObservedProperty,Locations"}
    )
    assert expanded["Datastreams"][0]["ObservedProperty"]["name"] == "temperature"
    assert expanded["Locations"][0]["location"]["type"] == "Point"
    refs = await get(f"Things({THING})/Locations/$ref")
    assert refs["value"] == [
        {"@iot.selfLink": f"{BASE}/Locations({entity_id('Location', 'air-1')})"}
    ]
    assert await get(f"Things({THING})/name") == {"name": "air-1"}
    raw = await answer(context(), f"Things({THING})/name/$value", {})
    assert raw.text == "air-1"
    location = await answer(
        context(), f"Locations({entity_id('Location', 'air-1')})/location/$value", {}
    )
    assert location.text is not None
    assert location.text.startswith("{")


@pytest.mark.parametrize(
    "path",
    [
        "Nothing",
        f"Things({entity_id('Thing', 'park-1')})",  # another tenant's internal device
        f"Things({entity_id('Thing', 'room-1')})",  # personal
        "Things(1)",
        "Things('air-1')",
        f"Things({THING})/nosuch",
        f"Things({THING})/Datastreams(1)",
        f"Things({THING})/name/$value/more",
        "Things/name",
    ],
)
async def test_missing_entities(path: str) -> None:
    with pytest.raises(Missing):
        await answer(context(), path, {})


@pytest.mark.parametrize(
    "options",
    [
        {"$select": "nosuch"},
        {"$expand": "Sensors"},
        {"$filter": "nosuch eq 1"},
        {"$filter": "Datastreams/Observations/result gt 1"},
        {"$orderby": "name sideways"},
    ],
)
async def test_bad_options(options: dict[str, str]) -> None:
    with pytest.raises(QueryError):
        await answer(context(), "Things", options)


async def test_without_a_history_store_there_are_no_observations() -> None:
    doc = await get("Observations", **{"$count": "true"})
    assert doc == {"@iot.count": 0, "value": []}
    with pytest.raises(Missing):
        await answer(context(), "Observations(5)", {})


async def test_an_expanded_collections_next_link_keeps_its_own_options() -> None:
    doc = await get(
        "Sensors", **{"$expand": "Datastreams($top=1;$filter=name ne 'x';$select=name)"}
    )
    air = next(s for s in doc["value"] if s["name"] == "air")
    assert "Datastreams@iot.nextLink" not in air  # one Datastream: no next page
    empty = await get(f"Things({THING})", **{"$expand": "Locations($top=0)"})
    assert empty["Locations"] == []
    assert "Locations@iot.nextLink" not in empty  # $top=0 has no next page
    result = await answer(
        context(top=1), "Sensors", {"$expand": "Datastreams($top=1;$select=name)", "$top": "1"}
    )
    assert result.document is not None
    expand = "Datastreams($top%3D1%3B$select%3Dname)"  # '=' and ';' inside a value: encoded
    assert result.document["@iot.nextLink"] == f"{BASE}/Sensors?$expand={expand}&$top=1&$skip=1"


async def test_a_response_that_takes_too_long_to_build_is_refused() -> None:
    """Nested expands read one collection per parent: within the entity cap a review's
    four-level expand took 10 s (35 s with four at once). Past the build time: a 400."""
    ticks = iter([0.0, 0.1, 0.2, 0.3] + [5.1] * 50)
    ctx = context()
    ctx.clock = lambda: next(ticks)
    ctx.started = ctx.clock()
    with pytest.raises(QueryError, match="took more than 5 s to build"):
        await answer(ctx, "Things", {"$expand": "Datastreams/ObservedProperty,Locations"})


@pytest.mark.parametrize(
    "options",
    [
        # Found by a fuzzer: each was a RecursionError or an OverflowError (a 500).
        {"$expand": "/".join(["Locations", "Things"] * 170)},
        {"$expand": "A/" * 1000 + "A," + "A/" * 1000 + "A"},
        {"$filter": "/".join(["Locations", "Things"] * 240) + "/name eq 'x'"},
        {"$filter": "year(0001-01-01T00:00:00+01:00) eq 1"},
        {"$filter": "hour(9999-12-31T23:59:59-23:59) eq 1"},
        {"$orderby": "date(0001-01-01T00:00:00+01:00)"},
        # a quoted time is a string until a date function reads it: the same 400
        {"$filter": "year('0001-01-01T00:00:00+01:00') eq 1"},
        {"$orderby": "date('9999-12-31T23:59:59-23:59')"},
    ],
)
async def test_crafted_options_are_400s(options: dict[str, str]) -> None:
    with pytest.raises(QueryError):
        await answer(context(), "Things", options)


async def test_a_deep_expand_within_the_limit_is_answered() -> None:
    levels = "/".join(["Locations", "Things"] * 16)  # 32 levels: the most taken
    doc = await get(f"Things({THING})", **{"$expand": levels})
    for _ in range(16):
        doc = doc["Locations"][0]
        doc = doc["Things"][0]
    assert doc["@iot.id"] == THING


async def test_a_path_back_and_forth_reaches_each_entity_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Noticed while fixing the fuzzer's findings: each to-many step multiplied the entities
    # reached (6 Datastreams of one Thing, 7 round trips: 6**7 = 279 936 of them per Thing).
    quantities = ("temperature", "pm10", "pm2_5", "no2", "o3", "relative_humidity")
    streams = [StreamFacts("air-1", q, "Cel", T0, T0, True) for q in quantities]
    graph = Graph(DEVICES, TYPES, streams, Viewer("city"))
    ctx = Context(graph, HistoryViewer.of_tenant("city"), BASE, SensorThingsSettings(), None)
    calls = 0
    real = service_module.related

    def counted(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args)

    monkeypatch.setattr(service_module, "related", counted)
    path = "/".join(["Datastreams", "Thing"] * 7)
    result = await answer(ctx, "Things", {"$filter": f"{path}/name eq 'air-1'"})
    assert result.document is not None
    assert [t["name"] for t in result.document["value"]] == ["air-1"]
    assert calls < 500  # each Thing's 14 steps over at most 6 entities each
