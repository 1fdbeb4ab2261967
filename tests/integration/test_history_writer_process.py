"""The history writer as ``cityhub run`` runs it: MQTT in, rows out of the hub's own history
schema, the writer a child that the hub's health and metrics include."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cityhub.streams.history.connection import connect

from .conftest import settings_with_schema
from .hub import Hub, publish

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    h = Hub(
        tmp_path_factory.mktemp("hub"),
        extra_env={"CITYHUB_WORKER__ALLOW_UNKNOWN_DEVICES": "true"},
    )
    h.start()
    yield h
    h.stop()


async def rows_of(schema: str, device: str) -> list[tuple[str, float]]:
    async with await connect(settings_with_schema(schema)) as conn:
        cursor = await conn.execute(
            "SELECT quantity, value_number FROM observations WHERE device_id = %s ORDER BY 1",
            [device],
        )
        return [(str(q), float(v)) for q, v in await cursor.fetchall()]


async def test_run_stores_what_arrives_and_reports_the_writer(hub: Hub, tmp_path: Path) -> None:
    device = f"meter-{uuid.uuid4().hex[:6]}"
    body = json.dumps({"time": "2026-12-03T10:00:00Z", "temperature": 4.5, "noise": 51.0})
    await publish([(f"cityhub/ingest/{device}", body.encode())])

    deadline = time.monotonic() + 60
    rows: list[tuple[str, float]] = []
    while time.monotonic() < deadline:
        rows = await rows_of(hub.prefix, device)
        if len(rows) == 2:
            break
        await asyncio.sleep(0.5)
    assert rows == [("sound_level", 51.0), ("temperature", 4.5)], hub.log_tail()

    health = hub.health()
    assert "history" in json.dumps(health), health
    assert hub.metric("cityhub_history_rows_written_total", table="observations") >= 2
    assert hub.metric("cityhub_history_paused") == 0
