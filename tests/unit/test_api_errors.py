"""How the operator API fails: every error an RFC 9457 problem a person can act on, with the
right status; authentication; body caps and content types; a bug answered as a 500 that hides
its internals and is logged with the request id."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityhub.streams.api.app import build_api
from cityhub.streams.api.models import Problem
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.service_errors import Unavailable

from .test_api_support import APP_KEY, Api, device, running_api

V1 = "/api/v1"
A = f"{V1}/tenants/acme"


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running_api(max_body_bytes=2048, max_import_bytes=8192) as running:
        yield running


def assert_problem(doc: Any, headers: Mapping[str, str], status: int, path: str) -> Problem:
    assert headers["Content-Type"].startswith("application/problem+json")
    problem = Problem.model_validate(doc)
    assert problem.status == status
    assert problem.type.startswith("https://cityhub.example/problems/")
    assert problem.title
    assert problem.detail
    assert problem.instance == path.split("?")[0]
    assert headers.get("X-Request-Id")
    return problem


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer chk_nope_nope"},
        {"X-API-Key": "not-a-key"},
        {"Authorization": "Bearer " + "x" * 5000},
    ],
    ids=["none", "basic", "empty", "unknown", "x-api-key-unknown", "huge"],
)
async def test_without_a_valid_key_401_with_www_authenticate(
    api: Api, headers: dict[str, str]
) -> None:
    status, doc, response_headers = await api.call("GET", f"{A}/devices", None, headers=headers)
    assert status == 401
    assert response_headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(doc, response_headers, 401, f"{A}/devices")


async def test_x_api_key_is_accepted(api: Api) -> None:
    status, _, _ = await api.call(
        "GET", f"{A}/devices", None, headers={"X-API-Key": api.keys["op_a"]}
    )
    assert status == 200


async def test_a_request_presenting_two_keys_is_400_whichever_they_are(api: Api) -> None:
    """Which of two keys counts would be a guess (a proxy may guess otherwise): neither does."""
    a, b = api.keys["op_a"], api.keys["op_b"]
    for headers in (
        [("Authorization", f"Bearer {b}"), ("X-API-Key", a)],
        [("Authorization", f"Bearer {a}"), ("Authorization", f"Bearer {b}")],
        [("X-API-Key", a), ("X-API-Key", a)],
    ):
        async with api.client.get(f"{A}/devices", headers=headers) as response:
            doc = await response.json(content_type=None)
            assert response.status == 400, doc
            assert "once" in doc["detail"]
            assert a not in str(doc)
            assert b not in str(doc)


async def test_validation_errors_name_each_field_and_hide_values(api: Api) -> None:
    body = device(
        "Bad Id!",
        dev_eui="XYZ",
        location={"latitude": 91, "longitude": 0},
        app_key=APP_KEY[:-1] + "Z",
        colour="red",
    )
    _, doc, headers = await api.call("POST", f"{A}/devices", json=body)
    problem = assert_problem(doc, headers, 400, f"{A}/devices")
    assert problem.type.endswith("/invalid-input")
    fields = {e.field: e.message for e in problem.errors or []}
    assert set(fields) >= {"id", "dev_eui", "location.latitude", "app_key", "colour"}
    assert "32 hexadecimal" in fields["app_key"]
    assert APP_KEY[:-1].lower() not in str(doc).lower()
    assert "pydantic" not in str(doc)


async def test_missing_fields_and_non_object_bodies_are_400(api: Api) -> None:
    _, doc, headers = await api.call("POST", f"{A}/devices", json={"id": "x"})
    problem = assert_problem(doc, headers, 400, f"{A}/devices")
    assert {e.field for e in problem.errors or []} >= {"name", "type"}
    _, doc, headers = await api.call("POST", f"{A}/devices", json=[1, 2])
    assert_problem(doc, headers, 400, f"{A}/devices")


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe{}", b'{"id": "x",}'])
async def test_malformed_json_is_400(api: Api, body: bytes) -> None:
    _, doc, headers = await api.call(
        "POST", f"{A}/devices", data=body, headers={"Content-Type": "application/json"}
    )
    problem = assert_problem(doc, headers, 400, f"{A}/devices")
    assert "JSON" in (problem.detail or "")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_wrong_content_type_is_415(api: Api, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    _, doc, response_headers = await api.call(
        "POST", f"{A}/devices", data=b'{"id": "x"}', headers=headers
    )
    problem = assert_problem(doc, response_headers, 415, f"{A}/devices")
    assert "application/json" in (problem.detail or "")


async def test_import_takes_csv_and_json_only(api: Api) -> None:
    _, doc, headers = await api.call(
        "POST", f"{A}/devices/_import", data=b"<xml/>", headers={"Content-Type": "application/xml"}
    )
    problem = assert_problem(doc, headers, 415, f"{A}/devices/_import")
    assert "text/csv" in (problem.detail or "")


async def test_json_body_over_the_cap_is_413(api: Api) -> None:
    body = device("big", name="n" * 3000)
    _, doc, headers = await api.call("POST", f"{A}/devices", json=body)
    problem = assert_problem(doc, headers, 413, f"{A}/devices")
    assert "2048" in (problem.detail or "")


async def test_chunked_body_over_the_cap_is_413(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 512

    _, doc, headers = await api.call(
        "POST", f"{A}/devices", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_problem(doc, headers, 413, f"{A}/devices")


async def test_import_over_its_cap_is_413_and_under_it_passes_the_json_cap(api: Api) -> None:
    rows = "".join(f"d-{i:05d};th\n" for i in range(300))  # ~3 KB: over the JSON cap only
    status, doc, _ = await api.call(
        "POST",
        f"{A}/devices/_import",
        data=f"id;type\n{rows}".encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert status == 200, doc
    assert doc["created"] == 300
    status, doc, headers = await api.call(
        "POST",
        f"{A}/devices/_import",
        data=b"id;type\n" + b"x;th\n" * 2000,
        headers={"Content-Type": "text/csv"},
    )
    assert_problem(doc, headers, 413, f"{A}/devices/_import")


async def test_bad_query_parameters_are_400(api: Api) -> None:
    for params, field in (
        ({"limit": "abc"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "\u0661\u0660"}, "limit"),  # Arabic-Indic digits, which int() takes
        ({"limit": "1_0"}, "limit"),
        ({"limit": "9" * 5000}, "limit"),
        ({"active": "maybe"}, "active"),
    ):
        _, doc, headers = await api.call("GET", f"{A}/devices", params=params)
        problem = assert_problem(doc, headers, 400, f"{A}/devices")
        assert [e.field for e in problem.errors or []] == [field]


async def test_unknown_route_is_a_404_problem(api: Api) -> None:
    for path in (f"{V1}/nowhere", "/nowhere", f"{A}/devices/x/y"):
        _, doc, headers = await api.call("GET", path)
        problem = assert_problem(doc, headers, 404, path)
        assert "openapi.json" in (problem.detail or "")


async def test_wrong_method_is_a_405_problem_with_allow(api: Api) -> None:
    _, doc, headers = await api.call("PATCH", f"{A}/devices/x", json={})
    problem = assert_problem(doc, headers, 405, f"{A}/devices/x")
    assert set(headers["Allow"].split(", ")) == {"GET", "PUT", "DELETE"}
    assert "PUT" in (problem.detail or "")


async def test_request_id_is_echoed_when_sane(api: Api) -> None:
    _, _, headers = await api.call("GET", f"{A}/devices", headers={"X-Request-Id": "abc-123"})
    assert headers["X-Request-Id"] == "abc-123"
    _, _, headers = await api.call("GET", f"{A}/devices", headers={"X-Request-Id": "a b\u00e9"})
    assert headers["X-Request-Id"] != "a b\u00e9"


class _Broken(Registry):
    """A registry whose listing fails with a bug, and whose writes time out."""

    def list_devices(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("internal state: password=hunter2 at 0xdeadbeef")

    async def create_device(self, *args: Any, **kwargs: Any) -> Any:
        raise Unavailable("the registry topic did not confirm the write in 10 s; try again")


async def test_a_bug_is_a_500_without_internals_logged_with_the_request_id(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    broken = _Broken(api.store)
    app = build_api(broken)
    async with TestClient(TestServer(app)) as client:
        with caplog.at_level(logging.ERROR, logger="cityhub.api"):
            response = await client.get(f"{A}/devices", headers=api.auth("op_a"))
            doc = await response.json(content_type=None)
        assert response.status == 500
        assert response.content_type == "application/problem+json"
        assert "hunter2" not in str(doc)
        assert "RuntimeError" not in str(doc)
        request_id = doc["request_id"]
        assert response.headers["X-Request-Id"] == request_id
        logged = [r for r in caplog.records if request_id in r.getMessage()]
        assert logged
        assert api.keys["op_a"] not in logged[0].getMessage()

        response = await client.post(f"{A}/devices", json=device("u"), headers=api.auth("op_a"))
        doc = await response.json(content_type=None)
        assert response.status == 503
        assert response.headers["Retry-After"]
        assert "try again" in doc["detail"]


async def test_principal_system_is_not_reachable_over_http(api: Api) -> None:
    assert Principal.system().key_id == "system"
    status, _, _ = await api.call("GET", f"{V1}/tenants", None, headers={"X-API-Key": "system"})
    assert status == 401
