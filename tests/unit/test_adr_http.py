"""The NL API Design Rules at run time, over HTTP (aiohttp's test server, an in-memory registry):
``API-Version`` and the security headers on every response, errors and streams included; 404
on a trailing slash; CORS with an allow-list and ``*`` for the OpenAPI document, which needs no
key; problem documents with status, title and detail on every error path; invalid input a 400
listing every fault."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from cityhub.schemas.aggregate import MAX_WINDOW_SECONDS
from cityhub.schemas.settings import HttpSettings, QuotaSettings
from cityhub.streams.api.app import build_api
from cityhub.streams.api.openapi import OPENAPI_PATH
from cityhub.streams.api.route_model import API_VERSION
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore

from .test_api_support import Api, device, seed

V1 = "/api/v1"
A = f"{V1}/tenants/acme"
DASHBOARD = "https://dashboard.city.example"
SECURITY = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Strict-Transport-Security": "max-age=31536000",
}


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"data: 1\n\n")
    return response


async def _root(request: web.Request) -> web.Response:
    return web.json_response({"root": True})


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    store = InMemoryRegistryStore()
    await store.start()
    registry = Registry(store)
    keys = await seed(registry)
    app = build_api(
        registry,
        max_body_bytes=2048,
        quotas=QuotaSettings(api_requests_per_second=1000, api_burst=1000),
        http=HttpSettings(cors_allowed_origins=(DASHBOARD,)),
    )
    # Stand-ins for what the app may carry beyond cityhub's routes: a bug, a stream, and a
    # standard's service root registered with its slash (as a SensorThings service may be).
    app.router.add_get(f"{V1}/test-boom", _boom)
    app.router.add_get("/test-stream", _stream)
    app.router.add_get("/std/v1/", _root)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, registry, store, keys, None)  # type: ignore[arg-type]
    await store.stop()


def assert_rules(headers: CIMultiDict[str]) -> None:
    assert headers["API-Version"] == API_VERSION
    for name, value in SECURITY.items():
        assert headers[name] == value, name
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def assert_problem(status: int, doc: Any, headers: CIMultiDict[str], expected: int) -> None:
    assert status == expected, doc
    assert headers["Content-Type"].startswith("application/problem+json")
    assert doc["status"] == expected
    assert doc["title"]
    assert doc["detail"]
    assert_rules(headers)


async def test_every_kind_of_response_carries_the_version_and_security_headers(api: Api) -> None:
    status, _, headers = await api.call("GET", f"{A}/devices")
    assert status == 200
    assert_rules(headers)
    assert headers["Content-Type"] == "application/json"  # JSON names no charset (RFC 8259)
    status, _, headers = await api.call("POST", f"{A}/devices", json=device("d-1"))
    assert status == 201
    assert_rules(headers)
    status, _, headers = await api.call("DELETE", f"{A}/devices/d-1")
    assert status == 204
    assert_rules(headers)
    status, _, headers = await api.call("GET", f"{V1}/processing-register", None)
    assert status == 503  # no register in this app: still a problem with every header
    async with api.client.get("/test-stream") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert_rules(CIMultiDict(response.headers))
        assert await response.read() == b"data: 1\n\n"


async def test_every_error_path_is_a_problem_document_with_the_headers(api: Api) -> None:
    status, doc, headers = await api.call("GET", f"{A}/devices", None)
    assert_problem(status, doc, headers, 401)
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, doc, headers = await api.call("GET", f"{V1}/keys", "sub_a")
    assert_problem(status, doc, headers, 403)
    status, doc, headers = await api.call("GET", f"{V1}/nowhere")
    assert_problem(status, doc, headers, 404)
    status, doc, headers = await api.call("GET", "/metrics")  # not on the API's port
    assert_problem(status, doc, headers, 404)
    status, doc, headers = await api.call("PATCH", f"{A}/devices")
    assert_problem(status, doc, headers, 405)
    assert set(headers["Allow"].split(", ")) == {"GET", "POST"}
    big = device("d-2", name="x" * 4096)
    status, doc, headers = await api.call("POST", f"{A}/devices", json=big)
    assert_problem(status, doc, headers, 413)
    status, doc, headers = await api.call(
        "POST", f"{A}/devices", data=b"[]", headers={"Content-Type": "text/plain"}
    )
    assert_problem(status, doc, headers, 415)
    status, doc, headers = await api.call("GET", f"{V1}/test-boom")
    assert_problem(status, doc, headers, 500)
    assert "a bug" not in str(doc)


async def test_the_rate_limit_s_refusal_is_a_problem_with_the_headers() -> None:
    store = InMemoryRegistryStore()
    await store.start()
    registry = Registry(store)
    keys = await seed(registry)
    app = build_api(registry, quotas=QuotaSettings(api_requests_per_second=0.01, api_burst=1))
    async with TestClient(TestServer(app)) as client:
        api = Api(client, registry, store, keys, None)  # type: ignore[arg-type]
        assert (await api.call("GET", f"{A}/devices"))[0] == 200
        status, doc, headers = await api.call("GET", f"{A}/devices")
        assert_problem(status, doc, headers, 429)
        assert int(headers["Retry-After"]) >= 1
    await store.stop()


@pytest.mark.parametrize(
    "path",
    [f"{V1}/tenants/", f"{A}/devices/", f"{V1}/openapi.json/", f"{V1}/", f"{V1}/nowhere/"],
)
async def test_a_trailing_slash_is_404_never_a_redirect(api: Api, path: str) -> None:
    status, doc, headers = await api.call("GET", path, allow_redirects=False)
    assert_problem(status, doc, headers, 404)
    assert "Location" not in headers


async def test_a_route_registered_with_its_slash_and_a_service_root_are_served(api: Api) -> None:
    status, doc, headers = await api.call("GET", "/std/v1/", None)
    assert (status, doc) == (200, {"root": True})
    assert_rules(headers)
    # The SensorThings service's root with its slash reaches the service (which asks for a
    # key); below it, the slash is the rule's 404. Its answers carry the headers too.
    status, _, headers = await api.call("GET", "/sta/v1.1/", None)
    assert status == 401
    assert_rules(headers)
    for path in ("/sta/v1.1/Things/", "/ngsi-ld/v1/entities/"):
        status, doc, headers = await api.call("GET", path, None)
        assert_problem(status, doc, headers, 404)
        assert "never end in a slash" in doc["detail"]


async def test_the_openapi_document_needs_no_key_and_every_origin_may_read_it(api: Api) -> None:
    status, doc, headers = await api.call(
        "GET", OPENAPI_PATH, None, headers={"Origin": "https://anyone.example"}
    )
    assert status == 200
    assert doc["info"]["version"] == headers["API-Version"] == API_VERSION
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert_rules(headers)


async def test_the_ngsi_ld_context_is_open_to_every_origin(api: Api) -> None:
    async with api.client.get(
        "/ngsi-ld/v1/context.jsonld", headers={"Origin": "https://anyone.example"}
    ) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert_rules(CIMultiDict(response.headers))


async def test_cors_follows_the_allow_list(api: Api) -> None:
    status, _, headers = await api.call("GET", f"{A}/devices", headers={"Origin": DASHBOARD})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert "Origin" in headers["Vary"]
    assert "API-Version" in headers["Access-Control-Expose-Headers"]
    status, _, headers = await api.call(
        "GET", f"{A}/devices", headers={"Origin": "https://evil.example"}
    )
    assert status == 200  # a browser will not hand it to the page: no CORS header
    assert not any(name.startswith("Access-Control-") for name in headers)


async def test_a_preflight_is_answered_before_any_key(api: Api) -> None:
    preflight = {"Origin": DASHBOARD, "Access-Control-Request-Method": "POST"}
    status, doc, headers = await api.call("OPTIONS", f"{A}/devices", None, headers=preflight)
    assert (status, doc) == (204, None)
    assert headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert set(headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "POST"}
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    # A page revalidating with its own If-None-Match (the open data answers 304) may send it.
    assert "If-None-Match" in headers["Access-Control-Allow-Headers"]
    assert_rules(headers)
    other = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    status, doc, headers = await api.call("OPTIONS", f"{A}/devices", None, headers=other)
    assert_problem(status, doc, headers, 403)
    assert not any(name.startswith("Access-Control-") for name in headers)
    status, doc, headers = await api.call("OPTIONS", f"{V1}/nowhere", None, headers=preflight)
    assert_problem(status, doc, headers, 404)
    # Without the preflight's headers an OPTIONS is an ordinary request this API does not take.
    status, doc, headers = await api.call("OPTIONS", f"{A}/devices")
    assert_problem(status, doc, headers, 405)


async def test_invalid_input_is_400_listing_every_fault(api: Api) -> None:
    query = {
        "device_id": "a-1",
        "from": "yesterday",
        "windowSize": "0",
        "quantity": "temperature",
    }
    status, doc, headers = await api.call("GET", f"{A}/aggregates", params=query)
    assert_problem(status, doc, headers, 400)
    assert [(e["field"], e["message"][:26]) for e in doc["errors"]] == [
        ("device_id", "unknown query parameter; i"),
        ("from", "not a time this API takes:"),
        ("to", "required; an RFC 3339 time"),
        ("windowSize", "expected an integer from 1"),
    ]
    assert doc["errors"][3]["message"].endswith(f" to {MAX_WINDOW_SECONDS}")
    assert "it is called deviceId" in doc["errors"][0]["message"]
    # A body's faults come together too.
    bad = {"id": "Not An Id", "name": "", "type": "th", "tags": "x"}
    status, doc, headers = await api.call("POST", f"{A}/devices", json=bad)
    assert_problem(status, doc, headers, 400)
    assert len(doc["errors"]) >= 3, doc
