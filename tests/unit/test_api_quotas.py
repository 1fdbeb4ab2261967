"""Quotas through the API app over in-memory stores (no broker): subscriptions per tenant,
concurrent creates that cannot overshoot, live streams per subscription and per tenant, the
request rate per key and per address, import bytes and rows. Each from both sides: one
tenant's or key's use never counts against another's. Every refusal is the same problem
document (type quota-exceeded, the quota, its value, the setting) and is counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from cityhub.connectors.sinks import validate_spec
from cityhub.schemas.registry import Role
from cityhub.schemas.settings import QuotaSettings, Settings
from cityhub.schemas.subscription import Subscription
from cityhub.streams.api.app import build_api
from cityhub.streams.api.openapi import OPENAPI_PATH, build_openapi
from cityhub.streams.api.route_model import PREFIX
from cityhub.streams.api.throttle import client_network, presented_key_id
from cityhub.streams.delivery.guarded_stream import StreamGuard
from cityhub.streams.delivery.sse import LiveStreams
from cityhub.streams.quotas import QUOTA_PROBLEM_TYPE, QuotaExceeded
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore

from .test_api_support import Api, public_resolver, seed

V1 = "/api/v1"
SUBS_A = f"{V1}/tenants/acme/subscriptions"
SUBS_B = f"{V1}/tenants/beta/subscriptions"
# Rate tests use a bucket that refills once every 100 s: nothing comes back during a test.
SLOW = 0.01
GENEROUS: dict[str, Any] = {"api_requests_per_second": 1000.0, "api_burst": 1000}


class HeldStreams(LiveStreams):
    """Live streams that hold their connection open until ``release`` is set, without Kafka:
    the quota bookkeeping is LiveStreams' own, only the serving is replaced."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.release = asyncio.Event()

    async def _serve(
        self,
        request: web.Request,
        record: Subscription,
        last_event_id: str | None,
        from_time: datetime | None,
        guard: StreamGuard | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b": connected\n\n")
        await self.release.wait()
        return response


