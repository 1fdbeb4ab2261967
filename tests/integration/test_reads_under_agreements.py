"""Reads under an agreement on the real stack: the history store (PostgreSQL, a schema of this
module's own), the agreements on Kafka (``AgreementStore`` into the ``SharingView`` every API
process holds), and the API app with its aggregates route, SensorThings and NGSI-LD.

Tenant ``port`` offers its air sensors' PM2.5 (observations and aggregates); tenant ``city``
asks and ``port`` approves. ``city``'s key then reads ``aq-1``'s PM2.5 through all three
interfaces and nothing else of ``port`` (not ``aq-1``'s NO2, not the noise sensor); every item
it read is counted for the agreement; once the agreement is revoked (a record on the topic),
every interface stops showing it within 5 seconds; an agreement that expires stops at its end.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.aggregate import Aggregate, aggregate_id
from cityhub.schemas.registry import (
    DeviceSpec,
    DeviceTypeSpec,
    FieldMapping,
    Location,
    Role,
    TenantSpec,
)
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.sharing import (
    Agreement,
    AgreementEvent,
    AgreementState,
    ItemKind,
    OfferSpec,
    Selection,
)
from cityhub.streams.aggregation.query import format_ms
from cityhub.streams.api.aggregates import AGGREGATES_KEY
from cityhub.streams.api.app import build_api
from cityhub.streams.history.aggregates_source import HistoryAggregateReader
from cityhub.streams.history.connection import connect
from cityhub.streams.ngsi_ld.api import NGSI_VALUES_KEY
from cityhub.streams.ngsi_ld.source import HistoryValues
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.sensorthings.ids import entity_id
from cityhub.streams.sensorthings.routes import SENSORTHINGS_KEY, SensorThings
from cityhub.streams.sharing.read_access import ReadAccess
from cityhub.streams.sharing.store import AgreementStore
from cityhub.streams.sharing.usage import Channel, UsageCounts
from cityhub.streams.sharing.view import SharingView

from .history_rows import insert_aggregates, insert_observations, observation_row
from .hub import BOOTSTRAP

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
HARBOUR = Location(latitude=51.95, longitude=4.14)
REVOKED_WITHIN = 5.0


def _rfc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _obs(device_id: str, tenant: str, device_type: str, quantity: str, minute: int) -> Any:
    row = observation_row(
        device_id=device_id,
        tenant=tenant,
        quantity=quantity,
        value=float(10 + minute),
        observed_at=T0 + timedelta(minutes=minute),
        classification="internal",
        area="harbour" if tenant == "port" else "centre",
    )
    row["device_type"] = device_type
    return row


ROWS = [
    _obs("aq-1", "port", "airq", "pm2_5", 0),
    _obs("aq-1", "port", "airq", "pm2_5", 5),
    _obs("aq-1", "port", "airq", "no2", 0),
    _obs("noise-1", "port", "noise", "sound_level", 0),
    _obs("th-1", "city", "th", "temperature", 0),
]


def _window(device_id: str, tenant: str, quantity: str) -> Aggregate:
    start = int(T0.timestamp() * 1000)
    return Aggregate(
        aggregate_id=aggregate_id("device", tenant, device_id, quantity, "Cel", 3600, start * 1000),
        grouping="device",
        key=device_id,
        tenant=tenant,
        classification="internal",
        device_id=device_id,
        area="harbour",
        quantity=quantity,
        unit="Cel",
        window_size=3600,
        window_start=format_ms(start),
        window_end=format_ms(start + 3600 * 1000),
        count=2,
        min=10.0,
        max=15.0,
        sum=25.0,
        mean=12.5,
        last=15.0,
        last_observed_at=format_ms(start + 300_000),
        last_event_id=f"e-{device_id}-{quantity}",
        revision=0,
    )


WINDOWS = [
    _window("aq-1", "port", "pm2_5"),
    _window("aq-1", "port", "no2"),
    _window("noise-1", "port", "sound_level"),
]

OFFER = OfferSpec(
    id="harbour-air",
    title="Harbour air",
    description="PM2.5 of the port's air sensors",
    selection=Selection(device_types=["airq"], quantities=["pm2_5"]),
    kinds=[ItemKind.OBSERVATIONS, ItemKind.AGGREGATES],
    purposes=["air quality policy"],
)


def agreement(
    agreement_id: str, state: AgreementState, *, ends: datetime | None = None
) -> Agreement:
    at = _rfc(datetime.now(UTC) - timedelta(minutes=1))
    history = [AgreementEvent(state=AgreementState.REQUESTED, at=at, by_tenant="city")]
    history.append(AgreementEvent(state=AgreementState.APPROVED, at=at, by_tenant="port"))
    if state is AgreementState.REVOKED:
        history.append(AgreementEvent(state=state, at=_rfc(datetime.now(UTC)), by_tenant="port"))
    return Agreement(
        id=agreement_id,
        provider="port",
        consumer="city",
        offer_id=OFFER.id,
        offer_spec=OFFER,
        purpose="air quality policy",
        starts_at=None,
        ends_at=_rfc(ends or datetime.now(UTC) + timedelta(days=30)),
        state=state,
        requested_at=at,
        history=history,
    )


async def _seed(registry: Registry) -> dict[str, str]:
    system = Principal.system()
    for tenant in ("port", "city"):
        await registry.create_tenant(system, TenantSpec(id=tenant, name=tenant.title()))
    fields = [
        FieldMapping(field="pm25", quantity="pm2_5"),
        FieldMapping(field="no2", quantity="no2"),
    ]
    for tenant, spec in (
        ("port", DeviceTypeSpec(id="airq", name="Air", fields=fields)),
        ("port", DeviceTypeSpec(id="noise", name="Noise")),
        ("city", DeviceTypeSpec(id="th", name="Thermo")),
    ):
        await registry.create_type(system, tenant, spec)
    for tenant, device in (
        ("port", DeviceSpec(id="aq-1", name="Quay air", type="airq", location=HARBOUR)),
        ("port", DeviceSpec(id="noise-1", name="Quay noise", type="noise", location=HARBOUR)),
        ("city", DeviceSpec(id="th-1", name="Hall thermo", type="th", location=HARBOUR)),
    ):
        await registry.create_device(system, tenant, device)
    keys = {}
    for name, tenant in (("city", "city"), ("port", "port")):
        _, secret = await registry.create_key(system, tenant, Role.OPERATOR, name)
        keys[name] = secret
    return keys


@dataclass
class Reads:
    client: TestClient[Any, Any]
    keys: dict[str, str]
    agreements: AgreementStore
    usage: UsageCounts

    async def get(self, path: str, who: str = "city") -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.keys[who]}"}
        async with self.client.get(path, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def aggregates(self, device_id: str) -> tuple[int, Any]:
        start, end = _rfc(T0 - timedelta(hours=1)), _rfc(T0 + timedelta(hours=2))
        return await self.get(
            f"/api/v1/tenants/city/aggregates?deviceId={device_id}&from={start}&to={end}"
        )

    async def things(self) -> set[str]:
        status, doc = await self.get("/sta/v1.1/Things")
        assert status == 200, doc
        return {thing["properties"]["device_id"] for thing in doc["value"]}

    async def ngsi_ids(self) -> set[str]:
        status, body = await self.get("/ngsi-ld/v1/entities?idPattern=.*")
        assert status == 200, body
        return {entity["id"] for entity in body}

    def reads(self, agreement_id: str) -> int:
        return self.usage.totals().get((agreement_id, Channel.READ), 0)


@pytest.fixture
async def reads(history_settings: Settings) -> AsyncIterator[Reads]:
    async with await connect(history_settings, autocommit=True) as conn:
        async with conn.cursor() as cur:
            await cur.execute("SELECT count(*) FROM observations")
            row = await cur.fetchone()
        if row is None or row[0] == 0:
            await insert_observations(conn, ROWS)
            await insert_aggregates(conn, WINDOWS)
    kafka = Settings(
        kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=f"t{uuid.uuid4().hex[:10]}")
    )
    view = SharingView()
    agreements = AgreementStore(kafka, view=view.agreements)
    await agreements.start()
    usage = UsageCounts()
    access = ReadAccess(view.grants, usage)
    store = InMemoryRegistryStore()
    await store.start()
    registry = Registry(store)
    keys = await _seed(registry)
    app = build_api(registry, read_access=access)
    await app[AGGREGATES_KEY].close()
    app[AGGREGATES_KEY] = HistoryAggregateReader(history_settings)
    await app[SENSORTHINGS_KEY].close()
    app[SENSORTHINGS_KEY] = SensorThings.from_settings(registry, history_settings, access)
    await app[NGSI_VALUES_KEY].close()
    app[NGSI_VALUES_KEY] = HistoryValues(history_settings)
    try:
        async with TestClient(TestServer(app)) as client:
            yield Reads(client, keys, agreements, usage)
    finally:
        await agreements.stop()
        await store.stop()


AQ_ENTITY = "urn:ngsi-ld:AirQualityObserved:port:aq-1"


async def test_nothing_of_the_provider_without_an_agreement(reads: Reads) -> None:
    assert (await reads.aggregates("aq-1"))[0] == 404
    assert await reads.things() == {"th-1"}
    assert not any(":port:" in urn for urn in await reads.ngsi_ids())
    status, _ = await reads.get(f"/ngsi-ld/v1/entities/{AQ_ENTITY}")
    assert status == 404


async def test_an_approved_agreement_shows_exactly_the_offered_items_and_counts_them(
    reads: Reads,
) -> None:
    await reads.agreements.put(agreement("agr-air", AgreementState.APPROVED))

    status, doc = await reads.aggregates("aq-1")
    assert status == 200, doc
    assert [(w["device_id"], w["quantity"]) for w in doc["items"]] == [("aq-1", "pm2_5")]
    assert (await reads.aggregates("noise-1"))[0] == 404
    after_aggregates = reads.reads("agr-air")
    assert after_aggregates == 1

    assert await reads.things() == {"th-1", "aq-1"}
    status, doc = await reads.get(f"/sta/v1.1/Things({entity_id('Thing', 'aq-1')})/Datastreams")
    assert status == 200, doc
    assert [d["properties"]["quantity"] for d in doc["value"]] == ["pm2_5"]
    stream = entity_id("Datastream", "aq-1:pm2_5")
    status, doc = await reads.get(f"/sta/v1.1/Datastreams({stream})/Observations")
    assert status == 200, doc
    assert sorted(o["result"] for o in doc["value"]) == [10.0, 15.0]
    status, doc = await reads.get("/sta/v1.1/Observations?$count=true")
    assert status == 200, doc
    assert doc["@iot.count"] == 3  # aq-1's two PM2.5 and th-1's own temperature
    assert (await reads.get(f"/sta/v1.1/Things({entity_id('Thing', 'noise-1')})"))[0] == 404
    # One property of a shared Thing is a use; a link to it ($ref) is not.
    counted = reads.reads("agr-air")
    thing = f"/sta/v1.1/Things({entity_id('Thing', 'aq-1')})"
    assert await reads.get(f"{thing}/name") == (200, {"name": "Quay air"})
    assert reads.reads("agr-air") == counted + 1
    assert (await reads.get("/sta/v1.1/Things/$ref"))[0] == 200
    after_sta = reads.reads("agr-air")
    assert after_sta == counted + 1
    assert after_sta > after_aggregates

    ids = await reads.ngsi_ids()
    assert AQ_ENTITY in ids
    assert not any("noise-1" in urn for urn in ids)
    status, entity = await reads.get(f"/ngsi-ld/v1/entities/{AQ_ENTITY}")
    assert status == 200, entity
    assert entity["pm25"]["value"] == 15.0
    assert "no2" not in entity  # the quantity the agreement does not share
    status, temporal = await reads.get(f"/ngsi-ld/v1/temporal/entities/{AQ_ENTITY}")
    assert status == 200, temporal
    assert [i["value"] for i in temporal["pm25"]] == [10.0, 15.0]
    assert "no2" not in temporal
    assert reads.reads("agr-air") > after_sta

    # The provider's own view is unchanged, and nothing it reads counts for the agreement.
    before = reads.reads("agr-air")
    status, doc = await reads.get(
        "/api/v1/tenants/port/aggregates?deviceId=aq-1"
        f"&from={_rfc(T0 - timedelta(hours=1))}&to={_rfc(T0 + timedelta(hours=2))}",
        who="port",
    )
    assert status == 200, doc
    assert len(doc["items"]) == 2
    assert reads.reads("agr-air") == before


async def _gone_within(seconds: float, check: Callable[[], Awaitable[bool]]) -> float:
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < seconds, f"still visible after {seconds} s"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_revocation_takes_effect_on_every_read_within_five_seconds(reads: Reads) -> None:
    await reads.agreements.put(agreement("agr-air", AgreementState.APPROVED))
    assert (await reads.aggregates("aq-1"))[0] == 200
    assert "aq-1" in await reads.things()
    assert AQ_ENTITY in await reads.ngsi_ids()

    revoked_at = time.monotonic()
    await reads.agreements.put(agreement("agr-air", AgreementState.REVOKED))

    async def gone() -> bool:
        return (
            (await reads.aggregates("aq-1"))[0] == 404
            and "aq-1" not in await reads.things()
            and AQ_ENTITY not in await reads.ngsi_ids()
            and (await reads.get(f"/ngsi-ld/v1/temporal/entities/{AQ_ENTITY}"))[0] == 404
        )

    await _gone_within(REVOKED_WITHIN, gone)
    assert time.monotonic() - revoked_at < REVOKED_WITHIN
    counted = reads.reads("agr-air")
    status, doc = await reads.get("/sta/v1.1/Observations")
    assert status == 200
    assert {o["result"] for o in doc["value"]} == {10.0}  # th-1's own only
    assert reads.reads("agr-air") == counted


async def test_an_agreement_stops_at_its_end(reads: Reads) -> None:
    ends = datetime.now(UTC) + timedelta(seconds=2)
    await reads.agreements.put(agreement("agr-short", AgreementState.APPROVED, ends=ends))
    assert (await reads.aggregates("aq-1"))[0] == 200
    assert "aq-1" in await reads.things()
    await asyncio.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()))

    async def gone() -> bool:
        return (await reads.aggregates("aq-1"))[0] == 404 and "aq-1" not in await reads.things()

    await _gone_within(REVOKED_WITHIN, gone)
