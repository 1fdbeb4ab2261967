"""The history store's read statements without a database (``cityhub.streams.history.queries``):
user input travels only as parameters, the visibility rule is in every statement, paging
cursors round-trip and refuse what they did not make, reads are bounded.

What the statements select on real rows is tested on PostgreSQL in
``tests/integration/test_history_reads.py``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityhub.streams.aggregation.query import area_group, device_group
from cityhub.streams.history.aggregate_queries import (
    AggregateFilter,
    Group,
    aggregates_statement,
    as_utc,
)
from cityhub.streams.history.queries import (
    MAX_AGGREGATES,
    MAX_DEVICES,
    MAX_OBSERVATIONS,
    ObservationCursor,
    ObservationFilter,
    ObservationRow,
    Order,
    ReadRejected,
    Viewer,
    count_observations_statement,
    latest_statement,
    observations_statement,
    page_size,
    parse_cursor,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
T1 = T0 + timedelta(days=30)
EVENT = "0b6f6a52-4c55-4f6c-9b59-2a1e0a9c9d11"

texts = st.text(min_size=1, max_size=40)


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"%\((\w+)\)s", text))


@given(device=texts, quantity=texts, tenant=texts, area=texts)
def test_user_input_is_only_ever_a_parameter(
    device: str, quantity: str, tenant: str, area: str
) -> None:
    viewer = Viewer.of_tenant(tenant)
    statements = [
        observations_statement(
            viewer,
            ObservationFilter(
                device_ids=[device], quantities=[quantity], start=T0, end=T1, area=area
            ),
        ),
        count_observations_statement(viewer, ObservationFilter(device_ids=[device])),
        latest_statement(viewer, [device], [quantity]),
        latest_statement(viewer, [device]),
        aggregates_statement(viewer, AggregateFilter(Group.area(tenant, area), T0, T1, quantity)),
    ]
    texts_of = [s.text for s in statements]
    reference = [
        s.text
        for s in [
            observations_statement(
                Viewer.of_tenant("t"),
                ObservationFilter(device_ids=["d"], quantities=["q"], start=T0, end=T1, area="a"),
            ),
            count_observations_statement(Viewer.of_tenant("t"), ObservationFilter(["d"])),
            latest_statement(Viewer.of_tenant("t"), ["d"], ["q"]),
            latest_statement(Viewer.of_tenant("t"), ["d"]),
            aggregates_statement(
                Viewer.of_tenant("t"), AggregateFilter(Group.area("t", "a"), T0, T1, "q")
            ),
        ]
    ]
    # The text does not depend on the values at all: they are parameters.
    assert texts_of == reference
    for statement in statements:
        assert _placeholders(statement.text) <= set(statement.params)


def test_a_tenant_viewer_sees_its_own_and_public_rows_an_admin_all_never_personal() -> None:
    own = observations_statement(Viewer.of_tenant("utrecht"), ObservationFilter())
    assert "tenant = %(viewer_tenant)s OR classification = %(public)s" in own.text
    assert "tenant IS NOT NULL" in own.text
    assert own.params["viewer_tenant"] == "utrecht"
    assert own.params["public"] == "public"
    admin = observations_statement(Viewer.admin(), ObservationFilter())
    assert "viewer_tenant" not in admin.text
    for statement in (own, admin):
        assert "classification IS DISTINCT FROM %(personal)s" in statement.text
        assert "data_subject IS NULL" in statement.text
        assert statement.params["personal"] == "personal"
    latest = latest_statement(Viewer.admin(), ["d"])
    assert "data_subject IS NULL" in latest.text


def test_aggregates_leave_personal_windows_out_unless_the_caller_admits_them() -> None:
    filt = AggregateFilter(Group.device("d"), T0, T1)
    plain = aggregates_statement(Viewer.of_tenant("t"), filt)
    assert "classification IS DISTINCT FROM %(personal)s" in plain.text
    assert "data_subject" not in plain.text  # aggregates have no such column
    admitted = aggregates_statement(Viewer.of_tenant("t"), filt, include_personal=True)
    assert "%(personal)s" not in admitted.text
    assert "tenant = %(viewer_tenant)s" in admitted.text  # the tenant rule stays


def test_an_area_group_is_one_tenants_area_a_device_group_any_tenants_device() -> None:
    area = aggregates_statement(Viewer.admin(), AggregateFilter(Group.area("t1", "north"), T0, T1))
    assert area.params["group_tenant"] == "t1"
    assert (area.params["kind"], area.params["key"]) == ("area", "north")
    device = aggregates_statement(Viewer.admin(), AggregateFilter(Group.device("d-1"), T0, T1))
    assert "group_tenant" not in device.params
    assert (device.params["kind"], device.params["key"]) == ("device", "d-1")


def test_groups_read_the_kafka_record_keys() -> None:
    assert Group.of_record_key(device_group("aq/1")) == Group.device("aq/1")
    assert Group.of_record_key(area_group("t1", "north/east")) == Group.area("t1", "north/east")
    for bad in ("device/", "area/t1", "area/t1/", "cell/x", ""):
        with pytest.raises(ValueError, match="not a group key"):
            Group.of_record_key(bad)


def test_aggregates_bound_window_start_from_below_by_the_window_size() -> None:
    sized = aggregates_statement(
        Viewer.admin(), AggregateFilter(Group.device("d"), T0, T1, window_size=3600)
    )
    assert sized.params["earliest"] == T0 - timedelta(hours=1)
    assert sized.params["limit"] == MAX_AGGREGATES + 1
    unsized = aggregates_statement(Viewer.admin(), AggregateFilter(Group.device("d"), T0, T1))
    assert unsized.params["earliest"] == T0 - timedelta(days=366)
    few = aggregates_statement(Viewer.admin(), AggregateFilter(Group.device("d"), T0, T1), limit=5)
    assert few.params["limit"] == 6


def test_bad_aggregate_ranges_are_rejected() -> None:
    with pytest.raises(ReadRejected) as caught:
        aggregates_statement(Viewer.admin(), AggregateFilter(Group.device("d"), T1, T0))
    assert caught.value.field == "to"
    naive = datetime(2026, 11, 1)
    with pytest.raises(ReadRejected):
        aggregates_statement(Viewer.admin(), AggregateFilter(Group.device("d"), naive, T1))


def test_observation_pages_are_bounded_and_ordered_both_ways() -> None:
    asc = observations_statement(Viewer.admin(), ObservationFilter(), limit=10**9)
    assert asc.params["limit"] == MAX_OBSERVATIONS + 1
    assert "ORDER BY observed_at ASC, event_id ASC" in asc.text
    desc = observations_statement(Viewer.admin(), ObservationFilter(), order=Order.DESC)
    assert "ORDER BY observed_at DESC, event_id DESC" in desc.text
    assert page_size(0) == 1
    with pytest.raises(ReadRejected):
        observations_statement(Viewer.admin(), ObservationFilter(), limit=0)


def test_a_page_continues_after_its_cursor_in_its_own_order() -> None:
    cursor = ObservationCursor(T0, EVENT, Order.DESC)
    desc = observations_statement(
        Viewer.admin(), ObservationFilter(), order=Order.DESC, after=cursor
    )
    assert "(observed_at, event_id) < (%(after_at)s, %(after_id)s::uuid)" in desc.text
    assert (desc.params["after_at"], desc.params["after_id"]) == (T0, EVENT)
    asc_cursor = ObservationCursor(T0, EVENT, Order.ASC)
    asc = observations_statement(Viewer.admin(), ObservationFilter(), after=asc_cursor)
    assert "(observed_at, event_id) > (" in asc.text
    with pytest.raises(ReadRejected) as caught:
        observations_statement(Viewer.admin(), ObservationFilter(), after=cursor)
    assert caught.value.field == "cursor"


@given(
    at=st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2099, 12, 31),
        timezones=st.just(UTC),
    ),
    event=st.uuids(),
    order=st.sampled_from(Order),
)
def test_cursor_tokens_round_trip(at: datetime, event: object, order: Order) -> None:
    cursor = ObservationCursor(at, str(event), order)
    token = cursor.token()
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert parse_cursor(token) == cursor


@given(token=st.text(max_size=80))
def test_any_other_token_is_refused_cleanly(token: str) -> None:
    refusal: ReadRejected | None = None
    try:
        parsed = parse_cursor(token)
    except ReadRejected as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.field == "cursor"
    else:  # only a real cursor's token parses
        assert parsed.token() == token


def test_forged_cursors_are_refused() -> None:
    import base64

    for raw in (b'["2026-11-01T00:00:00", "x", "asc"]', b'["2026-11-01T00:00:00+00:00", 1, "up"]'):
        token = base64.urlsafe_b64encode(raw).decode()
        with pytest.raises(ReadRejected):
            parse_cursor(token)


def test_filters_reject_naive_times_empty_ranges_and_too_many_devices() -> None:
    naive = datetime(2026, 11, 1)
    for filt, field in (
        (ObservationFilter(start=naive), "start"),
        (ObservationFilter(start=T1, end=T0), "end"),
        (ObservationFilter(device_ids=["d"] * (MAX_DEVICES + 1)), "device_ids"),
    ):
        with pytest.raises(ReadRejected) as caught:
            observations_statement(Viewer.admin(), filt)
        assert caught.value.field == field
    with pytest.raises(ReadRejected):
        latest_statement(Viewer.admin(), [])
    with pytest.raises(ReadRejected):
        latest_statement(Viewer.admin(), [f"d{i}" for i in range(MAX_DEVICES + 1)])


def test_latest_finds_the_quantities_itself_when_not_given() -> None:
    given_pairs = latest_statement(Viewer.admin(), ["a", "b", "a"], ["q"])
    assert given_pairs.params["device_ids"] == ["a", "b"]  # each once
    assert "RECURSIVE" not in given_pairs.text
    skip = latest_statement(Viewer.admin(), ["a"], since=T0)
    assert "WITH RECURSIVE skip" in skip.text
    assert skip.params["since"] == T0


def test_a_row_takes_its_value_from_whichever_column_holds_it() -> None:
    base = [EVENT, T0, T0, "t", "d", "aq", "q", "Cel"]
    rest = ["north", 5.1, 52.1, None, "internal"]
    number = ObservationRow.from_record([*base, 21.5, None, None, *rest])
    assert number.value == 21.5
    assert number.doc is None
    text = ObservationRow.from_record([*base, None, "open", None, *rest, ["x", 1], {"a": 1}])
    assert text.value == "open"
    assert text.tags == ("x",)
    assert text.doc == {"a": 1}
    boolean = ObservationRow.from_record([*base, None, None, False, *rest])
    assert boolean.value is False
    assert number.cursor(Order.ASC) == ObservationCursor(T0, EVENT, Order.ASC)


def test_viewers() -> None:
    assert Viewer.admin().is_admin
    assert not Viewer.of_tenant("t").is_admin
    with pytest.raises(ValueError, match="tenant"):
        Viewer.of_tenant("")
    assert as_utc(1_000) == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_one_device_and_quantity_are_equalities_so_a_page_reads_the_index_in_order() -> None:
    one = observations_statement(
        Viewer.admin(), ObservationFilter(device_ids=["d"], quantities=["q"])
    )
    assert "device_id = %(device_ids)s AND quantity = %(quantities)s" in one.text
    assert (one.params["device_ids"], one.params["quantities"]) == ("d", "q")
    many = observations_statement(Viewer.admin(), ObservationFilter(device_ids=["d", "e"]))
    assert "device_id = ANY(%(device_ids)s::text[])" in many.text
    assert many.params["device_ids"] == ["d", "e"]
    # The uuid column orders the ties, not the text the rows carry.
    assert "event_id::text AS event_text" in one.text
    assert one.text.endswith("ORDER BY observed_at ASC, event_id ASC LIMIT %(limit)s")
