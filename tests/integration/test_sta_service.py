"""The SensorThings service over HTTP, on the real history store (PostgreSQL, a schema of this
module's own): entity sets, navigation, query options, paging, errors and the visibility rule
seen from both tenants' keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from cityhub.schemas.settings import Settings
from cityhub.streams.sensorthings.ids import entity_id
from tests.integration.sta_data import READINGS, Keys, seed_history, seed_registry, serve

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seeded(history_settings: Settings) -> Settings:
    import asyncio

    asyncio.run(seed_history(history_settings))
    return history_settings


class Client:
    def __init__(self, session: aiohttp.ClientSession, root: str, keys: Keys) -> None:
        self.session = session
        self.root = root
        self.keys = keys

    async def get(self, path: str, key: str | None, **query: str) -> tuple[int, Any]:
        headers = {} if key is None else {"X-API-Key": key}
        url = self.root + path
        if query:
            url += "?" + "&".join(f"{k}={quote(v, safe='$(),/:')}" for k, v in query.items())
        async with self.session.get(url, headers=headers) as response:
            if response.content_type == "text/plain":
                return response.status, await response.text()
            return response.status, await response.json(content_type=None)


@pytest.fixture
async def sta(seeded: Settings) -> AsyncIterator[Client]:
    registry, keys = await seed_registry()
    async with serve(registry, seeded) as root, aiohttp.ClientSession() as session:
        yield Client(session, root, keys)


CENTRE = "4.8 52.3, 5.0 52.3, 5.0 52.4, 4.8 52.4, 4.8 52.3"


def _ids(doc: dict[str, Any]) -> set[int]:
    return {e["@iot.id"] for e in doc["value"]}


def _thing(device: str) -> int:
    return entity_id("Thing", device)


def _stream(device: str, quantity: str) -> int:
    return entity_id("Datastream", f"{device}:{quantity}")


async def test_the_root_lists_every_entity_set_and_needs_a_key(sta: Client) -> None:
    status, doc = await sta.get("", None)
    assert status == 401
    status, doc = await sta.get("", sta.keys.city)
    assert status == 200
    names = {entry["name"]: entry["url"] for entry in doc["value"]}
    assert names["Things"] == sta.root + "/Things"
    assert len(names) == 8
    assert doc["serverSettings"]["conformance"]


async def test_a_tenant_sees_its_own_and_public_things_never_personal_ones(sta: Client) -> None:
    _, city = await sta.get("/Things", sta.keys.city)
    assert _ids(city) == {_thing(d) for d in ("air-1", "air-2", "noise-1", "wx-1")}
    _, other = await sta.get("/Things", sta.keys.other)
    assert _ids(other) == {_thing(d) for d in ("park-1", "wx-1", "noise-1")}
    _, admin = await sta.get("/Things", sta.keys.admin)
    assert _thing("room-1") not in _ids(admin)  # personal: nobody, not even an admin
    assert len(admin["value"]) == 5


async def test_another_tenants_internal_entities_are_not_found(sta: Client) -> None:
    status, _ = await sta.get(f"/Things({_thing('air-1')})", sta.keys.other)
    assert status == 404
    status, _ = await sta.get(
        f"/Datastreams({_stream('air-1', 'pm2_5')})/Observations", sta.keys.other
    )
    assert status == 404
    _, observations = await sta.get("/Observations", sta.keys.other, **{"$top": "1000"})
    # park-1 occupancy, wx-1 temperature and wind, noise-1 (public) sound level; none of city's
    assert len(observations["value"]) == READINGS * 4
    _, filtered = await sta.get(
        "/Observations",
        sta.keys.other,
        **{"$filter": "Datastream/Thing/name eq 'air-1 at 52.37,4.89'"},
    )
    assert filtered["value"] == []


async def test_datastreams_carry_ucum_units_and_observations_page(sta: Client) -> None:
    stream = _stream("air-1", "pm2_5")
    status, doc = await sta.get(f"/Datastreams({stream})", sta.keys.city)
    assert status == 200
    assert doc["unitOfMeasurement"]["symbol"] == "ug/m3"
    assert doc["observationType"].endswith("OM_Measurement")
    status, page = await sta.get(
        f"/Datastreams({stream})/Observations",
        sta.keys.city,
        **{"$top": "5", "$orderby": "phenomenonTime asc", "$count": "true"},
    )
    assert status == 200
    assert page["@iot.count"] == READINGS
    assert [o["result"] for o in page["value"]] == [1.0, 2.0, 3.0, 4.0, 5.0]
    async with sta.session.get(page["@iot.nextLink"], headers={"X-API-Key": sta.keys.city}) as r:
        second = await r.json()
    assert [o["result"] for o in second["value"]] == [6.0, 7.0, 8.0, 9.0, 10.0]
    one = page["value"][0]
    status, again = await sta.get(f"/Observations({one['@iot.id']})", sta.keys.city)
    assert status == 200
    assert again["phenomenonTime"] == one["phenomenonTime"]


async def test_filters_on_observations_compile_to_sql(sta: Client) -> None:
    stream = _stream("air-1", "pm2_5")
    _, doc = await sta.get(
        "/Observations",
        sta.keys.city,
        **{
            "$filter": f"Datastream/id eq {stream} and result ge 10 and "
            "phenomenonTime lt 2026-11-01T11:00:00Z",
            "$orderby": "result desc",
        },
    )
    assert [o["result"] for o in doc["value"]] == [11.0, 10.0]
    _, text = await sta.get(
        "/Observations",
        sta.keys.city,
        **{"$filter": f"Datastream/id eq {stream} and result gt '3'", "$count": "true"},
    )
    # Compared as the values' JSON text, as FROST-Server and the OGC suite do: '3.0' .. '9.0'
    # are above '3', '10.0' .. '12.0' are not.
    assert text["@iot.count"] == 7


async def test_expand_select_and_geo_filters(sta: Client) -> None:
    _, doc = await sta.get(
        f"/Things({_thing('air-1')})",
        sta.keys.city,
        **{
            "$expand": "Datastreams($top=1;$expand=Observations($top=3)),Locations",
            "$select": "name",
        },
    )
    assert set(doc) >= {"name", "Datastreams", "Locations"}
    assert "description" not in doc
    assert len(doc["Datastreams"][0]["Observations"]) == 3
    _, near = await sta.get(
        "/Locations",
        sta.keys.city,
        **{"$filter": f"st_within(location, geography'POLYGON(({CENTRE}))')"},
    )
    assert {loc["name"].split(" ")[0] for loc in near["value"]} == {"air-1", "air-2", "noise-1"}


async def test_bad_queries_are_400_and_unknown_entities_404(sta: Client) -> None:
    for query in ({"$filter": "name eq"}, {"$top": "-1"}, {"$orderby": "nonsense("}, {"$foo": "1"}):
        status, doc = await sta.get("/Things", sta.keys.city, **query)
        assert status == 400, query
        assert doc["status"] == 400
        assert doc["detail"]
    for overflow in (
        "result mul 1e300 mul 1e300 gt 1",
        "result add 1e308 add 1e308 gt 0",
        "substring('abc', 99999999999) eq 'x'",
        "substring(result,2147483648) eq 'a'",
    ):
        status, doc = await sta.get("/Observations", sta.keys.city, **{"$filter": overflow})
        assert status == 400, (overflow, doc)
        assert doc["status"] == 400
        # in words a client can act on, not PostgreSQL's SQLSTATE (22003)
        assert doc["detail"] == (
            "The filter computes a number or a position out of range; use smaller values."
        ), overflow
    status, _ = await sta.get("/Things(9223372036854775807)", sta.keys.city)
    assert status == 404
    status, _ = await sta.get("/Observations(9223372036854775807)", sta.keys.city)
    assert status == 404
    status, _ = await sta.get("/Nothing", sta.keys.city)
    assert status == 404
    headers = {"X-API-Key": sta.keys.city}
    async with sta.session.post(sta.root + "/Things", json={"name": "x"}, headers=headers) as r:
        assert r.status == 405  # read only


async def test_a_query_option_given_twice_is_400(sta: Client) -> None:
    # As /api/v1 answers a key given twice: never one of the two quietly.
    for path in (
        "/Things?$filter=name eq 'a'&$filter=name eq 'b'",
        "/Observations?$top=1&$top=5",
        "/Things?$select=name&$expand=Locations&$select=id",
    ):
        status, doc = await sta.get(path.replace(" ", "%20"), sta.keys.city)
        assert status == 400, (path, doc)
        name = path.split("?")[1].split("&")[-1].split("=")[0]
        assert doc["detail"] == f"{name}: given more than once; give it once", path
        assert doc["errors"] == [{"field": name, "message": "given more than once; give it once"}]
    status, _ = await sta.get("/Things?$top=1&custom=a&custom=b", sta.keys.city)
    assert status == 200  # options that are not $ ones are the client's own (OData)


async def test_properties_values_and_refs(sta: Client) -> None:
    thing = _thing("air-1")
    status, doc = await sta.get(f"/Things({thing})/name", sta.keys.city)
    assert status == 200
    assert list(doc) == ["name"]
    status, text = await sta.get(f"/Things({thing})/name/$value", sta.keys.city)
    assert status == 200
    assert text.startswith("air-1")
    status, refs = await sta.get(f"/Things({thing})/Datastreams/$ref", sta.keys.city)
    assert status == 200
    assert all(list(r) == ["@iot.selfLink"] for r in refs["value"])


PROPERTIES = {
    "Things": ("name", "description"),
    "Locations": ("name", "description", "encodingType"),
    "HistoricalLocations": ("time",),
    "Datastreams": ("name", "description", "observationType"),
    "Sensors": ("name", "description", "encodingType", "metadata"),
    "ObservedProperties": ("name", "definition", "description"),
    "Observations": ("phenomenonTime", "result", "resultTime"),
    "FeaturesOfInterest": ("name", "description", "encodingType"),
}
"""The properties the OGC suite's filtering class compares in each set (all but the JSON ones)."""

