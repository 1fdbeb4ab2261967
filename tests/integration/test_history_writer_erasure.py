"""erase_subject on the real PostgreSQL: one subject's rows go, in every partition; nobody
else's, not even the same subject name of another tenant."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

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
