"""The NGSI-LD API over the real history store (PostgreSQL of the local stack, a schema of this
module's own) and an in-memory registry: queries, one entity, the temporal representation, who
sees what (tested from the other tenant's side), the context in the body or in a Link header,
NGSI-LD errors, and every document served expanded by a JSON-LD processor (pyld, offline).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy
from pyld import jsonld

from cityhub.connectors.ngsi_ld.context import (
    CORE_CONTEXT_URL,
    context_document,
    core_context_document,
)
from cityhub.schemas.registry import (
    Classification,
    DeviceSpec,
    DeviceTypeSpec,
    FieldMapping,
    Location,
    NgsiLdSpec,
    Role,
    SmartDataModel,
    TenantSpec,
)
from cityhub.schemas.settings import Settings
from cityhub.streams.api.app import build_api
from cityhub.streams.history.connection import connect
from cityhub.streams.history.reads import Viewer
from cityhub.streams.ngsi_ld.api import NGSI_VALUES_KEY
from cityhub.streams.ngsi_ld.source import HistoryValues
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore

from .history_rows import OBSERVATION_INSERT, observation_row

pytestmark = pytest.mark.integration

NGSI = "https://uri.etsi.org/ngsi-ld/"
ENV = "https://smartdatamodels.org/dataModel.Environment/"
LD = {"Accept": "application/ld+json"}
T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
AMSTERDAM = Location(latitude=52.3702, longitude=4.8952)
UTRECHT = Location(latitude=52.0907, longitude=5.1214)


def _row(
    device_id: str, tenant: str, quantity: str, value: Any, unit: str | None, **kw: Any
) -> dict[str, Any]:
    row = observation_row(device_id=device_id, tenant=tenant, quantity=quantity, value=value, **kw)
    row["unit"] = unit
    return row


ROWS = [
    _row("aq-1", "acme", "pm2_5", 9.0, "ug/m3", observed_at=T0, classification="internal"),
    _row(
        "aq-1",
        "acme",
        "pm2_5",
        14.0,
        "ug/m3",
        observed_at=T0 + timedelta(minutes=5),
        classification="internal",
    ),
    _row(
        "aq-1",
        "acme",
        "pm2_5",
        11.0,
        "ug/m3",
        observed_at=T0 + timedelta(minutes=10),
        classification="internal",
    ),
    _row("aq-1", "acme", "temperature", 7.5, "Cel", observed_at=T0, classification="internal"),
    _row("park-1", "acme", "occupancy", 1.0, None, observed_at=T0, classification="public"),
    _row(
        "room-1",
        "acme",
        "temperature",
        None,
        "Cel",
        observed_at=T0,
        classification="personal",  # type: ignore[arg-type]
        data_subject="resident-0001",
    ),
    _row("noise-1", "beta", "sound_level", 61.5, "dB", observed_at=T0, classification="public"),
    _row("th-1", "beta", "temperature", 19.0, "Cel", observed_at=T0, classification="internal"),
]


@dataclass
class Ngsi:
    client: TestClient[Any, Any]
    keys: dict[str, str]

    async def get(
        self, path: str, who: str | None = "op_a", headers: dict[str, str] | None = None
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        sent = dict(headers or {})
        if who is not None:
            sent["Authorization"] = f"Bearer {self.keys[who]}"
        async with self.client.get(path, headers=sent) as response:
            body = await response.json(content_type=None) if response.status != 204 else None
            return response.status, body, response.headers

    def context_url(self) -> str:
        return str(self.client.make_url("/ngsi-ld/v1/context.jsonld"))

    def loader(self, url: str, options: Any = None) -> dict[str, Any]:
        """Serves the core context and the hub's from local copies; nothing else."""
        documents = {
            CORE_CONTEXT_URL: core_context_document(),
            self.context_url(): context_document(),
        }
        assert url in documents, f"the processor asked for {url}"
        return {"contextUrl": None, "documentUrl": url, "document": documents[url]}

    def expand(self, doc: Any) -> list[dict[str, Any]]:
        return jsonld.expand(doc, {"documentLoader": self.loader})  # type: ignore[no-any-return]


