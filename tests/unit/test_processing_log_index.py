"""The processing log's in-memory index: keys, tenants apart, time ranges, paging, the memory
bound (oldest dropped first, queries that reach past it say so), malformed topic records."""

from __future__ import annotations

import json

import pytest

from cityhub.schemas.processing_log import ProcessingLogRecord, processing_record
from cityhub.schemas.trace_context import new_trace
from cityhub.streams.privacy.log_index import ProcessingLogIndex, parse_cursor
from cityhub.streams.service_errors import Invalid

CARE = "urn:cityhub:processing-activity:acme:care"
AIR = "urn:cityhub:processing-activity:acme:air"
ALICE = "res-alice-01"
BOB = "res-bob-0002"


def rec(
    start: float,
    *,
    tenant: str = "acme",
    subject: str = ALICE,
    activity: str = CARE,
    action: str = "deliver",
) -> ProcessingLogRecord:
    return processing_record(
        name="cityhub.delivery",
        trace=new_trace(),
        parent_span_id=None,
        started=start,
        ended=start + 0.01,
        ok=True,
        activity_id=activity,
        tenant=tenant,
        subject=subject,
        recipient="webhook:s1",
        items=1,
        action=action,  # type: ignore[arg-type]
    )


def feed(index: ProcessingLogIndex, *records: ProcessingLogRecord) -> None:
    for offset, record in enumerate(records):
        assert index.apply(record.key(), record.to_json(), partition=0, offset=offset)


def test_queries_by_subject_activity_and_tenant_newest_first() -> None:
    index = ProcessingLogIndex()
    a1, b1, a2, a3 = rec(10, subject=ALICE), rec(11, subject=BOB), rec(12), rec(13, activity=AIR)
    feed(index, a1, b1, a2, a3)
    assert index.of_subject("acme", ALICE).records == [a3, a2, a1]
    assert index.of_subject("acme", BOB).records == [b1]
    assert index.of_activity("acme", CARE).records == [a2, b1, a1]
    assert index.of_subject("acme", ALICE, activity_id=AIR).records == [a3]
    assert index.of_subject("acme", BOB, activity_id=AIR).records == []
    assert index.of_tenant("acme").records == [a3, a2, b1, a1]
    page = index.of_subject("acme", ALICE)
    assert page.complete
    assert page.held_from is None
    assert page.next_cursor is None


def test_tenants_are_apart() -> None:
    index = ProcessingLogIndex()
    ours, theirs = rec(1, tenant="acme"), rec(2, tenant="other", activity=CARE)
    feed(index, ours, theirs)
    # the same subject id in two tenants is two people; the same activity URI is no bridge
    assert index.of_subject("acme", ALICE).records == [ours]
    assert index.of_subject("other", ALICE).records == [theirs]
    assert index.of_activity("acme", CARE).records == [ours]
    assert index.of_tenant("nobody").records == []
    assert index.of_subject("nobody", ALICE).records == []


def test_time_range_is_from_inclusive_to_exclusive_on_start_time() -> None:
    index = ProcessingLogIndex()
    records = [rec(t) for t in (1, 2, 3, 4)]
    feed(index, *records)
    got = index.of_subject("acme", ALICE, since=2000, until=4000).records
    assert got == [records[2], records[1]]


def test_paging_with_cursors_covers_everything_once_even_with_equal_times() -> None:
    index = ProcessingLogIndex()
    records = [rec(100 + n // 3) for n in range(25)]  # three records per millisecond-second
    feed(index, *records)
    seen: list[ProcessingLogRecord] = []
    cursor = None
    for _ in range(20):
        page = index.of_subject("acme", ALICE, limit=4, cursor=cursor)
        assert len(page.records) <= 4
        seen += page.records
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 25
    assert {r.span_id for r in seen} == {r.span_id for r in records}
    orders = [(r.start_time, r.trace_id + r.span_id) for r in seen]
    assert orders == sorted(orders, reverse=True)


def test_a_record_written_twice_is_served_once() -> None:
    index = ProcessingLogIndex()
    record = rec(5)
    feed(index, record, record, record)
    assert index.of_subject("acme", ALICE).records == [record]
    assert index.of_subject("acme", ALICE, limit=1).next_cursor is None


def test_the_bound_drops_the_oldest_first_and_queries_say_so() -> None:
    index = ProcessingLogIndex(max_records=3)
    first, second = rec(1, subject=BOB), rec(2)
    rest = [rec(3), rec(4, subject=BOB)]
    feed(index, first, second, *rest)
    assert index.count() == 3
    assert index.dropped == 1
    assert index.held_from == 1000
    # Bob's first record is gone: a query that reaches back to it says it may be incomplete
    bob = index.of_subject("acme", BOB)
    assert bob.records == [rest[1]]
    assert not bob.complete
    assert bob.held_from == 1000
    # a query that starts after what was dropped is complete
    assert index.of_subject("acme", BOB, since=1001).complete
    assert not index.of_subject("acme", BOB, since=1000).complete
    feed(index, rec(5), rec(6))
    assert index.count() == 3
    assert index.held_from == 3000
    assert index.of_activity("acme", CARE).records[-1].start_time == 4000


def test_buckets_of_dropped_records_are_forgotten() -> None:
    index = ProcessingLogIndex(max_records=2)
    feed(index, rec(1, tenant="gone", subject=BOB, activity=AIR), rec(2), rec(3))
    assert index.of_tenant("gone").records == []
    assert index._subjects.keys() == {("acme", ALICE)}
    assert index._activities.keys() == {("acme", CARE)}
    assert index._tenants.keys() == {"acme"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"acme/res-alice-01", None),
        (b"acme/res-alice-01", b"not json"),
        (b"acme/res-alice-01", b"{}"),
        (b"acme/res-alice-01", b"x" * 20_000),
        (b"other/res-alice-01", None),
        (None, None),
    ],
)
def test_malformed_records_are_counted_and_skipped(key: bytes | None, value: bytes | None) -> None:
    index = ProcessingLogIndex()
    assert not index.apply(key, value, partition=0, offset=7)
    assert index.malformed == 1
    assert index.count() == 0


def test_a_record_under_another_key_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    index = ProcessingLogIndex()
    record = rec(1)
    # a record claiming to be Alice's, keyed for another tenant's partition
    assert not index.apply(b"other/res-alice-01", record.to_json(), partition=2, offset=9)
    assert index.malformed == 1
    assert ALICE not in caplog.text
    data = json.loads(record.to_json())
    data["attributes"]["dpl.cityhub.tenant"] = "Bad Tenant"
    assert not index.apply(b"x", json.dumps(data).encode(), partition=0, offset=1)
    assert "partition 0 offset 1" in caplog.text


@pytest.mark.parametrize("cursor", ["", "x", "1.abc", "-1." + "a" * 48, "1." + "A" * 48])
def test_a_bad_cursor_is_invalid(cursor: str) -> None:
    with pytest.raises(Invalid):
        parse_cursor(cursor)
    index = ProcessingLogIndex()
    with pytest.raises(Invalid):
        index.of_tenant("acme", cursor=cursor)


def test_limit_is_checked_and_capped() -> None:
    index = ProcessingLogIndex()
    with pytest.raises(Invalid):
        index.of_tenant("acme", limit=0)
    feed(index, *[rec(n) for n in range(3)])
    assert len(index.of_tenant("acme", limit=10_000).records) == 3


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ProcessingLogIndex(max_records=0)
