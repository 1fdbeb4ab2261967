"""The open-data routes over HTTP (aiohttp's test server, an in-memory topic): no key, licence on
every answer, public caching with ETag and 304, paging, older days from the files, the daily
files downloadable and readable, the live stream with its caps, and hostile input answered
with problems. The same on the real stack: tests/integration/test_open_data_api.py."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.open_data import OpenDataSettings, OpenWindow
from cityhub.schemas.settings import QuotaSettings, Settings
from cityhub.schemas.timefmt import rfc3339_from_datetime
from cityhub.streams.api.app import build_api
from cityhub.streams.compacted import InMemoryCompactedStore
from cityhub.streams.opendata.distributions import OpenDataDistributions, window_key
from cityhub.streams.opendata.view import OpenDataView
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.runtime.host import server_part

OPEN = "/api/v1/open"
CC0 = "http://creativecommons.org/publicdomain/zero/1.0/"
CC_BY = "http://creativecommons.org/licenses/by/4.0/"


def hour(hours_ago: int) -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours_ago)


def window(start: datetime, area: str = "centrum", quantity: str = "pm10") -> OpenWindow:
    return OpenWindow(
        dataset="air-quality",
        area=area,
        quantity=quantity,
        unit="ug/m3",
        window_start=rfc3339_from_datetime(start),
        window_end=rfc3339_from_datetime(start + timedelta(hours=1)),
        mean=18.0,
        min=9.0,
        max=31.0,
        readings=40,
        published_at=rfc3339_from_datetime(start + timedelta(hours=1, minutes=2)),
    )


class Open:
    def __init__(self, client: TestClient[Any, Any], data: OpenDataDistributions) -> None:
        self.client = client
        self.data = data

    async def get(self, path: str, **kw: Any) -> tuple[int, Any, Any, bytes]:
        async with self.client.get(path, **kw) as response:
            body = await response.read()
            doc = None
            if response.content_type in {"application/json", "application/problem+json"}:
                doc = await response.json(content_type=None)
            return response.status, doc, response.headers, body

    async def publish(self, *windows: OpenWindow) -> None:
        await self.data.store.put_many(list(windows))


@pytest.fixture
async def open_api(tmp_path: Path) -> AsyncIterator[Open]:
    async with open_data_app(tmp_path) as (app, data), TestClient(TestServer(app)) as client:
        yield Open(client, data)


@asynccontextmanager
async def open_data_app(
    tmp_path: Path, *, heartbeat_seconds: float = 0.2
) -> AsyncIterator[tuple[web.Application, OpenDataDistributions]]:
    """The API with the open-data distributions over an in-memory store (one stream an
    address)."""
    settings = Settings(
        open_data=OpenDataSettings(files_dir=tmp_path / "files", recent_days=2),
        quotas=QuotaSettings(
            api_requests_per_second=1000, api_burst=1000, open_data_streams_per_address=1
        ),
    )
    view = OpenDataView(["air-quality", "noise"], recent_days=2)
    store: InMemoryCompactedStore[OpenDataView, OpenWindow] = InMemoryCompactedStore(
        view, window_key
    )
    data = OpenDataDistributions(
        settings, store=store, debounce_seconds=0.01, heartbeat_seconds=heartbeat_seconds
    )
    await data.start()
    registry_store = InMemoryRegistryStore()
    await registry_store.start()
    try:
        yield build_api(Registry(registry_store), quotas=settings.quotas, open_data=data), data
    finally:
        await data.stop()
        await registry_store.stop()


async def test_the_datasets_need_no_key_and_carry_their_licences(open_api: Open) -> None:
    status, doc, headers, _ = await open_api.get(f"{OPEN}/datasets")
    assert status == 200, doc
    ids = [d["id"] for d in doc["items"]]
    assert ids == ["air-quality", "noise"]
    air, noise = doc["items"]
    assert air["licence"] == {"id": "CC0-1.0", "uri": CC0}
    assert noise["licence"] == {"id": "CC-BY-4.0", "uri": CC_BY}
    assert air["links"]["windows"] == f"{OPEN}/datasets/air-quality/windows"
    assert air["links"]["catalog"] == f"{OPEN}/catalog"
    assert f'<{CC0}>; rel="license"' in headers["Link"]
    assert f'<{CC_BY}>; rel="license"' in headers["Link"]
    assert headers["Cache-Control"] == "public, max-age=60"
    status, one, headers, _ = await open_api.get(f"{OPEN}/datasets/noise")
    assert status == 200
    # The catalogue's name: what the noise sensors' observations carry (the dataset's "laeq",
    # an alias, matched none of them and the noise dataset published nothing).
    assert one["quantities"] == ["sound_level"]
    assert headers["Link"] == f'<{CC_BY}>; rel="license"'


async def test_windows_page_with_etag_and_304(open_api: Open) -> None:
    await open_api.publish(
        *(window(hour(h), area=a) for h in (1, 2, 3) for a in ("centrum", "west"))
    )
    path = f"{OPEN}/datasets/air-quality/windows?limit=4"
    status, doc, headers, _ = await open_api.get(path)
    assert status == 200, doc
    assert doc["licence"]["uri"] == CC0
    assert len(doc["items"]) == 4
    assert "device" not in str(doc)
    assert doc["next_cursor"]
    assert 'rel="next"' in headers["Link"]
    assert 'rel="license"' in headers["Link"]
    assert headers["Cache-Control"] == "public, max-age=60"
    etag = headers["ETag"]
    status, _, again, body = await open_api.get(path, headers={"If-None-Match": etag})
    assert status == 304
    assert body == b""
    assert again["ETag"] == etag
    status, rest, _, _ = await open_api.get(
        f"{OPEN}/datasets/air-quality/windows?limit=4&cursor={doc['next_cursor']}"
    )
    assert status == 200
    assert len(rest["items"]) == 2
    assert rest["next_cursor"] is None
    status, west, _, _ = await open_api.get(f"{OPEN}/datasets/air-quality/windows?area=west")
    assert {w["area"] for w in west["items"]} == {"west"}
    # A new window changes the answer, and so its tag.
    await open_api.publish(window(hour(3), area="oost"))
    status, _, changed, _ = await open_api.get(path, headers={"If-None-Match": etag})
    assert status == 200
    assert changed["ETag"] != etag


async def test_older_days_come_from_the_files(open_api: Open) -> None:
    old = hour(24 * 4)
    await open_api.publish(window(old), window(old, area="west"))
    assert not open_api.data.view.holds(old.date())
    await open_api.data.flush()
    start = rfc3339_from_datetime(old - timedelta(hours=1)).replace("+", "%2B")
    status, doc, _, _ = await open_api.get(
        f"{OPEN}/datasets/air-quality/windows?from={start}&to="
        + rfc3339_from_datetime(old + timedelta(days=1))
    )
    assert status == 200, doc
    assert [w["area"] for w in doc["items"]] == ["centrum", "west"]


async def test_files_are_listed_downloadable_and_readable(open_api: Open) -> None:
    old = hour(24 * 4)
    # This hour's window: today's file, never complete (an hour ago was yesterday's, complete
    # in the first hour after midnight).
    await open_api.publish(window(old), window(hour(0)))
    for _ in range(100):
        if len(open_api.data.file_days("air-quality")) == 2:
            break
        await asyncio.sleep(0.02)  # the writer's debounce
    status, doc, headers, _ = await open_api.get(f"{OPEN}/datasets/air-quality/files")
    assert status == 200, doc
    assert [f["complete"] for f in doc["items"]] == [False, True]  # newest first
    assert headers["Link"] == f'<{CC0}>; rel="license"'
    day = old.date().isoformat()
    status, _, headers, body = await open_api.get(
        f"{OPEN}/datasets/air-quality/files/{day}.parquet"
    )
    assert status == 200
    assert headers["Content-Type"] == "application/vnd.apache.parquet"
    assert headers["Cache-Control"] == "public, max-age=86400"
    assert pq.read_table(io.BytesIO(body)).column("area").to_pylist() == ["centrum"]
    status, _, headers, body = await open_api.get(f"{OPEN}/datasets/air-quality/files/{day}.csv")
    assert status == 200
    assert headers["Content-Type"].startswith("text/csv")
    assert body.startswith(b"dataset,area,quantity")
    status, _, _, _ = await open_api.get(
        f"{OPEN}/datasets/air-quality/files/{day}.csv", headers={"If-None-Match": headers["ETag"]}
    )
    assert status == 304


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/datasets/parking/windows", 404),
        ("/datasets/..%2F..%2Fetc/windows", 404),
        ("/datasets/air-quality/windows?from=yesterday", 400),
        ("/datasets/air-quality/windows?from=2026-02-30T00:00:00Z", 400),
        ("/datasets/air-quality/windows?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", 400),
        ("/datasets/air-quality/windows?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", 400),
        ("/datasets/air-quality/windows?cursor=bm90IGEgY3Vyc29y", 400),
        ("/datasets/air-quality/windows?quantity=laeq", 400),
        ("/datasets/air-quality/windows?area=%3Cscript%3E", 400),
        ("/datasets/air-quality/windows?limit=0", 400),
        ("/datasets/air-quality/windows?sql=1", 400),
        ("/datasets/air-quality/files/..%2F..%2Fetc%2Fpasswd", 404),
        ("/datasets/air-quality/files/2026-13-01.csv", 404),
        ("/datasets/air-quality/files/2026-12-01.exe", 404),
        ("/datasets/air-quality/files/1999-12-01.csv", 404),
        ("/datasets/air-quality/files?cursor=x", 400),
        ("/stream?dataset=parking", 404),
    ],
)
async def test_hostile_input_is_a_problem(open_api: Open, path: str, expected: int) -> None:
    status, doc, headers, _ = await open_api.get(OPEN + path)
    assert status == expected, doc
    assert headers["Content-Type"].startswith("application/problem+json")
    assert doc["status"] == expected
    assert "passwd" not in doc["detail"]
    assert "script" not in doc["detail"]


async def _read_event(response: Any, timeout: float = 3.0) -> bytes:
    buffer = b""
    async with asyncio.timeout(timeout):
        while b"event: window" not in buffer or not buffer.endswith(b"\n\n"):
            buffer += await response.content.readany()
    return buffer


async def test_the_stream_sends_new_windows_with_their_licence_and_is_capped(
    open_api: Open,
) -> None:
    await open_api.publish(window(hour(2)))  # before connecting: not sent
    async with open_api.client.get(f"{OPEN}/stream?dataset=air-quality&area=west") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Link"] == f'<{CC0}>; rel="license"'
        # A second stream from the same address is past the cap of one.
        status, doc, headers, _ = await open_api.get(f"{OPEN}/stream")
        assert status == 429, doc
        assert doc["quota"] == "open_data_streams_per_address"
        assert headers["Retry-After"] == "30"
        await open_api.publish(window(hour(1), area="centrum"), window(hour(1), area="west"))
        event = await _read_event(response)
        assert b'"area":"west"' in event
        assert b'"centrum"' not in event
        assert CC0.encode() in event
        assert b"id: 2\n" in event
        more = await asyncio.wait_for(response.content.readany(), 2.0)
        assert b": heartbeat" in more
    for _ in range(50):  # the server notices the client left
        if open_api.data.streams.open_streams == 0:
            break
        await asyncio.sleep(0.05)
    assert open_api.data.streams.open_streams == 0


async def test_without_open_data_the_routes_say_so(tmp_path: Path) -> None:
    store = InMemoryRegistryStore()
    await store.start()
    app = build_api(Registry(store), quotas=QuotaSettings(api_requests_per_second=1000))
    async with TestClient(TestServer(app)) as client, client.get(f"{OPEN}/datasets") as response:
        assert response.status == 404
    await store.stop()


async def test_any_web_page_may_read_the_open_data(open_api: Open) -> None:
    origin = {"Origin": "https://someone.example"}
    status, _, headers, _ = await open_api.get(f"{OPEN}/datasets", headers=origin)
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "ETag" in headers["Access-Control-Expose-Headers"]
    async with open_api.client.options(
        f"{OPEN}/datasets/air-quality/windows",
        headers={**origin, "Access-Control-Request-Method": "GET"},
    ) as preflight:
        assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    # The rest of the API stays closed to pages of other origins.
    async with open_api.client.get("/api/v1/tenants", headers=origin) as closed:
        assert "Access-Control-Allow-Origin" not in closed.headers
    # Nor may a page of another origin file data requests from its visitors' browsers.
    async with open_api.client.options(
        f"{OPEN}/data-requests", headers={**origin, "Access-Control-Request-Method": "POST"}
    ) as preflight:
        assert "Access-Control-Allow-Origin" not in preflight.headers


async def test_pages_run_across_days_from_memory_and_from_the_files(open_api: Open) -> None:
    starts = [hour(24 * d + 1) for d in (5, 4, 3, 1, 0)]  # three old days, two held
    await open_api.publish(*(window(s, area=a) for s in starts for a in ("centrum", "west")))
    await open_api.data.flush()
    query = {
        "from": rfc3339_from_datetime(hour(24 * 6)),
        "to": rfc3339_from_datetime(hour(0) + timedelta(hours=2)),
        "area": "west",
        "limit": "2",
    }
    seen: list[str] = []
    for _ in range(10):
        async with open_api.client.get(f"{OPEN}/datasets/air-quality/windows", params=query) as r:
            doc = await r.json()
            assert r.status == 200, doc
        seen += [w["window_start"] for w in doc["items"]]
        assert {w["area"] for w in doc["items"]} <= {"west"}
        if doc["next_cursor"] is None:
            break
        query["cursor"] = doc["next_cursor"]
    assert seen == sorted(rfc3339_from_datetime(s) for s in starts)


async def test_a_folder_that_cannot_be_written_is_tried_again(
    open_api: Open, caplog: pytest.LogCaptureFixture
) -> None:
    data = open_api.data
    data.files_dir.parent.mkdir(parents=True, exist_ok=True)
    data.files_dir.write_text("a file where the folder should be")
    await open_api.publish(window(hour(1)), window(hour(24 * 4)))

    def failures() -> list[str]:
        return [r.getMessage() for r in caplog.records if "open-data day(s)" in r.getMessage()]

    for _ in range(100):  # the writer's debounce
        if failures():
            break
        await asyncio.sleep(0.02)
    # One line for both days, not one per day.
    assert failures()[0].startswith("writing 2 open-data day(s)")
    # The API still serves the recent day from memory.
    status, doc, _, _ = await open_api.get(f"{OPEN}/datasets/air-quality/windows")
    assert status == 200
    assert len(doc["items"]) == 1
    data.files_dir.unlink()
    await data.flush()  # the writer tries again by itself within a minute; no need to wait
    assert data.file_days("air-quality") == sorted({hour(1).date(), hour(24 * 4).date()})


async def test_a_stream_resumes_after_its_last_event_id(open_api: Open) -> None:
    await open_api.publish(window(hour(3)), window(hour(2)), window(hour(1)))  # offsets 0, 1, 2
    async with open_api.client.get(f"{OPEN}/stream", headers={"Last-Event-ID": "0"}) as response:
        assert response.status == 200
        await open_api.publish(window(hour(1), area="west"))  # wakes the stream
        buffer = b""
        async with asyncio.timeout(3):
            while buffer.count(b"event: window") < 3:
                buffer += await response.content.readany()
    assert [line for line in buffer.split(b"\n") if line.startswith(b"id: ")] == [
        b"id: 1",
        b"id: 2",
        b"id: 3",
    ]
    status, doc, _, _ = await open_api.get(f"{OPEN}/stream", headers={"Last-Event-ID": "0:42"})
    assert status == 400
    assert doc["errors"][0]["field"] == "Last-Event-ID"


async def test_a_stream_gives_its_slot_back_within_a_second_of_its_client_leaving(
    tmp_path: Path,
) -> None:
    # A review: with the 15 s heartbeat, a slot stayed taken until the next heartbeat's write
    # failed, and a browser reconnecting after a blip was refused (429) meanwhile. Served as
    # the hub serves (aiohttp's test server cancels a handler whose client left; the hub's
    # does not).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    async with open_data_app(tmp_path, heartbeat_seconds=30) as (app, _):
        server = asyncio.create_task(server_part("api", app, "127.0.0.1", port).run())
        url = f"http://127.0.0.1:{port}{OPEN}/stream"
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(100):
                    with contextlib.suppress(aiohttp.ClientConnectionError):
                        async with session.get(url) as response:
                            assert response.status == 200
                            await response.content.readuntil(b": connected")
                        break
                    await asyncio.sleep(0.05)
                started = asyncio.get_running_loop().time()
                while True:
                    async with session.get(url) as again:
                        if again.status == 200:
                            break
                    waited = asyncio.get_running_loop().time() - started
                    assert waited < 3, "the slot was not given back"
                    await asyncio.sleep(0.1)
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server