async def _seed(registry: Registry) -> dict[str, str]:
    system = Principal.system()
    for tenant in ("acme", "beta"):
        await registry.create_tenant(system, TenantSpec(id=tenant, name=tenant.title()))
    types = [
        (
            "acme",
            DeviceTypeSpec(
                id="aq", name="Air", fields=[FieldMapping(field="pm25", quantity="pm2_5")]
            ),
        ),
        (
            "acme",
            DeviceTypeSpec(
                id="park",
                name="Parking",
                classification=Classification.PUBLIC,
                ngsi_ld=NgsiLdSpec(model=SmartDataModel.PARKING_SPOT),
            ),
        ),
        ("acme", DeviceTypeSpec(id="room", name="Room", classification=Classification.PERSONAL)),
        (
            "beta",
            DeviceTypeSpec(
                id="noise",
                name="Noise",
                classification=Classification.PUBLIC,
                ngsi_ld=NgsiLdSpec(model=SmartDataModel.NOISE_LEVEL_OBSERVED),
            ),
        ),
        ("beta", DeviceTypeSpec(id="th", name="Thermo")),
    ]
    for tenant, spec in types:
        await registry.create_type(system, tenant, spec)
    devices = [
        (
            "acme",
            DeviceSpec(id="aq-1", name="Damrak air", type="aq", location=AMSTERDAM, area="centrum"),
        ),
        ("acme", DeviceSpec(id="park-1", name="Bay 1", type="park", location=AMSTERDAM)),
        ("acme", DeviceSpec(id="room-1", name="Room 1", type="room")),
        ("beta", DeviceSpec(id="noise-1", name="Neude noise", type="noise", location=UTRECHT)),
        ("beta", DeviceSpec(id="th-1", name="Thermo 1", type="th", location=UTRECHT)),
    ]
    for tenant, device in devices:
        await registry.create_device(system, tenant, device)
    await registry.set_device_subject(system, "acme", "room-1", "resident-0001")
    keys = {}
    for name, tenant, role in (
        ("admin", "acme", Role.ADMIN),
        ("op_a", "acme", Role.OPERATOR),
        ("sub_b", "beta", Role.SUBSCRIBER),
    ):
        _, secret = await registry.create_key(system, tenant, role, name)
        keys[name] = secret
    return keys


@pytest.fixture
async def ngsi(history_settings: Settings) -> AsyncIterator[Ngsi]:
    async with await connect(history_settings, autocommit=True) as conn, conn.cursor() as cur:
        await cur.execute("SELECT count(*) FROM observations")
        row = await cur.fetchone()
        if row is None or row[0] == 0:
            await cur.executemany(OBSERVATION_INSERT, ROWS)
    store = InMemoryRegistryStore()
    await store.start()
    registry = Registry(store)
    keys = await _seed(registry)
    app = build_api(registry)
    await app[NGSI_VALUES_KEY].close()
    app[NGSI_VALUES_KEY] = HistoryValues(history_settings)
    async with TestClient(TestServer(app)) as client:
        yield Ngsi(client, keys)
    await store.stop()


async def test_the_context_document_needs_no_key_and_processes(ngsi: Ngsi) -> None:
    status, body, headers = await ngsi.get("/ngsi-ld/v1/context.jsonld", who=None)
    assert status == 200
    assert headers["Content-Type"].startswith("application/ld+json")
    assert body == context_document()
    node = ngsi.expand({"@context": ngsi.context_url(), "@id": "urn:x", "LAeq": 1})[0]
    assert node[ENV + "LAeq"] == [{"@value": 1}]


async def test_query_by_type_with_the_context_in_a_link_header(ngsi: Ngsi) -> None:
    status, body, headers = await ngsi.get("/ngsi-ld/v1/entities?type=AirQualityObserved")
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Link"] == (
        f'<{ngsi.context_url()}>; rel="http://www.w3.org/ns/json-ld#context"; '
        'type="application/ld+json"'
    )
    [aq] = body
    assert aq["id"] == "urn:ngsi-ld:AirQualityObserved:acme:aq-1"
    assert aq["pm25"] == {
        "type": "Property",
        "value": 11.0,
        "observedAt": "2026-11-30T10:10:00.000Z",
        "unitCode": "GQ",
    }
    assert aq["temperature"]["unitCode"] == "CEL"
    assert aq["refDevice"]["object"] == "urn:ngsi-ld:Device:acme:aq-1"
    assert "@context" not in aq


