"""The data requests' view and service without the API or Kafka: ids in filing order, paging,
open counts, malformed records skipped, two instances on one topic, IPv6 clients by /64 (as the
route counts them), and the contacts' retention sweep."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cityhub.schemas.data_request import (
    CONTACT_DAYS_AFTER_ANSWER,
    CONTACT_DAYS_OPEN,
    AnswerSpec,
    DataRequestSpec,
    DataRequestStatus,
    DeclineSpec,
)
from cityhub.schemas.registry import Role
from cityhub.streams.api.throttle import client_network
from cityhub.streams.compacted import InMemoryTopic
from cityhub.streams.opendata.requests import DataRequestQuota, DataRequests
from cityhub.streams.opendata.requests_store import InMemoryDataRequestStore
from cityhub.streams.opendata.requests_view import DataRequestView, new_request_id
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.service_errors import Forbidden

from .test_api_support import seed

DAY = 24 * 3600.0
SPEC = DataRequestSpec(title="t", data="d", purpose="p", contact="someone@example.org")
ADMIN = Principal(key_id="k", tenant="acme", role=Role.ADMIN)
OPERATOR = Principal(key_id="o", tenant="acme", role=Role.OPERATOR)


class Clock:
    def __init__(self) -> None:
        self.now = 1_780_000_000.0

    def __call__(self) -> float:
        return self.now


async def service(
    store: InMemoryDataRequestStore | None = None, *, per_address: int = 5
) -> tuple[DataRequests, Clock]:
    registry = Registry(InMemoryRegistryStore())
    await seed(registry)
    clock = Clock()
    requests = DataRequests(
        store or InMemoryDataRequestStore(),
        registry.view,
        datasets={"noise"},
        per_address_per_hour=per_address,
        clock=clock,
        monotonic=clock,
    )
    return requests, clock


def test_ids_sort_in_filing_order() -> None:
    ids = [new_request_id(t) for t in (1.0, 2.5, 1_780_000_000.0, 253_402_300_799.0)]
    assert ids == sorted(ids)
    assert len({new_request_id(5.0) for _ in range(100)}) == 100


def test_the_view_skips_malformed_records_and_counts_them() -> None:
    view = DataRequestView()
    view.apply("data_request/x", b"not json", 0)
    view.apply("data_request/x", b'{"kind": "other"}', 1)
    view.apply("data_request/x", b'{"kind": "data_request", "id": "x"}', 2)
    assert view.malformed == 3
    assert view.count() == 0
    assert view.offset == 2


async def test_the_key_must_match_the_record() -> None:
    requests, _ = await service()
    record = await requests.file(SPEC, "192.0.2.1")
    view = DataRequestView()
    view.apply("data_request/other", record.model_dump_json().encode(), 0)
    assert view.malformed == 1


async def test_open_counts_follow_status_changes_and_tombstones() -> None:
    store = InMemoryDataRequestStore()
    requests, clock = await service(store)
    first = await requests.file(SPEC, "192.0.2.1")
    clock.now += 1
    second = await requests.file(SPEC, "192.0.2.1")
    assert store.view.open_count() == 2
    await requests.answer(OPERATOR, "acme", first.id, AnswerSpec(dataset="noise"))
    assert store.view.open_count() == 1
    await requests.decline(ADMIN, second.id, DeclineSpec(reason="spam"))
    assert store.view.open_count() == 0
    await store.delete(f"data_request/{first.id}")
    assert store.view.count() == 1
    assert [r.id for r in store.view.all()] == [second.id]


async def test_paging_newest_first_with_a_status_filter() -> None:
    requests, clock = await service(per_address=100)
    ids = []
    for n in range(7):
        clock.now += 1
        ids.append((await requests.file(SPEC, f"192.0.2.{n}")).id)
    await requests.answer(OPERATOR, "acme", ids[3], AnswerSpec(dataset="noise"))
    seen, cursor = [], None
    while True:
        page = requests.list(status=DataRequestStatus.OPEN, limit=2, cursor=cursor)
        seen += [r.id for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [i for i in reversed(ids) if i != ids[3]]
    # A cursor naming no request still has its place.
    page = requests.list(limit=10, cursor=ids[2][:-1] + "0")
    assert page.items[0].id == ids[1]


async def test_two_instances_on_one_topic_see_each_others_writes() -> None:
    topic = InMemoryTopic()
    one, _ = await service(InMemoryDataRequestStore(topic=topic))
    two, _ = await service(InMemoryDataRequestStore(topic=topic))
    record = await one.file(SPEC, "192.0.2.1")
    assert two.get(record.id) == record
    await two.answer(OPERATOR, "acme", record.id, AnswerSpec(dataset="noise"))
    assert one.get(record.id).status is DataRequestStatus.ANSWERED


async def test_an_ipv6_client_is_counted_by_its_64() -> None:
    requests, _ = await service(per_address=2)
    for host in ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9"):
        await requests.file(SPEC, client_network(host))
    with pytest.raises(DataRequestQuota) as caught:
        await requests.file(SPEC, client_network("2001:db8:1:2:abcd::7"))
    assert caught.value.status == 429
    assert caught.value.retry_after == 1800
    # Another /64, and an IPv4 client, have their own allowance.
    await requests.file(SPEC, client_network("2001:db8:1:3::1"))
    await requests.file(SPEC, client_network("::ffff:192.0.2.7"))


async def test_only_admins_decline() -> None:
    requests, _ = await service()
    record = await requests.file(SPEC, "192.0.2.1")
    with pytest.raises(Forbidden):
        await requests.decline(OPERATOR, record.id, DeclineSpec(reason="spam"))
    with pytest.raises(Forbidden):
        requests.get_as_admin(OPERATOR, record.id)


async def test_expired_contacts_are_erased_and_the_rest_kept() -> None:
    store = InMemoryDataRequestStore()
    requests, clock = await service(store, per_address=100)
    old = await requests.file(SPEC, "192.0.2.1")
    clock.now += 10 * DAY
    answered = await requests.file(SPEC, "192.0.2.1")
    await requests.answer(OPERATOR, "acme", answered.id, AnswerSpec(dataset="noise"))
    fresh = await requests.file(SPEC, "192.0.2.1")
    nameless = await requests.file(SPEC.model_copy(update={"contact": None}), "192.0.2.1")
    assert await requests.erase_expired_contacts() == 0
    clock.now += timedelta(days=CONTACT_DAYS_AFTER_ANSWER).total_seconds()
    assert await requests.erase_expired_contacts() == 1
    assert requests.get(answered.id).contact is None
    assert requests.get(fresh.id).contact == SPEC.contact
    clock.now = 1_780_000_000.0 + timedelta(days=CONTACT_DAYS_OPEN).total_seconds()
    assert await requests.erase_expired_contacts() == 1
    assert requests.get(old.id).contact is None
    assert requests.get(old.id).contact_erased_at is not None
    assert requests.get(fresh.id).contact == SPEC.contact
    assert requests.get(nameless.id).contact_erased_at is None
    # Once erased, nothing is written again.
    before = len(store.log)
    assert await requests.erase_expired_contacts() == 0
    assert len(store.log) == before