_HOLDS = {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "ge": lambda a, b: a >= b,
    "gt": lambda a, b: a > b,
}


def _literal(value: Any) -> str:
    if isinstance(value, str) and len(value) == 20 and value.endswith("Z") and "T" in value:
        return value  # a time: unquoted, as the suite writes them
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


@pytest.mark.parametrize("entity_set", list(PROPERTIES))
async def test_every_comparison_on_every_property_returns_exactly_the_matching_entities(
    sta: Client, entity_set: str
) -> None:
    # What the OGC filtering class checks, on this module's data: each of lt le eq ne ge gt
    # with the first entity's value returns exactly the entities the comparison holds for.
    _, everything = await sta.get(f"/{entity_set}", sta.keys.city, **{"$top": "1000"})
    entities = everything["value"]
    assert entities, entity_set
    for name in PROPERTIES[entity_set]:
        sample = entities[0][name]
        for op, holds in _HOLDS.items():
            status, doc = await sta.get(
                f"/{entity_set}",
                sta.keys.city,
                **{"$filter": f"{name} {op} {_literal(sample)}", "$top": "1000"},
            )
            assert status == 200, (entity_set, name, op, doc)
            expected = {e["@iot.id"] for e in entities if holds(e[name], sample)}
            assert _ids(doc) == expected, (entity_set, name, op)