@asynccontextmanager
async def quota_api(
    *, max_import_bytes: int | None = None, **quotas: Any
) -> AsyncIterator[tuple[Api, HeldStreams]]:
    """The API over a seeded in-memory registry (tenants acme and beta, keys admin, op_a, op_b,
    sub_a, sub_b) with these quotas, and live streams that need no Kafka."""
    settings = QuotaSettings(**{**GENEROUS, **quotas})
    store = InMemoryRegistryStore()
    await store.start()
    registry = Registry(store)
    keys = await seed(registry)
    subscriptions = Subscriptions(
        InMemorySubscriptionStore(),
        registry.view,
        resolver=public_resolver,
        subscriptions_per_tenant=settings.subscriptions_per_tenant,
    )
    live = HeldStreams(Settings(quotas=settings))
    app = build_api(
        registry,
        subscriptions=subscriptions,
        live=live,
        quotas=settings,
        max_import_bytes=max_import_bytes,
    )

    async def ops(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    # Stand-ins for the ops routes: the middleware must let these paths through whatever
    # serves them.
    app.router.add_get("/metrics", ops)
    app.router.add_get("/healthz", ops)
    try:
        async with TestClient(TestServer(app)) as client:
            yield Api(client, registry, store, keys, subscriptions), live
    finally:
        live.release.set()
        await store.stop()


def throttled(reason: str, tenant: str = "") -> float:
    value = REGISTRY.get_sample_value(
        "cityhub_api_throttled_total", {"reason": reason, "tenant": tenant}
    )
    return value or 0.0


def assert_quota_problem(doc: Any, quota: str, limit: float) -> None:
    assert doc["type"] == QUOTA_PROBLEM_TYPE
    assert doc["title"] == "Quota exceeded"
    assert doc["quota"] == quota
    assert doc["limit"] == limit
    setting = f"CITYHUB_QUOTAS__{quota.upper()}"
    assert doc["setting"] == setting
    assert setting in doc["detail"]


def kafka_sub(sub_id: str) -> dict[str, Any]:
    return {"id": sub_id, "name": sub_id, "delivery": {"kind": "kafka"}}


# --- subscriptions per tenant -----------------------------------------------------------------


async def test_a_tenants_subscription_past_its_quota_is_refused_and_others_are_not() -> None:
    async with quota_api(subscriptions_per_tenant=3) as (api, _):
        before = throttled("subscriptions_per_tenant", "acme")
        for i in range(3):
            status, doc, _ = await api.call("POST", SUBS_A, "sub_a", json=kafka_sub(f"s{i}"))
            assert status == 201, doc
        status, doc, headers = await api.call("POST", SUBS_A, "sub_a", json=kafka_sub("s3"))
        assert status == 409
        assert headers["Content-Type"].startswith("application/problem+json")
        assert_quota_problem(doc, "subscriptions_per_tenant", 3)
        assert "acme" in doc["detail"]
        assert throttled("subscriptions_per_tenant", "acme") == before + 1
        # An admin key is held to the tenant's quota too: it is the tenant's, not the key's.
        status, _, _ = await api.call("POST", SUBS_A, "admin", json=kafka_sub("s4"))
        assert status == 409
        assert api.subscriptions.view.count() == 3
        # Another tenant's subscriptions are its own: beta still has all of its three.
        for i in range(3):
            status, doc, _ = await api.call("POST", SUBS_B, "sub_b", json=kafka_sub(f"b{i}"))
            assert status == 201, doc
        # Deleting one frees its slot.
        assert (await api.call("DELETE", f"{SUBS_A}/s0", "sub_a"))[0] == 204
        status, doc, _ = await api.call("POST", SUBS_A, "sub_a", json=kafka_sub("s5"))
        assert status == 201, doc


async def slow_resolver(host: str, port: int) -> Sequence[str]:
    await asyncio.sleep(0.01)  # every create waits here, so that concurrent creates interleave
    return await public_resolver(host, port)


async def test_concurrent_creates_in_one_process_cannot_overshoot() -> None:
    store = InMemoryRegistryStore()
    await store.start()
    registry = Registry(store)
    await seed(registry)
    service = Subscriptions(
        InMemorySubscriptionStore(),
        registry.view,
        resolver=slow_resolver,
        subscriptions_per_tenant=3,
    )
    who = Principal(key_id="k", tenant="acme", role=Role.SUBSCRIBER)

    async def create(i: int) -> object:
        spec = validate_spec(
            {
                "id": f"h{i}",
                "name": "Hook",
                "delivery": {"kind": "webhook", "url": "https://hooks.example.com/in"},
            }
        )
        try:
            return await service.create(who, "acme", spec)
        except QuotaExceeded as exc:
            return exc

    results = await asyncio.gather(*(create(i) for i in range(12)))
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(refused) == 9
    assert service.view.count() == 3
    assert all(r.quota == "subscriptions_per_tenant" and r.status == 409 for r in refused)
    await store.stop()


# --- live streams ------------------------------------------------------------------------------


async def open_stream(api: Api, path: str, who: str) -> tuple[int, Any, dict[str, str]]:
    """Open a live stream; a refusal is read whole, an accepted stream is left open (it closes
    when the test server stops)."""
    response = await api.client.get(path, headers=api.auth(who))
    if response.status == 200:
        assert await response.content.readline() == b": connected\n"
        return 200, None, dict(response.headers)
    doc = await response.json(content_type=None)
    response.release()
    return response.status, doc, dict(response.headers)


async def test_live_streams_past_the_subscriptions_or_tenants_quota_get_429() -> None:
    async with quota_api(live_streams_per_subscription=2, live_streams_per_tenant=3) as (
        api,
        live,
    ):
        for tenant, sub_id, who in (
            ("acme", "s1", "sub_a"),
            ("acme", "s2", "sub_a"),
            ("beta", "b1", "sub_b"),
        ):
            body = {"id": sub_id, "name": sub_id, "delivery": {"kind": "sse"}}
            path = f"{V1}/tenants/{tenant}/subscriptions"
            assert (await api.call("POST", path, who, json=body))[0] == 201
        s1, s2 = f"{SUBS_A}/s1/events", f"{SUBS_A}/s2/events"
        per_subscription = throttled("live_streams_per_subscription", "acme")
        per_tenant = throttled("live_streams_per_tenant", "acme")
        assert (await open_stream(api, s1, "sub_a"))[0] == 200
        assert (await open_stream(api, s1, "sub_a"))[0] == 200
        status, doc, headers = await open_stream(api, s1, "sub_a")
        assert status == 429
        assert int(headers["Retry-After"]) >= 1
        assert_quota_problem(doc, "live_streams_per_subscription", 2)
        assert (await open_stream(api, s2, "sub_a"))[0] == 200  # the tenant's third
        status, doc, headers = await open_stream(api, s2, "sub_a")
        assert status == 429
        assert int(headers["Retry-After"]) >= 1
        assert_quota_problem(doc, "live_streams_per_tenant", 3)
        assert live.open_streams_of_tenant("acme") == 3
        # Beta's streams are its own.
        assert (await open_stream(api, f"{SUBS_B}/b1/events", "sub_b"))[0] == 200
        assert throttled("live_streams_per_subscription", "acme") == per_subscription + 1
        assert throttled("live_streams_per_tenant", "acme") == per_tenant + 1
        # Closed streams give their slots back.
        live.release.set()
        for _ in range(100):
            if live.open_streams_of_tenant("acme") == 0:
                break
            await asyncio.sleep(0.01)
        assert live.open_streams_of_tenant("acme") == 0
        assert live.open_streams("acme", "s1") == 0
        live.release.clear()
        assert (await open_stream(api, s1, "sub_a"))[0] == 200


# --- request rate ------------------------------------------------------------------------------


async def test_a_key_past_its_rate_gets_429_and_other_keys_do_not() -> None:
    async with quota_api(api_requests_per_second=SLOW, api_burst=5) as (api, _):
        before = throttled("api_requests_per_key", "acme")
        for _ in range(5):
            assert (await api.call("GET", SUBS_A, "sub_a"))[0] == 200
        status, doc, headers = await api.call("GET", SUBS_A, "sub_a")
        assert status == 429
        retry_after = int(headers["Retry-After"])
        assert 1 <= retry_after <= 100
        assert_quota_problem(doc, "api_requests_per_second", 0.01)
        assert throttled("api_requests_per_key", "acme") == before + 1
        # Another key of the same tenant, and keys of another tenant, from the same address.
        for who, path in (("admin", SUBS_A), ("sub_b", SUBS_B), ("op_b", f"{V1}/tenants/beta")):
            status, _, _ = await api.call("GET", path + "/devices" * (who == "op_b"), who)
            assert status == 200, who
        # Requests without a key are counted by address, not against sub_a's key.
        status, _, _ = await api.call("GET", SUBS_A, None)
        assert status == 401


async def test_requests_without_a_usable_key_are_limited_by_address() -> None:
    async with quota_api(api_requests_per_second=SLOW, api_burst=4) as (api, _):
        revoked_secret = api.keys["op_b"]
        key_id = presented_key_id({"Authorization": f"Bearer {revoked_secret}"})
        assert key_id is not None
        await api.registry.revoke_key(Principal.system(), key_id)
        attempts: list[dict[str, str]] = [
            {},  # no key
            {"Authorization": "Bearer chk_0123456789abcdef_guessed"},  # an id nobody has
            {"X-API-Key": "not-even-a-key"},
            {"Authorization": f"Bearer {revoked_secret}"},  # revoked: no bucket of its own
        ]
        before = throttled("api_requests_per_address")
        for headers in attempts:
            status, _, _ = await api.call("GET", SUBS_A, None, headers=headers)
            assert status == 401, headers
        for headers in attempts:
            status, doc, response_headers = await api.call("GET", SUBS_A, None, headers=headers)
            assert status == 429, headers
            assert int(response_headers["Retry-After"]) >= 1
            assert doc["quota"] == "api_requests_per_second"
        assert throttled("api_requests_per_address") == before + len(attempts)
        # A valid key still works from the same address.
        assert (await api.call("GET", SUBS_A, "sub_a"))[0] == 200


async def test_probes_and_the_openapi_document_are_never_limited() -> None:
    async with quota_api(api_requests_per_second=SLOW, api_burst=1) as (api, _):
        assert (await api.call("GET", SUBS_A, None))[0] == 401
        assert (await api.call("GET", SUBS_A, None))[0] == 429
        for _ in range(5):
            for path in ("/metrics", "/healthz", f"{V1}/openapi.json"):
                async with api.client.get(path) as response:
                    assert response.status == 200, path


def test_every_operation_documents_the_rate_limit() -> None:
    doc = build_openapi(max_body_bytes=1024, max_import_bytes=4096)
    operations = [(m, p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]
    assert len(operations) > 20
    for method, path, operation in operations:
        too_many = operation["responses"].get("429")
        if PREFIX + path == OPENAPI_PATH:  # the document itself is never limited
            assert too_many is None
            continue
        assert too_many is not None, (method, path)
        assert "Retry-After" in too_many["headers"]


def test_the_bucket_key_is_read_from_the_secret_without_hashing() -> None:
    assert presented_key_id({"Authorization": "Bearer chk_ab12_secretpart"}) == "ab12"
    assert presented_key_id({"authorization": "bearer chk_ab12_x_y"}) is None  # dict: exact case
    assert presented_key_id({"X-API-Key": " chk_ab12_x_y "}) == "ab12"
    for secret in ("chk_ab12", "chk__x", "chk_ab12_", "key_ab12_x", "chk_" + "a" * 600 + "_x"):
        assert presented_key_id({"X-API-Key": secret}) is None, secret
    assert presented_key_id({"Authorization": "Basic chk_ab12_x"}) is None


@pytest.mark.parametrize(
    ("remote", "network"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # the same host's /64
        (None, "unknown"),
    ],
)
def test_client_addresses_are_counted_by_host(remote: str | None, network: str) -> None:
    assert client_network(remote) == network


# --- imports -----------------------------------------------------------------------------------


def csv_rows(count: int) -> bytes:
    lines = ["id;name;type", *(f"q-{i};Q {i};th" for i in range(count))]
    return ("\n".join(lines) + "\n").encode()


async def test_imports_past_their_rows_or_bytes_get_413_naming_the_limit() -> None:
    async with quota_api(import_max_rows=3, max_import_bytes=2048) as (api, _):
        path = f"{V1}/tenants/acme/devices/_import"
        csv = {"Content-Type": "text/csv"}
        status, doc, _ = await api.call("POST", path, "op_a", data=csv_rows(3), headers=csv)
        assert status == 200, doc
        assert doc["created"] == 3
        rows = throttled("import_max_rows", "acme")
        status, doc, _ = await api.call("POST", path, "op_a", data=csv_rows(4), headers=csv)
        assert status == 413
        assert_quota_problem(doc, "import_max_rows", 3)
        json_rows = [{"id": f"j-{i}", "name": "J", "type": "th"} for i in range(4)]
        status, doc, _ = await api.call("POST", path, "op_a", json=json_rows)
        assert status == 413
        assert_quota_problem(doc, "import_max_rows", 3)
        assert throttled("import_max_rows", "acme") == rows + 2
        status, doc, _ = await api.call("POST", path, "op_a", data=csv_rows(200), headers=csv)
        assert status == 413
        assert_quota_problem(doc, "import_max_bytes", 2048)
        # Nothing of the refused imports was created.
        status, doc, _ = await api.call("GET", f"{V1}/tenants/acme/devices", "op_a")
        assert sorted(d["id"] for d in doc["items"]) == ["q-0", "q-1", "q-2"]
        # Beta's operator imports up to the same limit.
        status, doc, _ = await api.call(
            "POST", f"{V1}/tenants/beta/devices/_import", "op_b", data=csv_rows(3), headers=csv
        )
        assert status == 200, doc


async def test_the_import_byte_cap_defaults_to_the_quota_setting() -> None:
    async with quota_api(import_max_bytes=1024) as (api, _):
        path = f"{V1}/tenants/acme/devices/_import"
        status, doc, _ = await api.call(
            "POST", path, "op_a", data=csv_rows(100), headers={"Content-Type": "text/csv"}
        )
        assert status == 413
        assert_quota_problem(doc, "import_max_bytes", 1024)
