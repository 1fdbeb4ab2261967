"""The open-data distributions on the real stack: OpenWindow records written to the compacted
``open_data`` topic on Kafka (as the publisher writes them) are served by a ``cityhub api``
process without a key: the datasets and windows with their licence, 304 on the ETag, the daily
files downloaded over HTTP, saved to disk and read by DuckDB and pyarrow, a live SSE stream that
receives a window written after it connected, and 429 for an anonymous flood."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from cityhub.schemas.open_data import OpenWindow
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.timefmt import rfc3339_from_datetime
from cityhub.schemas.topics import Topics
from cityhub.streams.compacted import CompactedTopicStore
from cityhub.streams.opendata.distributions import window_key
from cityhub.streams.opendata.view import OpenDataView

from .hub import BOOTSTRAP, Hub

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CC0 = "http://creativecommons.org/publicdomain/zero/1.0/"
BURST = 80


def _hour(hours_ago: int) -> datetime:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(hours=hours_ago)


def _window(start: datetime, area: str, mean: float) -> OpenWindow:
    return OpenWindow(
        dataset="air-quality",
        area=area,
        quantity="pm10",
        unit="ug/m3",
        window_start=rfc3339_from_datetime(start),
        window_end=rfc3339_from_datetime(start + timedelta(hours=1)),
        mean=mean,
        min=mean - 5,
        max=mean + 5,
        readings=36,
        published_at=rfc3339_from_datetime(start + timedelta(hours=1, minutes=2)),
    )


class Publisher:
    """Writes windows to the hub's open-data topic as the publisher does."""

    def __init__(self, prefix: str) -> None:
        settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
        self.store: CompactedTopicStore[OpenDataView, OpenWindow] = CompactedTopicStore(
            settings,
            topic=Topics.for_prefix(prefix).open_data,
            view=OpenDataView(["air-quality"], recent_days=366),
            key_of=window_key,
            what="open data (test publisher)",
            client_id=f"{prefix}-test-open-data",
        )

    async def __aenter__(self) -> Publisher:
        await self.store.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.store.stop()

    async def publish(self, *windows: OpenWindow) -> None:
        await self.store.put_many(list(windows))


async def _until(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.2)