async def test_ld_json_carries_the_context_and_expands_to_the_meant_iris(ngsi: Ngsi) -> None:
    status, body, headers = await ngsi.get(
        "/ngsi-ld/v1/entities?type=AirQualityObserved", headers=LD
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/ld+json")
    assert "Link" not in headers
    [aq] = body
    assert aq["@context"] == ngsi.context_url()
    node = ngsi.expand(aq)[0]
    assert node["@type"] == [ENV + "AirQualityObserved"]
    assert node[ENV + "pm25"][0][NGSI + "hasValue"] == [{"@value": 11.0}]
    assert node[NGSI + "location"][0]["@type"] == [NGSI + "GeoProperty"]
    # Compacted again with the hub's context, the document is what the hub served (but a
    # DateTime value's @type, which compacts to its term).
    compacted = jsonld.compact([node], aq["@context"], {"documentLoader": ngsi.loader})
    assert compacted.pop("@context") == aq["@context"]
    compacted["dateObserved"]["value"]["@type"] = compacted["dateObserved"]["value"].pop("type")
    assert compacted == {k: v for k, v in aq.items() if k != "@context"}


async def test_a_key_sees_its_own_and_others_public_devices_never_personal_ones(ngsi: Ngsi) -> None:
    query = "/ngsi-ld/v1/entities?type=Device,AirQualityObserved,ParkingSpot,NoiseLevelObserved"
    seen = {}
    for who in ("op_a", "sub_b", "admin"):
        status, body, _ = await ngsi.get(query + "&limit=1000", who=who)
        assert status == 200, body
        seen[who] = {doc["id"] for doc in body}
    acme_internal = "urn:ngsi-ld:AirQualityObserved:acme:aq-1"
    beta_internal = "urn:ngsi-ld:Device:beta:th-1"
    # From the other side: beta's key finds acme's public parking bay, not its air sensor.
    assert "urn:ngsi-ld:ParkingSpot:acme:park-1" in seen["sub_b"]
    assert acme_internal not in seen["sub_b"]
    assert "urn:ngsi-ld:Device:acme:aq-1" not in seen["sub_b"]
    assert beta_internal in seen["sub_b"]
    assert acme_internal in seen["op_a"]
    assert beta_internal not in seen["op_a"]
    assert "urn:ngsi-ld:NoiseLevelObserved:beta:noise-1" in seen["op_a"]
    assert seen["admin"] >= seen["op_a"] | seen["sub_b"]
    for ids in seen.values():
        assert not any("room-1" in i for i in ids)
    status, body, _ = await ngsi.get(
        "/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:acme:aq-1", who="sub_b"
    )
    assert status == 404
    assert body["type"] == NGSI + "errors/ResourceNotFound"
    status, _, _ = await ngsi.get(
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Device:acme:room-1", who="admin"
    )
    assert status == 404
    status, body, _ = await ngsi.get(
        "/ngsi-ld/v1/entities?type=Device", who="admin", headers={"NGSILD-Tenant": "beta"}
    )
    assert {doc["id"] for doc in body} == {
        "urn:ngsi-ld:Device:beta:noise-1",
        "urn:ngsi-ld:Device:beta:th-1",
    }


async def test_q_attrs_georel_paging_and_count(ngsi: Ngsi) -> None:
    status, body, _ = await ngsi.get("/ngsi-ld/v1/entities?q=pm25>10&attrs=pm25", who="admin")
    assert status == 200, body
    assert [(d["id"], sorted(d)) for d in body] == [
        ("urn:ngsi-ld:AirQualityObserved:acme:aq-1", ["id", "pm25", "type"])
    ]
    status, body, _ = await ngsi.get("/ngsi-ld/v1/entities?q=pm25>12", who="admin")
    assert body == []
    status, body, _ = await ngsi.get('/ngsi-ld/v1/entities?q=status=="occupied"', who="sub_b")
    assert [d["id"] for d in body] == ["urn:ngsi-ld:ParkingSpot:acme:park-1"]
    # Types and attributes as IRIs: the terms they expand from.
    parking = "https://smartdatamodels.org/dataModel.Parking/ParkingSpot"
    status, body, _ = await ngsi.get(
        f"/ngsi-ld/v1/entities?type={parking}&attrs={NGSI}status", who="sub_b"
    )
    assert [(d["id"], d["status"]["value"]) for d in body] == [
        ("urn:ngsi-ld:ParkingSpot:acme:park-1", "occupied")
    ]
    near_utrecht = "georel=near;maxDistance==1000&geometry=Point&coordinates=[5.12,52.09]"
    status, body, _ = await ngsi.get(f"/ngsi-ld/v1/entities?{near_utrecht}", who="admin")
    assert status == 200, body
    assert {d["id"] for d in body} == {
        "urn:ngsi-ld:NoiseLevelObserved:beta:noise-1",
        "urn:ngsi-ld:Device:beta:noise-1",
        "urn:ngsi-ld:Device:beta:th-1",
    }
    status, body, headers = await ngsi.get(
        "/ngsi-ld/v1/entities?type=Device&limit=2&offset=1&count=true", who="admin"
    )
    assert headers["NGSILD-Results-Count"] == "4"
    assert [d["id"] for d in body] == [
        "urn:ngsi-ld:Device:acme:park-1",
        "urn:ngsi-ld:Device:beta:noise-1",
    ]
    status, body, _ = await ngsi.get(
        "/ngsi-ld/v1/entities?idPattern=.*:aq-.*&options=keyValues", who="admin"
    )
    assert body[0]["pm25"] == 11.0
    assert body[0]["refDevice"] == "urn:ngsi-ld:Device:acme:aq-1"


async def test_one_entity_and_its_history(ngsi: Ngsi) -> None:
    urn = "urn:ngsi-ld:AirQualityObserved:acme:aq-1"
    status, body, _ = await ngsi.get(f"/ngsi-ld/v1/entities/{urn}?attrs=temperature")
    assert status == 200, body
    assert sorted(body) == ["id", "temperature", "type"]
    status, body, _ = await ngsi.get(f"/ngsi-ld/v1/temporal/entities/{urn}", headers=LD)
    assert status == 200, body
    assert [i["value"] for i in body["pm25"]] == [9.0, 14.0, 11.0]
    assert len(body["temperature"]) == 1
    node = ngsi.expand(body)[0]
    assert len(node[ENV + "pm25"]) == 3
    between = "timerel=between&timeAt=2026-11-30T10:01:00Z&endTimeAt=2026-11-30T10:10:00Z"
    status, body, _ = await ngsi.get(f"/ngsi-ld/v1/temporal/entities/{urn}?{between}&attrs=pm25")
    assert [i["value"] for i in body["pm25"]] == [14.0]
    assert "temperature" not in body
    status, body, _ = await ngsi.get(f"/ngsi-ld/v1/temporal/entities/{urn}?lastN=2")
    assert [i["value"] for i in body["pm25"]] == [14.0, 11.0]
    assert [i["instanceId"][:9] for i in body["pm25"]] == ["urn:uuid:", "urn:uuid:"]
    status, body, _ = await ngsi.get(
        f"/ngsi-ld/v1/temporal/entities/{urn}?timerel=before&timeAt=2026-11-30T10:00:00Z"
    )
    assert body == {"id": urn, "type": "AirQualityObserved"}
    status, _, _ = await ngsi.get(f"/ngsi-ld/v1/temporal/entities/{urn}", who="sub_b")
    assert status == 404


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/ngsi-ld/v1/entities", 400, "BadRequestData"),
        ("/ngsi-ld/v1/entities?q=pm25>>1", 400, "BadRequestData"),
        ("/ngsi-ld/v1/entities?type=Device&limit=5000", 400, "BadRequestData"),
        (
            "/ngsi-ld/v1/entities?georel=near&geometry=Point&coordinates=[5,52]",
            400,
            "BadRequestData",
        ),
        ("/ngsi-ld/v1/entities?idPattern=(", 400, "BadRequestData"),
        ("/ngsi-ld/v1/entities?type=AirQualityObserved&count=maybe", 400, "BadRequestData"),
        ("/ngsi-ld/v1/entities?type=AirQualityObserved&options=foo", 400, "BadRequestData"),
        ("/ngsi-ld/v1/entities?type=AirQualityObserved&format=concise", 400, "BadRequestData"),
        ("/ngsi-ld/v1/entities/urn:ngsi-ld:Device:acme:aq-1?options=foo", 400, "BadRequestData"),
        *(
            (
                f"/ngsi-ld/v1/entities?georel=near;maxDistance=={d}&geometry=Point&coordinates=[5,52]",
                400,
                "BadRequestData",
            )
            for d in ("NaN", "inf", "1e999", "-5")
        ),
        ("/ngsi-ld/v1/entities?q=pm25.observedAt>2026-99-99T00:00:00Z", 400, "BadRequestData"),
        ("/ngsi-ld/v1/entities/not-a-uri", 400, "BadRequestData"),
        ("/ngsi-ld/v1/entities/urn:ngsi-ld:Car:acme:aq-1", 404, "ResourceNotFound"),
        (
            "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Device:acme:aq-1?timerel=after",
            400,
            "BadRequestData",
        ),
        (
            "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Device:acme:aq-1?timerel=between&timeAt=2026-11-30T10:00:00Z",
            400,
            "BadRequestData",
        ),
    ],
)
async def test_errors_are_ngsi_ld_problem_details(
    ngsi: Ngsi, path: str, status: int, error: str
) -> None:
    got, body, _ = await ngsi.get(path)
    assert got == status, body
    assert body["type"] == NGSI + "errors/" + error
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]


