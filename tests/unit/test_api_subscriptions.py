"""The subscription routes over in-memory stores: the lifecycle, the one-time webhook secret,
who may do what (subscriber yes, operator 403, another tenant 404), SSRF refusals as problem
documents, the OpenAPI document, and 503 where the API runs without subscriptions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityhub.streams.api.app import build_api
from cityhub.streams.api.models import SubscriptionCreated, SubscriptionList, SubscriptionOut

from .test_api_support import Api, running_api

V1 = "/api/v1"
SUBS_A = f"{V1}/tenants/acme/subscriptions"


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running_api() as running:
        yield running


def webhook(sub_id: str = "hook", url: str = "https://hooks.example.com/in") -> dict[str, Any]:
    return {
        "id": sub_id,
        "name": "Hook",
        "filter": {"quantities": ["temperature"]},
        "delivery": {"kind": "webhook", "url": url},
    }


async def test_lifecycle_and_secret_shown_once(api: Api) -> None:
    status, doc, headers = await api.call("POST", SUBS_A, "sub_a", json=webhook())
    assert status == 201, doc
    created = SubscriptionCreated.model_validate(doc)
    assert headers["Location"] == f"{SUBS_A}/hook"
    assert headers["Cache-Control"] == "no-store"
    secret = created.secret
    assert secret is not None
    assert secret.startswith("whsec_")
    assert created.state == "active"
    for method, path in (
        ("GET", f"{SUBS_A}/hook"),
        ("GET", SUBS_A),
        ("POST", f"{SUBS_A}/hook/pause"),
        ("POST", f"{SUBS_A}/hook/resume"),
    ):
        status, doc, _ = await api.call(method, path, "sub_a")
        assert status == 200, (method, path, doc)
        assert secret not in str(doc)
        assert "secret" not in (doc.get("items", [doc])[0])
    status, doc, _ = await api.call("POST", f"{SUBS_A}/hook/pause", "sub_a")
    assert SubscriptionOut.model_validate(doc).state == "paused"
    status, doc, _ = await api.call("GET", SUBS_A, "sub_a")
    listed = SubscriptionList.model_validate(doc)
    assert [(s.id, s.state) for s in listed.items] == [("hook", "paused")]
    assert doc["items"][0]["delivery"]["has_secret"] is True
    status, _, _ = await api.call("DELETE", f"{SUBS_A}/hook", "sub_a")
    assert status == 204
    status, doc, _ = await api.call("GET", f"{SUBS_A}/hook", "sub_a")
    assert status == 404
    assert doc["type"].endswith("/not-found")


async def test_kafka_subscription_has_no_secret(api: Api) -> None:
    body = {"id": "k1", "name": "K", "delivery": {"kind": "kafka"}}
    status, doc, headers = await api.call("POST", SUBS_A, "admin", json=body)
    assert status == 201, doc
    assert "secret" not in doc
    assert headers["Cache-Control"] == "no-store"  # as on every response of the API
    status, doc, _ = await api.call("POST", SUBS_A, "admin", json=body)
    assert status == 409
    assert doc["type"].endswith("/conflict")


async def test_operator_is_forbidden_and_other_tenants_are_not_found(api: Api) -> None:
    status, doc, _ = await api.call("POST", SUBS_A, "op_a", json=webhook())
    assert status == 403
    assert doc["type"].endswith("/forbidden")
    status, _, _ = await api.call("GET", SUBS_A, "op_a")
    assert status == 403
    status, _, _ = await api.call("POST", SUBS_A, "sub_a", json=webhook())
    assert status == 201
    for method, path in (
        ("GET", SUBS_A),
        ("GET", f"{SUBS_A}/hook"),
        ("POST", f"{SUBS_A}/hook/pause"),
        ("POST", f"{SUBS_A}/hook/resume"),
        ("DELETE", f"{SUBS_A}/hook"),
    ):
        status, doc, _ = await api.call(method, path, "sub_b")
        assert status == 404, (method, path)
        assert "hook" not in doc["detail"]
    status, doc, _ = await api.call("POST", SUBS_A, "sub_b", json=webhook("other"))
    assert status == 404
    status, doc, _ = await api.call("GET", f"{V1}/tenants/beta/subscriptions", "sub_b")
    assert status == 200
    assert doc["items"] == []
    status, _, _ = await api.call("GET", SUBS_A, None)
    assert status == 401


@pytest.mark.parametrize("url", ["http://10.0.0.5/", "http://127.0.0.1/"])
async def test_private_webhook_urls_are_refused_with_400(api: Api, url: str) -> None:
    status, doc, _ = await api.call("POST", SUBS_A, "sub_a", json=webhook(url=url))
    assert status == 400
    assert doc["type"].endswith("/invalid-input")
    assert doc["errors"][0]["field"] == "delivery.url"
    assert doc["errors"][0]["message"]
    status, doc, _ = await api.call("GET", SUBS_A, "sub_a")
    assert doc["items"] == []


async def test_invalid_bodies_are_400(api: Api) -> None:
    status, doc, _ = await api.call(
        "POST", SUBS_A, "sub_a", json={"id": "Bad.Id", "name": "x", "delivery": {"kind": "sse"}}
    )
    assert status == 400
    assert any(e["field"] == "id" for e in doc["errors"])
    status, doc, _ = await api.call(
        "POST", SUBS_A, "sub_a", json={**webhook(), "delivery": {"kind": "webhook", "url": "x"}}
    )
    assert status == 400


async def test_routes_are_documented(api: Api) -> None:
    status, doc, _ = await api.call("GET", f"{V1}/openapi.json", None)
    assert status == 200
    paths = doc["paths"]
    assert set(paths[SUBS_A.replace("acme", "{tenant}").removeprefix(V1)]) >= {"get", "post"}
    one = "/tenants/{tenant}/subscriptions/{id}"
    assert set(paths[one]) >= {"get", "delete"}
    assert "post" in paths[f"{one}/pause"]
    assert "post" in paths[f"{one}/resume"]
    assert "SubscriptionCreated" in doc["components"]["schemas"]


async def test_without_subscriptions_the_routes_answer_503(api: Api) -> None:
    app = build_api(api.registry)
    async with (
        TestClient(TestServer(app)) as client,
        client.get(SUBS_A, headers=api.auth("sub_a")) as response,
    ):
        assert response.status == 503
        assert response.content_type == "application/problem+json"
