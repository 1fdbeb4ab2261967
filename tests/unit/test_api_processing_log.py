"""The tenant's processing log through the API, over an in-memory index: who may read it
(operator or admin of the tenant; 403 subscriber; 404 across tenants), filters by activity (slug
or URI), data subject, time range, paging, the index's bound, refusals that never echo a value."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.processing import ActivitySpec, LegalBasis
from cityhub.schemas.processing_log import ProcessingLogRecord, processing_record
from cityhub.schemas.trace_context import new_trace
from cityhub.streams.api.app import build_api
from cityhub.streams.privacy.log_index import ProcessingLogIndex
from cityhub.streams.privacy.log_service import LogQuery, ProcessingLogQueries
from cityhub.streams.privacy.resident import Resident
from cityhub.streams.privacy.service import ProcessingRegister
from cityhub.streams.privacy.store import InMemoryRegisterStore
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore

from .test_api_support import seed

ACME_LOG = "/api/v1/tenants/acme/processing-log"
BETA_LOG = "/api/v1/tenants/beta/processing-log"
BASE = "urn:cityhub:processing-activity:"
CARE = f"{BASE}acme:care"
AIR = f"{BASE}acme:air"
ALICE = "res-alice-01"
BOB = "res-bob-0002"
T0 = 1_764_000_000.0  # 2025-11-24T16:00:00Z


def rec(
    offset: float,
    *,
    tenant: str = "acme",
    subject: str = ALICE,
    activity: str = CARE,
) -> ProcessingLogRecord:
    return processing_record(
        name="cityhub.delivery",
        trace=new_trace(),
        parent_span_id=None,
        started=T0 + offset,
        ended=T0 + offset + 0.2,
        ok=True,
        activity_id=activity,
        tenant=tenant,
        subject=subject,
        recipient="webhook:care-desk",
        items=2,
        action="deliver",
    )


@dataclass
class Api:
    client: TestClient[Any, Any]
    keys: dict[str, str]
    index: ProcessingLogIndex
    queries: ProcessingLogQueries

    async def get(self, path: str, who: str | None, **params: str) -> tuple[int, Any, Any]:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        async with self.client.get(path, headers=headers, params=params) as response:
            return response.status, await response.json(content_type=None), response.headers


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    registry = Registry(InMemoryRegistryStore())
    keys = await seed(registry)
    register_store = InMemoryRegisterStore()
    await register_store.start()
    register = ProcessingRegister(register_store, registry.view, base_uri=BASE)
    for slug in ("care", "air"):
        spec = ActivitySpec(
            slug=slug,
            name=slug.title(),
            purpose="A purpose.",
            legal_basis=LegalBasis.CONSENT,
            personal_data_categories=["indoor air"],
            retention="P30D",
            controller="Municipality of Example",
        )
        await register.create(Principal.system(), "acme", spec)
    index = ProcessingLogIndex()
    index.mark_ready()
    queries = ProcessingLogQueries(index, registry.view, register.view)
    app = build_api(registry, processing=register, processing_log=queries)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, keys, index, queries)


def ids(doc: dict[str, Any]) -> list[str]:
    return [item["span_id"] for item in doc["items"]]


async def test_the_officer_reads_the_tenants_log_newest_first(api: Api) -> None:
    records = [rec(1), rec(2, subject=BOB), rec(3, activity=AIR)]
    for r in records:
        api.index.add(r)
    for who in ("op_a", "admin"):
        status, doc, _ = await api.get(ACME_LOG, who)
        assert status == 200, doc
        assert ids(doc) == [r.span_id for r in reversed(records)]
        assert doc["complete"] is True
        assert doc["held_from"] is None
        assert doc["next_cursor"] is None
    item = doc["items"][0]
    assert item["attributes"]["dpl.core.processing_activity_id"] == AIR
    assert item["attributes"]["dpl.core.data_subject_id"] == ALICE
    assert item["status_code"] == "STATUS_CODE_OK"


async def test_filters_activity_by_slug_or_uri_subject_and_time(api: Api) -> None:
    a1, b1, a2 = rec(1), rec(2, subject=BOB), rec(3, activity=AIR)
    for r in (a1, b1, a2):
        api.index.add(r)
    assert ids((await api.get(ACME_LOG, "op_a", activity="care"))[1]) == [b1.span_id, a1.span_id]
    assert ids((await api.get(ACME_LOG, "op_a", activity=AIR))[1]) == [a2.span_id]
    assert ids((await api.get(ACME_LOG, "op_a", dataSubject=BOB))[1]) == [b1.span_id]
    both = await api.get(ACME_LOG, "op_a", dataSubject=ALICE, activity="air")
    assert ids(both[1]) == [a2.span_id]
    ranged = await api.get(
        ACME_LOG, "op_a", **{"from": "2025-11-24T16:00:02Z", "to": "2025-11-24T16:00:03Z"}
    )
    assert ids(ranged[1]) == [b1.span_id]
    status, doc, _ = await api.get(ACME_LOG, "op_a", activity="no-such-activity")
    assert status == 404, doc


async def test_pages_follow_the_link(api: Api) -> None:
    records = [rec(n) for n in range(7)]
    for r in records:
        api.index.add(r)
    seen: list[str] = []
    status, doc, headers = await api.get(ACME_LOG, "op_a", limit="3")
    while True:
        assert status == 200, doc
        seen += ids(doc)
        if doc["next_cursor"] is None:
            assert "Link" not in headers
            break
        assert 'rel="next"' in headers["Link"]
        status, doc, headers = await api.get(ACME_LOG, "op_a", limit="3", cursor=doc["next_cursor"])
    assert seen == [r.span_id for r in reversed(records)]


async def test_other_tenants_see_nothing_and_subscribers_are_refused(api: Api) -> None:
    api.index.add(rec(1))
    api.index.add(rec(2, tenant="beta", activity=f"{BASE}beta:care"))
    status, doc, _ = await api.get(ACME_LOG, "op_b")
    assert status == 404
    assert ALICE not in str(doc)
    status, _, _ = await api.get(ACME_LOG, "sub_a")
    assert status == 403
    status, _, _ = await api.get(ACME_LOG, "sub_b")
    assert status == 404
    # beta's operator sees beta's records only, though beta's subject id is the same string
    status, doc, _ = await api.get(BETA_LOG, "op_b", dataSubject=ALICE)
    assert status == 200
    assert [i["attributes"]["dpl.cityhub.tenant"] for i in doc["items"]] == ["beta"]
    # acme's admin key is an admin of acme, not of beta's log
    status, _, _ = await api.get(BETA_LOG, "admin")
    assert status == 404
    status, _, _ = await api.get("/api/v1/tenants/nobody/processing-log", "op_a")
    assert status == 404
    status, _, _ = await api.get(ACME_LOG, None)
    assert status == 401


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"dataSubject": "123456789"}, "dataSubject"),
        ({"dataSubject": "jan jansen@example.nl"}, "dataSubject"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2025-11-24T16:00:02Z", "to": "2025-11-24T16:00:01Z"}, "to"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": "0"}, "limit"),
    ],
)
async def test_bad_parameters_are_400_naming_the_field_never_the_value(
    api: Api, params: dict[str, str], field: str
) -> None:
    status, doc, _ = await api.get(ACME_LOG, "op_a", **params)
    assert status == 400, doc
    assert field in [e["field"] for e in doc["errors"]]
    if field in {"dataSubject", "from", "cursor"}:
        assert params[field] not in str(doc)


async def test_a_query_reaching_past_the_bound_says_it_is_incomplete() -> None:
    registry = Registry(InMemoryRegistryStore())
    keys = await seed(registry)
    index = ProcessingLogIndex(max_records=2)
    index.mark_ready()
    for n in range(3):
        index.add(rec(n))
    app = build_api(registry, processing_log=ProcessingLogQueries(index, registry.view))
    async with TestClient(TestServer(app)) as client:
        api = Api(client, keys, index, ProcessingLogQueries(index, registry.view))
        status, doc, _ = await api.get(ACME_LOG, "op_a")
        assert status == 200
        assert doc["complete"] is False
        assert doc["held_from"] == "2025-11-24T16:00:00.000Z"
        assert len(doc["items"]) == 2
        status, doc, _ = await api.get(ACME_LOG, "op_a", **{"from": "2025-11-24T16:00:00.001Z"})
        assert doc["complete"] is True


async def test_503_until_the_index_caught_up_or_where_it_is_not_served() -> None:
    registry = Registry(InMemoryRegistryStore())
    keys = await seed(registry)
    index = ProcessingLogIndex()
    for queries in (ProcessingLogQueries(index, registry.view), None):
        app = build_api(registry, processing_log=queries)
        async with TestClient(TestServer(app)) as client:
            api = Api(client, keys, index, ProcessingLogQueries(index, registry.view))
            status, doc, _ = await api.get(ACME_LOG, "op_a")
            assert status == 503, doc


async def test_a_resident_reads_only_their_own_records(api: Api) -> None:
    mine, theirs = rec(1), rec(2, subject=BOB)
    other_tenant = rec(3, tenant="beta", activity=f"{BASE}beta:care")
    for r in (mine, theirs, other_tenant):
        api.index.add(r)
    alice = Resident("acme", ALICE, "token:t1")
    page = api.queries.for_resident(alice, LogQuery())
    assert page.records == [mine]
    assert api.queries.for_resident(alice, LogQuery(), activity="air").records == []
    assert api.queries.for_resident(alice, LogQuery(), activity=CARE).records == [mine]