async def _exercise(hub: Hub, tmp_path: Path) -> dict[str, float]:
    base = f"http://127.0.0.1:{hub.port}/api/v1/open"
    old_day = _hour(0).date() - timedelta(days=3)
    old = datetime(old_day.year, old_day.month, old_day.day, 10, tzinfo=UTC)
    figures: dict[str, float] = {}
    async with Publisher(hub.prefix) as publisher, aiohttp.ClientSession() as session:
        await publisher.publish(
            _window(_hour(2), "centrum", 21.0),
            _window(_hour(2), "west", 17.0),
            _window(_hour(1), "centrum", 23.0),
            _window(old, "centrum", 11.0),
            _window(old + timedelta(hours=1), "west", 12.0),
        )
        windows_url = f"{base}/datasets/air-quality/windows"

        async def recent() -> Any:
            async with session.get(windows_url) as r:
                doc = await r.json()
                return (r, doc) if r.status == 200 and len(doc["items"]) == 3 else None

        found = await _until(recent)
        assert found, "the API did not serve the windows written to the topic"
        response, doc = found
        assert response.headers["Link"] == f'<{CC0}>; rel="license"'
        assert response.headers["Cache-Control"] == "public, max-age=60"
        assert doc["licence"] == {"id": "CC0-1.0", "uri": CC0}
        assert [w["area"] for w in doc["items"]] == ["centrum", "west", "centrum"]
        assert "device" not in str(doc)
        etag = response.headers["ETag"]
        async with session.get(windows_url, headers={"If-None-Match": etag}) as r:
            assert r.status == 304
            assert await r.read() == b""

        # The daily files: listed, downloaded, saved, and read by DuckDB and pyarrow.
        async def listed() -> Any:
            async with session.get(f"{base}/datasets/air-quality/files") as r:
                doc = await r.json()
                days = {f["day"] for f in doc.get("items", [])}
                return doc if old_day.isoformat() in days else None

        files_doc = await _until(listed)
        assert files_doc, "the daily files were not written"
        entry = next(f for f in files_doc["items"] if f["day"] == old_day.isoformat())
        assert entry["complete"] is True
        saved = {}
        for fmt in ("csv", "parquet"):
            async with session.get(f"http://127.0.0.1:{hub.port}{entry[fmt]}") as r:
                assert r.status == 200, await r.text()
                assert r.headers["Cache-Control"] == "public, max-age=86400"
                assert r.headers["Link"] == f'<{CC0}>; rel="license"'
                path = tmp_path / f"download-{old_day}.{fmt}"
                path.write_bytes(await r.read())
                saved[fmt] = path
        con = duckdb.connect()
        for reader, fmt in (("read_parquet", "parquet"), ("read_csv_auto", "csv")):
            rows = con.execute(
                f"SELECT area, mean, readings FROM {reader}(?) ORDER BY window_start",
                [str(saved[fmt])],
            ).fetchall()
            assert rows == [("centrum", 11.0, 36), ("west", 12.0, 36)], fmt
        assert pq.read_table(saved["parquet"]).num_rows == 2
        # An older day than the API holds in memory (recent_days=1) is served from its file.
        start = rfc3339_from_datetime(old - timedelta(hours=1))
        async with session.get(windows_url, params={"from": start}) as r:
            doc = await r.json()
            assert r.status == 200, doc
            assert [w["mean"] for w in doc["items"]][:2] == [11.0, 12.0]

        # The live stream receives a window written after it connected.
        async with session.get(f"{base}/stream", params={"dataset": "air-quality"}) as stream:
            assert stream.status == 200
            assert stream.headers["Link"] == f'<{CC0}>; rel="license"'
            connected = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 5)
            assert b"retry:" in connected
            sent = time.monotonic()
            await publisher.publish(_window(_hour(0), "oost", 30.0))
            buffer = b""
            async with asyncio.timeout(5):
                while b"event: window" not in buffer:
                    buffer += await stream.content.readuntil(b"\n\n")
            figures["stream_seconds"] = time.monotonic() - sent
            assert b'"area":"oost"' in buffer
            assert CC0.encode() in buffer

        # Hostile input is a problem document.
        async with session.get(f"{base}/datasets/air-quality/files/..%2F..%2Fetc%2Fpasswd") as r:
            assert r.status == 404
            assert r.content_type == "application/problem+json"
        async with session.get(windows_url, params={"from": "2000-01-01T00:00:00Z"}) as r:
            assert r.status == 400
            assert r.content_type == "application/problem+json"

        # An anonymous flood is refused (bounded: the bucket holds BURST requests).
        statuses = []
        for _ in range(BURST + 40):
            async with session.get(f"{base}/datasets") as r:
                statuses.append(r.status)
                if r.status == 429:
                    assert int(r.headers["Retry-After"]) >= 1
                    assert (await r.json())["quota"] == "api_requests_per_second"
                    break
        assert statuses[-1] == 429, statuses
        figures["requests_before_429"] = len(statuses) - 1
    return figures


def test_open_data_on_the_real_stack(tmp_path: Path) -> None:
    env = {
        "CITYHUB_OPEN_DATA__FILES_DIR": str(tmp_path / "open-data"),
        "CITYHUB_OPEN_DATA__RECENT_DAYS": "1",
        "CITYHUB_QUOTAS__API_REQUESTS_PER_SECOND": "2",
        "CITYHUB_QUOTAS__API_BURST": str(BURST),
    }
    hub = Hub(tmp_path / "api", command="api", extra_env=env)
    hub.workdir.mkdir()
    hub.start()
    try:
        figures = asyncio.run(_exercise(hub, tmp_path))
        assert hub.health()["components"]["open_data"] is True
        files_written = hub.metric("cityhub_open_data_files_written_total")
    finally:
        hub.stop()
    assert figures["stream_seconds"] < 5
    assert files_written >= 2  # today's and the old day's files (each CSV and Parquet)
    print(f"open data figures: {figures}")