_TOKENS = (
    "(",
    ")",
    "'",
    ",",
    "/",
    "-",
    " ",
    "eq",
    "ne",
    "gt",
    "lt",
    "and",
    "or",
    "not",
    "add",
    "sub",
    "mul",
    "div",
    "mod",
    "geo.intersects(",
    "st_within(",
    "geography'POINT(1 2)'",
    "1",
    "0",
    "2.5",
    "'x'",
    "'2026-11-01T03:00:00Z'",
    "2026-11-01T03:00:00Z",
    "null",
    "true",
    "result",
    "phenomenonTime",
    "resultTime",
    "id",
    "name",
    "location",
    "Datastream/id",
    "Datastream/Thing/name",
    "FeatureOfInterest/feature",
    "Datastream/ObservedProperty/name",
    "length(",
    "substring(",
    "substringof(",
    "year(",
    "round(",
    "tolower(",
    "concat(",
    "now()",
)


async def test_no_filter_makes_a_server_error(sta: Client) -> None:
    import random

    chooser = random.Random(11)
    answered: dict[int, int] = {}
    sides = (
        "result",
        "phenomenonTime",
        "resultTime",
        "id",
        "name",
        "Datastream/id",
        "Datastream/Thing/name",
        "length(name)",
        "year(phenomenonTime)",
        "result add 1",
        "round(result)",
        "'3'",
        "2026-11-01T03:00:00Z",
        "null",
        "1",
        "true",
    )
    ops = ("eq", "ne", "gt", "ge", "lt", "le")
    for n in range(400):
        if n % 2:  # token soup: mostly 400s
            text = "".join(chooser.choice(_TOKENS) for _ in range(chooser.randint(1, 10)))
        else:  # well-formed comparisons of any two sides: types may clash (400), never 500
            text = " ".join((chooser.choice(sides), chooser.choice(ops), chooser.choice(sides)))
            if chooser.random() < 0.3:
                text = f"not ({text}) or {chooser.choice(sides)} eq {chooser.choice(sides)}"
        for entity_set in ("Observations", "Things", "Datastreams"):
            status, _ = await sta.get(f"/{entity_set}", sta.keys.city, **{"$filter": text})
            answered[status] = answered.get(status, 0) + 1
            assert status in (200, 400), (entity_set, text, status)
    assert answered.get(200, 0) > 100  # the generator does reach valid filters


