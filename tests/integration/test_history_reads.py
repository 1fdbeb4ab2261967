"""The history store's reads on the real PostgreSQL (``cityhub.streams.history.reads``), over rows
written straight into a schema of this module's own: who sees what (from both tenants' side and
an admin's; personal rows never), keyset pages that come back whole and in order both ways, the
latest observation per device and quantity, and a group's aggregates (current revision, the
Kafka reader's order, overlap, filters, the bound); the erasure's deletion of one subject's
rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from cityhub.schemas.aggregate import Aggregate, aggregate_id
from cityhub.schemas.settings import Settings
from cityhub.streams.aggregation.query import _order as kafka_order
from cityhub.streams.aggregation.query import format_ms, to_ms
from cityhub.streams.history.connection import Connection
from cityhub.streams.history.reads import (
    AggregateFilter,
    Group,
    ObservationCursor,
    ObservationFilter,
    Order,
    ReadRejected,
    Viewer,
    aggregates,
    count_observations,
    latest_observations,
    observations,
    parse_cursor,
)
from cityhub.streams.privacy.erasure import history_rows

from .conftest import settings_with_schema
from .history_rows import insert_aggregates, insert_observations, observation_row
from .hub import free_port

pytestmark = pytest.mark.integration

T0 = datetime(2026, 10, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def ids(rows: list[object]) -> list[str]:
    return [row.device_id for row in rows]  # type: ignore[attr-defined]


async def test_each_tenant_sees_its_own_and_public_rows_nobody_personal_ones(
    history_conn: Connection,
) -> None:
    rows = [
        observation_row(device_id="a-int", tenant="a", classification="internal", observed_at=T0),
        observation_row(device_id="a-pub", tenant="a", classification="public", observed_at=T0),
        observation_row(device_id="a-none", tenant="a", classification=None, observed_at=T0),
        observation_row(device_id="b-int", tenant="b", classification="internal", observed_at=T0),
        observation_row(device_id="b-pub", tenant="b", classification="public", observed_at=T0),
        observation_row(device_id="x-pub", tenant=None, classification="public", observed_at=T0),
        observation_row(device_id="a-pers", tenant="a", classification="personal", observed_at=T0),
        # A sealed reading of a data subject: no value, no location, only the sealed doc.
        observation_row(
            device_id="a-subj",
            tenant="a",
            classification="personal",
            data_subject="resident-1",
            observed_at=T0,
        ),
        # A subject-linked row whatever its classification says: still never shown.
        observation_row(
            device_id="a-subj2",
            tenant="a",
            classification="internal",
            data_subject="resident-2",
            observed_at=T0,
        ),
    ]
    await insert_observations(history_conn, rows)
    everything = ObservationFilter(start=T0, end=T0 + HOUR)

    async def seen(viewer: Viewer) -> set[str]:
        page = await observations(history_conn, viewer, everything)
        assert await count_observations(history_conn, viewer, everything) == len(page.items)
        return set(ids(page.items))

    assert await seen(Viewer.of_tenant("a")) == {"a-int", "a-pub", "a-none", "b-pub"}
    assert await seen(Viewer.of_tenant("b")) == {"b-int", "b-pub", "a-pub"}
    assert await seen(Viewer.of_tenant("c")) == {"a-pub", "b-pub"}
    assert await seen(Viewer.admin()) == {"a-int", "a-pub", "a-none", "b-int", "b-pub", "x-pub"}
    devices = [row["device_id"] for row in rows]
    latest = await latest_observations(history_conn, Viewer.admin(), devices)
    assert "a-pers" not in ids(latest)
    assert "a-subj" not in ids(latest)
    assert "a-subj2" not in ids(latest)


async def test_pages_come_back_whole_and_in_order_both_ways(history_conn: Connection) -> None:
    # 23 readings of one device, several at the same instant (ties broken by event id).
    rows = [
        observation_row(
            device_id="pager",
            tenant="p",
            observed_at=T0 + timedelta(minutes=i // 3),
            value=float(i),
        )
        for i in range(23)
    ]
    # Another device and quantity in the same range, which the filter leaves out.
    rows.append(observation_row(device_id="other", tenant="p", observed_at=T0))
    rows.append(
        observation_row(device_id="pager", tenant="p", quantity="rh", observed_at=T0, value=1.0)
    )
    await insert_observations(history_conn, rows)
    viewer = Viewer.of_tenant("p")
    filt = ObservationFilter(device_ids=["pager"], quantities=["temperature"], start=T0)
    expected = sorted(
        ((r["observed_at"], r["event_id"]) for r in rows[:23]),
        key=lambda pair: (pair[0], uuid.UUID(pair[1])),
    )
    for order in Order:
        got = []
        after: ObservationCursor | None = None
        pages = 0
        while True:
            page = await observations(history_conn, viewer, filt, order=order, limit=5, after=after)
            pages += 1
            assert len(page.items) <= 5
            got += [(row.observed_at, row.event_id) for row in page.items]
            if page.next is None:
                break
            after = parse_cursor(page.next.token())  # as a link carries it
        assert pages == 5
        want = expected if order is Order.ASC else expected[::-1]
        assert got == want
    with_doc = await observations(history_conn, viewer, filt, limit=1, with_doc=True)
    assert with_doc.items[0].doc is not None
    assert with_doc.items[0].doc["device_id"] == "pager"
    assert with_doc.items[0].longitude == pytest.approx(5.12)
    assert with_doc.items[0].latitude == pytest.approx(52.09)


async def test_latest_per_device_and_quantity(history_conn: Connection) -> None:
    rows = []
    for device in ("l-1", "l-2"):
        for quantity in ("no2", "pm10", "temperature"):
            for hour in range(3):
                rows.append(
                    observation_row(
                        device_id=device,
                        tenant="l",
                        quantity=quantity,
                        observed_at=T0 + hour * HOUR,
                        value=float(hour),
                    )
                )
    # A later reading that is another tenant's internal one (the device moved): l's viewer
    # gets the latest it may see, the other tenant the newer one.
    rows.append(
        observation_row(
            device_id="l-1", tenant="m", quantity="no2", observed_at=T0 + 5 * HOUR, value=9.0
        )
    )
    rows.append(observation_row(device_id="l-3", tenant="l", observed_at=T0, value=True))
    await insert_observations(history_conn, rows)
    viewer = Viewer.of_tenant("l")
    latest = await latest_observations(history_conn, viewer, ["l-1", "l-2", "l-3", "none"])
    assert [(r.device_id, r.quantity, r.value) for r in latest] == [
        ("l-1", "no2", 2.0),
        ("l-1", "pm10", 2.0),
        ("l-1", "temperature", 2.0),
        ("l-2", "no2", 2.0),
        ("l-2", "pm10", 2.0),
        ("l-2", "temperature", 2.0),
        ("l-3", "temperature", True),
    ]
    other = await latest_observations(history_conn, Viewer.of_tenant("m"), ["l-1"], ["no2"])
    assert [(r.tenant, r.value) for r in other] == [("m", 9.0)]
    chosen = await latest_observations(history_conn, viewer, ["l-2", "l-1"], ["pm10", "nothing"])
    assert [(r.device_id, r.quantity) for r in chosen] == [("l-1", "pm10"), ("l-2", "pm10")]
    recent = await latest_observations(history_conn, viewer, ["l-1"], since=T0 + 2 * HOUR)
    assert len(recent) == 3
    assert await latest_observations(history_conn, viewer, ["l-1"], since=T0 + 3 * HOUR) == []


def window(
    key: str,
    *,
    start: datetime,
    tenant: str = "g",
    classification: str = "internal",
    grouping: str = "device",
    quantity: str = "temperature",
    unit: str | None = "Cel",
    size: int = 3600,
    revision: int = 0,
) -> Aggregate:
    start_ms = to_ms(start)
    return Aggregate(
        aggregate_id=aggregate_id(grouping, tenant, key, quantity, unit, size, start_ms * 1000),
        grouping=grouping,  # type: ignore[arg-type]
        key=key,
        tenant=tenant,
        classification=classification,
        device_id=key if grouping == "device" else None,
        area="north" if grouping == "device" else key,
        quantity=quantity,
        unit=unit,
        window_size=size,
        window_start=format_ms(start_ms),
        window_end=format_ms(start_ms + size * 1000),
        count=1 + revision,
        min=1.0,
        max=2.0,
        sum=3.0,
        mean=1.5,
        last=2.0,
        last_observed_at=format_ms(start_ms + 1000),
        last_event_id=str(uuid.uuid4()),
        revision=revision,
    )


async def test_a_groups_aggregates_current_revision_in_the_kafka_readers_order(
    history_conn: Connection,
) -> None:
    written = []
    for hour in range(6):
        start = T0 + hour * HOUR
        written += [
            window("g-1", start=start),
            window("g-1", start=start, quantity="rh", unit="%RH"),
            window("g-1", start=start, size=60),
            window("g-2", start=start),  # another device
            window("north", start=start, grouping="area"),
            window("north", start=start, grouping="area", tenant="h"),
            window("g-1", start=start, classification="personal", quantity="occupancy"),
        ]
    written += [window("g-1", start=T0 + 2 * HOUR, revision=r) for r in (2, 1)]  # 1 after 2
    await insert_aggregates(history_conn, written)
    device = Group.device("g-1")
    viewer = Viewer.of_tenant("g")
    # Windows that overlap [T0 + 1 h 30 min, T0 + 3 h): those starting at 1 h and 2 h.
    filt = AggregateFilter(device, T0 + 1.5 * HOUR, T0 + 3 * HOUR)
    docs = await aggregates(history_conn, viewer, filt)
    keys = [(d["window_start"][11:16], d["window_size"], d["quantity"]) for d in docs]
    # The 60 s window of 01:00 ends at 01:01, before the range: left out.
    assert keys == [
        ("01:00", 3600, "rh"),
        ("01:00", 3600, "temperature"),
        ("02:00", 60, "temperature"),
        ("02:00", 3600, "rh"),
        ("02:00", 3600, "temperature"),
    ]
    assert docs == sorted(docs, key=kafka_order)
    revisions = {d["window_start"]: d["revision"] for d in docs if d["quantity"] == "temperature"}
    assert revisions["2026-10-01T02:00:00.000Z"] == 2  # the current one, not the last written
    assert {d["quantity"] for d in docs} == {"temperature", "rh"}  # personal left out
    with_personal = await aggregates(history_conn, viewer, filt, include_personal=True)
    assert {d["quantity"] for d in with_personal} == {"temperature", "rh", "occupancy"}
    sized = await aggregates(
        history_conn,
        viewer,
        AggregateFilter(device, T0, T0 + 6 * HOUR, quantity="temperature", window_size=3600),
    )
    assert [d["window_start"][11:13] for d in sized] == ["00", "01", "02", "03", "04", "05"]
    # Areas are per tenant; another tenant sees no internal window of either.
    g_area = await aggregates(
        history_conn, viewer, AggregateFilter(Group.area("g", "north"), T0, T0 + 6 * HOUR)
    )
    assert {d["tenant"] for d in g_area} == {"g"}
    assert len(g_area) == 6
    stranger = await aggregates(history_conn, Viewer.of_tenant("h"), filt)
    assert stranger == []
    with pytest.raises(ReadRejected) as caught:
        await aggregates(history_conn, viewer, AggregateFilter(device, T0, T0 + 6 * HOUR), limit=5)
    assert caught.value.field == "windowSize"


async def test_the_erasures_history_rows_delete_one_subjects_rows_only(
    history_settings: Settings, history_conn: Connection
) -> None:
    await insert_observations(
        history_conn,
        [
            observation_row(
                device_id="e-1",
                tenant="e",
                classification="personal",
                data_subject="subject-e",
                observed_at=T0 + i * HOUR,
            )
            for i in range(3)
        ]
        + [
            observation_row(
                device_id="e-2",
                tenant="e",
                classification="personal",
                data_subject="subject-f",
                observed_at=T0,
            ),
            # The same subject id in another tenant is another person.
            observation_row(
                device_id="e-3",
                tenant="other",
                classification="personal",
                data_subject="subject-e",
                observed_at=T0,
            ),
        ],
    )
    rows = history_rows(history_settings)
    assert rows is not None
    assert await rows.erase("e", "subject-e") == 3
    assert await rows.erase("e", "subject-e") == 0
    cursor = await history_conn.execute(
        "SELECT device_id FROM observations WHERE device_id LIKE 'e-%' ORDER BY 1"
    )
    assert [r[0] for r in await cursor.fetchall()] == ["e-2", "e-3"]
    # A schema the writer never migrated holds nothing to erase.
    never = history_rows(settings_with_schema("test_never_migrated_schema"))
    assert never is not None
    assert await never.erase("e", "subject-e") == 0
    # A store that cannot be reached fails the erasure (a retry finishes it).
    down = history_settings.model_copy(
        update={"history": history_settings.history.model_copy(update={"port": free_port()})}
    )
    unreachable = history_rows(down)
    assert unreachable is not None
    with pytest.raises(psycopg.OperationalError):
        await unreachable.erase("e", "subject-f")
    assert history_rows(Settings(history={"enabled": False})) is None  # type: ignore[arg-type]
