"""erase_subject on the real PostgreSQL: one subject's rows go, in every partition; nobody
else's, not even the same subject name of another tenant."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from cityhub.schemas.settings import Settings
from cityhub.streams.history.batch_store import prepare_staging, write_batch
from cityhub.streams.history.connection import Connection
from cityhub.streams.history.erasure import erase_subject
from cityhub.streams.history.partitions import PartitionKeeper
from cityhub.streams.history.rows import observation_row

from .test_history_writer import observation

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def sealed(device: str, n: int, tenant: str, subject: str | None, at: datetime) -> bytes:
    doc = observation(device, n, at=at, tenant=tenant, classification="personal").to_dict()
    if subject is not None:
        doc.update(value=None, location=None, sealed="v1.k.CIPHER", data_subject=subject)
    return orjson.dumps(doc)


async def test_erasure_deletes_the_subjects_rows_only(
    history_settings: Settings, history_conn: Connection
) -> None:
    await prepare_staging(history_conn)
    device = f"dev-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    hostile = datetime(1990, 1, 1, tzinfo=UTC)  # in the DEFAULT partition
    docs = [
        sealed(device, 1, "north", "alice", now),
        sealed(device, 2, "north", "alice", hostile),
        sealed(device, 3, "north", "bob", now),
        sealed(device, 4, "south", "alice", now),  # another tenant's subject of the same name
        sealed(device, 5, "north", None, now),  # personal, but no subject: not hers
    ]
    keeper = await PartitionKeeper.load(history_conn)
    rows = [observation_row(d) for d in docs]
    await write_batch(history_conn, keeper, history_settings.history, rows, [], now)

    assert await erase_subject(history_conn, "north", "alice") == 2
    assert await erase_subject(history_conn, "north", "alice") == 0  # nothing left

    cursor = await history_conn.execute(
        "SELECT tenant, data_subject FROM observations WHERE device_id = %s ORDER BY 1, 2",
        [device],
    )
    assert await cursor.fetchall() == [("north", "bob"), ("north", None), ("south", "alice")]


async def _fresh(conn: Connection) -> tuple[str, str, PartitionKeeper]:
    """A device and a subject no other test uses, and the partitions as they are."""
    await prepare_staging(conn)
    suffix = uuid.uuid4().hex[:8]
    return f"dev-{suffix}", f"res-{suffix}", await PartitionKeeper.load(conn)


async def test_a_row_received_before_the_erasure_is_not_written_after_it(
    history_settings: Settings, history_conn: Connection
) -> None:
    # A review found one row of an erased subject in the store: the writer had read it from
    # Kafka before the erasure and wrote it after the DELETE. A subject linked again later is
    # new data (a new key): its rows are kept.
    device, subject, keeper = await _fresh(history_conn)
    before = datetime.now(UTC) - timedelta(seconds=5)
    assert await erase_subject(history_conn, "north", subject) == 0
    after = datetime.now(UTC) + timedelta(seconds=5)
    late = [
        observation_row(sealed(device, 1, "north", subject, before)),  # in Kafka at the erasure
        observation_row(sealed(device, 2, "north", subject, after)),  # linked again, later
        observation_row(sealed(device, 3, "south", subject, before)),  # another tenant's
        observation_row(sealed(device, 4, "north", None, before)),
    ]
    await write_batch(history_conn, keeper, history_settings.history, late, [], after)
    cursor = await history_conn.execute(
        "SELECT tenant, data_subject, received_at > %s FROM observations"
        " WHERE device_id = %s ORDER BY 1, 2",
        [before, device],
    )
    assert await cursor.fetchall() == [
        ("north", subject, True),
        ("north", None, False),
        ("south", subject, False),
    ]


async def test_an_erasure_waits_for_a_batch_under_way_and_deletes_its_rows(
    history_settings: Settings, history_conn: Connection
) -> None:
    from cityhub.streams.history.connection import connect

    device, subject, keeper = await _fresh(history_conn)
    now = datetime.now(UTC)
    rows = [observation_row(sealed(device, 1, "north", subject, now))]
    other = await connect(history_settings, autocommit=True)
    try:
        async with history_conn.transaction():  # the writer's batch, not yet committed
            await write_batch(history_conn, keeper, history_settings.history, rows, [], now)
            erasing = asyncio.create_task(erase_subject(other, "north", subject))
            await asyncio.sleep(0.5)
            assert not erasing.done()  # waits for the batch
        assert await asyncio.wait_for(erasing, 10) == 1  # and sees its row
    finally:
        await other.close()
    cursor = await history_conn.execute(
        "SELECT count(*) FROM observations WHERE device_id = %s", [device]
    )
    assert await cursor.fetchone() == (0,)
