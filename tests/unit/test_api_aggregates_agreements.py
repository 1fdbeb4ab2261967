"""GET /api/v1/tenants/{tenant}/aggregates under agreements, over an in-memory registry and the
in-memory aggregates topic: another tenant's device or area is readable only while an agreement
that shares its aggregates is active, and then only the windows it covers (never a personal
one); each window returned under an agreement is counted for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.registry import Classification, DeviceSpec, DeviceTypeSpec
from cityhub.schemas.sharing import ItemKind, Selection
from cityhub.streams.aggregation.memory import InMemoryAggregates
from cityhub.streams.api.aggregates import AGGREGATES_KEY
from cityhub.streams.api.app import build_api
from cityhub.streams.privacy.reads import PersonalReads
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.sharing.grants import EMPTY, Grants
from cityhub.streams.sharing.read_access import ReadAccess
from cityhub.streams.sharing.usage import Channel, UsageCounts
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore
from tests.personal_reads import RecordedLog, personal_reads_for_home

from .test_api_aggregates import LIMITS, MIN, T0_MS, aggregate, params
from .test_api_support import Api, seed
from .test_reads_under_agreements import NOW
from .test_reads_under_agreements import _agreement as agreement_between

B = "/api/v1/tenants/beta/aggregates"
AGG = ItemKind.AGGREGATES


@dataclass
class Shared:
    api: Api
    topic: InMemoryAggregates
    grants: list[Grants]
    usage: UsageCounts
    personal: PersonalReads
    log: RecordedLog

    def offer(self, selection: Selection, agreement_id: str = "agr-1") -> None:
        self.grants[0] = Grants.from_agreements(
            [
                agreement_between(
                    selection,
                    kinds=(AGG,),
                    agreement_id=agreement_id,
                    provider="acme",
                    consumer="beta",
                )
            ]
        )

    def reads(self, agreement_id: str = "agr-1") -> int:
        return self.usage.totals().get((agreement_id, Channel.READ), 0)


@pytest.fixture
async def shared() -> AsyncIterator[Shared]:
    store = InMemoryRegistryStore()
    await store.start()
    registry = Registry(store)
    keys = await seed(registry)
    reads, log = await personal_reads_for_home(registry)  # acme's personal h-1, care, parking
    system = Principal.system()
    await registry.create_type(system, "acme", DeviceTypeSpec(id="noise", name="Noise"))
    for device, type_id in (("a-1", "th"), ("a-noise", "noise")):
        await registry.create_device(
            system, "acme", DeviceSpec(id=device, name=device, type=type_id, area="north")
        )
    topic = InMemoryAggregates(LIMITS, partitions=4)
    grants = [EMPTY]
    usage = UsageCounts()
    subscriptions = Subscriptions(InMemorySubscriptionStore(), registry.view)
    app = build_api(
        registry,
        subscriptions=subscriptions,
        personal_reads=reads,
        read_access=ReadAccess(lambda: grants[0], usage, lambda: NOW),
    )
    app[AGGREGATES_KEY] = topic
    async with TestClient(TestServer(app)) as client:
        yield Shared(
            Api(client, registry, store, keys, subscriptions), topic, grants, usage, reads, log
        )
    await store.stop()


async def test_a_device_under_an_agreement_shows_exactly_its_covered_windows(
    shared: Shared,
) -> None:
    topic, api = shared.topic, shared.api
    topic.add(aggregate("a-1", tenant="acme", classification="internal"))
    topic.add(aggregate("a-1", tenant="acme", classification="internal", quantity="humidity"))
    topic.add(aggregate("a-1", tenant="acme", classification="personal", start_ms=T0_MS + MIN))
    topic.add(aggregate("a-noise", tenant="acme", classification="internal"))
    status, _, _ = await api.call("GET", B, "sub_b", params=params(deviceId="a-1"))
    assert status == 404
    shared.offer(Selection(device_types=["th"], quantities=["temperature"]))
    status, doc, _ = await api.call("GET", B, "sub_b", params=params(deviceId="a-1"))
    assert status == 200, doc
    assert [(i["quantity"], i["classification"]) for i in doc["items"]] == [
        ("temperature", "internal")
    ]
    assert shared.reads() == 1
    status, _, _ = await api.call("GET", B, "sub_b", params=params(deviceId="a-noise"))
    assert status == 404
    # Revoked (no grant in the view any more): the next read is a 404 again, nothing counted.
    shared.grants[0] = EMPTY
    status, _, _ = await api.call("GET", B, "sub_b", params=params(deviceId="a-1"))
    assert status == 404
    assert shared.reads() == 1


async def test_another_tenants_area_is_read_with_area_tenant_under_an_area_offer(
    shared: Shared,
) -> None:
    topic, api = shared.topic, shared.api
    topic.add(aggregate("north", tenant="acme", classification="internal", grouping="area"))
    topic.add(aggregate("north", tenant="beta", classification="internal", grouping="area"))
    area = params(area="north", areaTenant="acme")
    status, _, _ = await api.call("GET", B, "sub_b", params=area)
    assert status == 404
    # A device-level offer shares no area's aggregates.
    shared.offer(Selection(device_types=["th"]))
    status, _, _ = await api.call("GET", B, "sub_b", params=area)
    assert status == 404
    shared.offer(Selection(areas=["north"]))
    status, doc, _ = await api.call("GET", B, "sub_b", params=area)
    assert status == 200, doc
    assert [(i["tenant"], i["key"]) for i in doc["items"]] == [("acme", "north")]
    assert shared.reads() == 1
    status, _, _ = await api.call("GET", B, "sub_b", params=params(area="south", areaTenant="acme"))
    assert status == 404
    # Its own area as before (areaTenant may name the path tenant itself).
    for own in (params(area="north"), params(area="north", areaTenant="beta")):
        status, doc, _ = await api.call("GET", B, "sub_b", params=own)
        assert [(i["tenant"], i["key"]) for i in doc["items"]] == [("beta", "north")]
    assert shared.reads() == 1


async def test_a_personal_window_under_a_personal_offer_is_checked_against_the_providers_activity(
    shared: Shared,
) -> None:
    api, log = shared.api, shared.log
    shared.topic.add(aggregate("h-1", tenant="acme", classification="personal"))
    home = params(deviceId="h-1")
    status, _, _ = await api.call("GET", B, "sub_b", params=home)
    assert status == 404
    # An internal offer of the type covers no personal window (nor the personal device).
    shared.offer(Selection(device_types=["home"]))
    status, _, _ = await api.call("GET", B, "sub_b", params=home)
    assert status == 404
    for activity, shown in (("parking", 0), ("care", 1)):
        shared.grants[0] = Grants.from_agreements(
            [
                agreement_between(
                    Selection(device_types=["home"]),
                    kinds=(AGG,),
                    classification=Classification.PERSONAL,
                    activity=activity,
                    provider="acme",
                    consumer="beta",
                )
            ]
        )
        # The reader names no activity of its own: the provider's decides.
        status, doc, _ = await api.call("GET", B, "sub_b", params=home)
        assert status == 200, doc
        assert len(doc["items"]) == shown
        assert doc.get("personal_withheld", 0) == 1 - shown
    assert shared.reads() == 1
    [record] = log.records
    assert (record.tenant, record.items, record.action) == ("acme", 1, "read")
    assert (record.recipient or "").startswith("api-key:")
    care = shared.personal.gate.activities.get("acme", "care")
    assert care is not None
    assert record.activity_id == care.id