async def test_datastreams_read_recent_rows_between_whole_reads(seeded: Settings) -> None:
    import asyncio
    import uuid
    from datetime import UTC, datetime

    from cityhub.streams.history.connection import ConnectionPool, connect
    from cityhub.streams.sensorthings.observations import HistoryReads

    reads = HistoryReads(ConnectionPool(seeded, size=1), refresh_seconds=0.05)
    try:
        first = await reads.streams()
        assert ("ghost-1", "co2") not in {(s.device_id, s.quantity) for s in first}
        now = datetime.now(UTC)
        async with await connect(seeded, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO observations (event_id, observed_at, received_at, tenant, device_id,"
                " quantity, unit, value_number, classification, doc) VALUES (%s, %s, %s, 'city',"
                " 'ghost-1', 'co2', 'ppm', 400, 'internal', '{\"value\": 400}')",
                (uuid.uuid4(), now, now),
            )
        await asyncio.sleep(0.1)
        second = await reads.streams()
        pairs = {(s.device_id, s.quantity): s for s in second}
        assert pairs[("ghost-1", "co2")].unit == "ppm"
        assert len(second) == len(first) + 1  # the earlier pairs kept from the whole read
        assert reads.version == 2
    finally:
        await reads.close()


async def test_spatial_filters_through_navigation(sta: Client) -> None:
    # Rotterdam's devices (park-1, wx-1) lie outside CENTRE, Amsterdam's inside it.
    within = f"st_within(FeatureOfInterest/feature, geography'POLYGON(({CENTRE}))')"
    _, inside = await sta.get(
        "/Observations", sta.keys.admin, **{"$filter": within, "$top": "1000"}
    )
    # air-1 (2 quantities), air-2 and noise-1: four Datastreams; room-1 is personal
    assert len(inside["value"]) == READINGS * 4
    _, outside = await sta.get(
        "/Observations", sta.keys.admin, **{"$filter": f"not {within}", "$top": "1000"}
    )
    assert len(outside["value"]) == READINGS * 3  # park-1, wx-1 (2)
    _, streams = await sta.get(
        "/Datastreams",
        sta.keys.admin,
        **{"$filter": f"st_within(Thing/Locations/location, geography'POLYGON(({CENTRE}))')"},
    )
    assert {s["properties"]["device_id"] for s in streams["value"]} == {"air-1", "air-2", "noise-1"}


async def test_requests_are_counted_with_the_apis_metrics(sta: Client) -> None:
    from prometheus_client import REGISTRY

    def answered(status: str) -> float:
        labels = {"route": "/sta/v1.1/{path}", "method": "GET", "status": status}
        return REGISTRY.get_sample_value("cityhub_api_requests_total", labels) or 0.0

    before = {status: answered(status) for status in ("200", "400", "401", "404")}
    await sta.get("/Things", sta.keys.city)
    await sta.get("/Things", sta.keys.city, **{"$filter": "nonsense eq"})
    await sta.get("/Things", None)
    await sta.get("/Things(1)", sta.keys.city)
    for status in before:
        assert answered(status) == before[status] + 1, status
