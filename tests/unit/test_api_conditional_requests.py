"""The OpenAPI document's conditional requests against the server: every operation the document
says may answer 304 (the open data and its catalogue) is called for real (aiohttp's test server,
in-memory stores). Its 200 carries every header the document names for it, in each media type
the document lists and no other (a daily file as CSV and as Parquet, the catalogue as JSON-LD,
Turtle and JSON); sent back in ``If-None-Match``, its ETag gets the documented 304, with the
documented headers and no body; a tag that is not the current one gets the 200 again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.open_data import OpenDataSettings, OpenWindow
from cityhub.schemas.settings import QuotaSettings, Settings
from cityhub.streams.api.app import build_api
from cityhub.streams.api.openapi import OPENAPI_PATH
from cityhub.streams.api.route_model import PREFIX
from cityhub.streams.compacted import InMemoryCompactedStore
from cityhub.streams.opendata.distributions import OpenDataDistributions, window_key
from cityhub.streams.opendata.view import OpenDataView
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore

from .test_open_data_api import hour, window


@dataclass
class Served:
    client: TestClient[Any, Any]
    document: dict[str, Any]
    day: str
    """A day with a file (complete: four days ago)."""


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    settings = Settings(
        open_data=OpenDataSettings(files_dir=tmp_path / "files", recent_days=2),
        quotas=QuotaSettings(api_requests_per_second=1000, api_burst=1000),
    )
    view = OpenDataView(["air-quality", "noise"], recent_days=2)
    store: InMemoryCompactedStore[OpenDataView, OpenWindow] = InMemoryCompactedStore(
        view, window_key
    )
    data = OpenDataDistributions(settings, store=store, debounce_seconds=0.01)
    await data.start()
    registry_store = InMemoryRegistryStore()
    await registry_store.start()
    old = hour(24 * 4)
    await store.put_many([window(old), window(hour(1)), window(hour(1), area="west")])
    for _ in range(200):
        if len(data.file_days("air-quality")) == 2:
            break
        await asyncio.sleep(0.02)  # the file writer's debounce
    app = build_api(Registry(registry_store), quotas=settings.quotas, open_data=data)
    try:
        async with TestClient(TestServer(app)) as client:
            async with client.get(OPENAPI_PATH) as response:
                document = await response.json()
            yield Served(client, document, old.date().isoformat())
    finally:
        await data.stop()
        await registry_store.stop()


def _calls(day: str) -> list[tuple[str, str, dict[str, str]]]:
    """(documented path, path called, request headers): each cacheable operation, in each of
    its representations."""
    files = "/open/datasets/{dataset}/files/{file}"
    return [
        ("/open/datasets", "/open/datasets", {}),
        ("/open/datasets/{dataset}", "/open/datasets/air-quality", {}),
        ("/open/datasets/{dataset}/windows", "/open/datasets/air-quality/windows?limit=1", {}),
        ("/open/datasets/{dataset}/files", "/open/datasets/air-quality/files", {}),
        (files, f"/open/datasets/air-quality/files/{day}.csv", {}),
        (files, f"/open/datasets/air-quality/files/{day}.parquet", {}),
        ("/open/catalog", "/open/catalog", {}),
        ("/open/catalog", "/open/catalog", {"Accept": "text/turtle"}),
        ("/open/catalog", "/open/catalog", {"Accept": "application/json"}),
    ]


def _media_type(headers: Any) -> str:
    return str(headers["Content-Type"]).split(";", 1)[0].strip()


async def test_every_documented_304_is_what_the_server_answers(served: Served) -> None:
    paths = served.document["paths"]
    conditional_operations = {
        (path, method)
        for path, item in paths.items()
        for method, operation in item.items()
        if "304" in operation["responses"]
    }
    cacheable = {path for path, _ in conditional_operations}
    assert {method for _, method in conditional_operations} == {"get"}
    calls = _calls(served.day)
    assert cacheable == {documented for documented, _, _ in calls}, "a cacheable route untested"
    media_served: dict[str, set[str]] = {}
    for documented, path, asked in calls:
        operation = paths[documented]["get"]
        assert any(
            p["name"] == "If-None-Match" and p["in"] == "header" for p in operation["parameters"]
        ), documented
        ok, not_modified = operation["responses"]["200"], operation["responses"]["304"]
        async with served.client.get(PREFIX + path, headers=asked) as response:
            body = await response.read()
            assert response.status == 200, (path, body[:200])
            headers = response.headers
        media_served.setdefault(documented, set()).add(_media_type(headers))
        missing = [name for name in ok["headers"] if name not in headers]
        assert missing == [], (path, asked)
        tag = headers["ETag"]
        assert tag.startswith('"'), tag  # strong: no W/
        assert tag.endswith('"'), tag
        assert headers["Cache-Control"].startswith("public, max-age=")
        conditional = {**asked, "If-None-Match": tag}
        async with served.client.get(PREFIX + path, headers=conditional) as again:
            assert again.status == 304, (path, asked)
            assert await again.read() == b""
            missing = [name for name in not_modified["headers"] if name not in again.headers]
            assert missing == [], (path, asked)
            assert again.headers["ETag"] == tag
            assert again.headers["Cache-Control"] == headers["Cache-Control"]
        # Another representation's tag, or a stale one: the answer again.
        stale = {**asked, "If-None-Match": '"0123456789abcdef0123456789abcdef"'}
        async with served.client.get(PREFIX + path, headers=stale) as other:
            assert other.status == 200
            assert await other.read() == body
    for documented in cacheable:
        content = paths[documented]["get"]["responses"]["200"]["content"]
        assert media_served[documented] == set(content), documented
    files = paths["/open/datasets/{dataset}/files/{file}"]["get"]["responses"]["200"]["content"]
    assert set(files) == {"text/csv", "application/vnd.apache.parquet"}


async def test_the_live_stream_sends_the_headers_it_documents(served: Served) -> None:
    operation = served.document["paths"]["/open/stream"]["get"]
    documented = operation["responses"]["200"]["headers"]
    assert "Link" in documented
    async with served.client.get(PREFIX + "/open/stream?dataset=noise") as response:
        assert response.status == 200
        assert _media_type(response.headers) in operation["responses"]["200"]["content"]
        assert [name for name in documented if name not in response.headers] == []
        assert 'rel="license"' in response.headers["Link"]


async def test_head_on_each_cacheable_operation_answers_as_get_without_a_body(
    served: Served,
) -> None:
    """Link checkers and catalogue harvesters ask with HEAD before they download: the same
    status and headers (length, type, ETag, Link) as GET, no body; a stale tag's 304 too."""
    for _documented, path, asked in _calls(served.day):
        async with served.client.get(PREFIX + path, headers=asked) as got:
            body = await got.read()
            expected = got.headers
        async with served.client.head(PREFIX + path, headers=asked) as head:
            assert head.status == 200, path
            assert await head.read() == b""
            for name in ("Content-Type", "ETag", "Cache-Control", "Link"):
                assert head.headers.get(name) == expected.get(name), (path, name)
            assert head.headers["Content-Length"] == str(len(body)), path
        conditional = {**asked, "If-None-Match": expected["ETag"]}
        async with served.client.head(PREFIX + path, headers=conditional) as again:
            assert again.status == 304, path
    async with served.client.head(PREFIX + "/open/datasets/nothing-here") as missing:
        assert missing.status == 404
    async with served.client.head(PREFIX + "/open/stream") as stream:
        assert stream.status == 405  # a live stream has no length to announce