async def test_a_backtracking_pattern_answers_at_once_and_holds_no_other_request_back(
    ngsi: Ngsi,
) -> None:
    """Before, ``(.+)+!`` was matched by Python's backtracking ``re``: against these URNs for
    hours, the API's event loop held (every other request, SIGTERM too)."""
    started = time.monotonic()
    (status, body, _), (q_status, q_body, _), (other, _, _) = await asyncio.gather(
        ngsi.get("/ngsi-ld/v1/entities?idPattern=" + quote("^urn:ngsi-ld:(.+)+!"), who="admin"),
        ngsi.get("/ngsi-ld/v1/entities?type=Device&q=" + quote('name~="(.+)+!"'), who="admin"),
        ngsi.get("/ngsi-ld/v1/entities?type=Device", who="admin"),
    )
    assert (status, body) == (200, [])
    assert (q_status, q_body) == (200, [])
    assert other == 200
    assert time.monotonic() - started < 10
    status, body, _ = await ngsi.get("/ngsi-ld/v1/entities?idPattern=" + quote(r"(a)\1"))
    assert status == 400
    assert body["type"] == NGSI + "errors/BadRequestData"
    assert "backreferences" in body["detail"]


async def test_a_query_over_its_budget_is_too_complex(
    ngsi: Ngsi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cityhub.streams.ngsi_ld.api.QUERY_BUDGET_S", -1.0)
    monkeypatch.setattr("cityhub.streams.ngsi_ld.api.YIELD_EVERY", 1)
    status, body, _ = await ngsi.get("/ngsi-ld/v1/entities?idPattern=.*", who="admin")
    assert status == 403
    assert body["type"] == NGSI + "errors/TooComplexQuery"
    assert "narrow" in body["detail"]


async def test_no_key_is_401_and_an_unacceptable_accept_is_406(ngsi: Ngsi) -> None:
    status, _, headers = await ngsi.get("/ngsi-ld/v1/entities?type=Device", who=None)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = await ngsi.get(
        "/ngsi-ld/v1/entities?type=Device", headers={"Accept": "text/html"}
    )
    assert status == 406


async def test_the_readers_connections_prepare_no_statement(history_settings: Settings) -> None:
    """A prepared statement gets one plan for every parameter: the latest values of one device
    took 200 ms with the plan PostgreSQL made for a thousand (0.6 ms with its own)."""
    values = HistoryValues(history_settings, pool_size=1)
    try:
        for _ in range(7):  # psycopg prepares a statement from its fifth run on
            await values.latest(Viewer.of_tenant("acme"), ["aq-1", "park-1"])
            await values.series(
                Viewer.of_tenant("acme"),
                "aq-1",
                quantities=None,
                start=None,
                end=None,
                last_n=2,
            )
        async with values._pool.connection() as conn, conn.cursor() as cur:
            await cur.execute("SELECT count(*) FROM pg_prepared_statements")
            row = await cur.fetchone()
        assert row == (0,)
    finally:
        await values.close()
