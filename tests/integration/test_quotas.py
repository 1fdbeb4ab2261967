"""Quotas on the real stack: a ``cityhub api`` process with its quotas set from the environment
(``CITYHUB_QUOTAS__SUBSCRIPTIONS_PER_TENANT=3`` and a low request rate). The fourth
subscription of a tenant is refused as a quota problem while another tenant creates its own; a
key past its rate gets 429 with ``Retry-After`` while another key is served, and after waiting
that long the key works again; both refusals are counted on the management port."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from cityhub.schemas.registry import Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

from .hub import BOOTSTRAP, Hub

pytestmark = pytest.mark.integration

V1 = "/api/v1"
RATE = 0.5
"""Requests per second of a key: one token every 2 s, so none comes back while a test hurries."""
BURST = 6


def _seed(prefix: str) -> dict[str, str]:
    """Tenants acme and beta and a subscriber key of each, written to the registry topic as
    ``cityhub keys create`` would."""

    async def seed() -> dict[str, str]:
        settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
        store = RegistryStore(settings)
        await store.start()
        try:
            registry, system = Registry(store), Principal.system()
            keys = {}
            for tenant, name in (("acme", "sub_a"), ("beta", "sub_b")):
                await registry.create_tenant(system, TenantSpec(id=tenant, name=tenant.title()))
                keys[name] = (await registry.create_key(system, tenant, Role.SUBSCRIBER, name))[1]
            return keys
        finally:
            await store.stop()

    return asyncio.run(seed())


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, dict[str, str]]]:
    hub = Hub(
        tmp_path_factory.mktemp("quotas"),
        command="api",
        extra_env={
            "CITYHUB_QUOTAS__SUBSCRIPTIONS_PER_TENANT": "3",
            "CITYHUB_QUOTAS__API_REQUESTS_PER_SECOND": str(RATE),
            "CITYHUB_QUOTAS__API_BURST": str(BURST),
        },
    )
    keys = _seed(hub.prefix)
    hub.start()
    try:
        yield hub, keys
    finally:
        hub.stop()


def call(
    hub: Hub, method: str, path: str, secret: str, body: Any = None
) -> tuple[int, Any, dict[str, str]]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {secret}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        f"http://127.0.0.1:{hub.port}{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text, got = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, text, got = exc.code, exc.read(), dict(exc.headers)
    return status, json.loads(text) if text else None, got


def kafka_sub(sub_id: str) -> dict[str, Any]:
    return {"id": sub_id, "name": sub_id, "delivery": {"kind": "kafka"}}


def test_subscription_quota_and_request_rate(hub: tuple[Hub, dict[str, str]]) -> None:
    server, keys = hub
    acme, beta = f"{V1}/tenants/acme/subscriptions", f"{V1}/tenants/beta/subscriptions"
    # Four requests of sub_a's burst of six: three subscriptions, and the fourth refused.
    for i in range(3):
        status, doc, _ = call(server, "POST", acme, keys["sub_a"], kafka_sub(f"s{i}"))
        assert status == 201, doc
    status, doc, _ = call(server, "POST", acme, keys["sub_a"], kafka_sub("s3"))
    assert status == 409, doc
    assert doc["type"].endswith("/quota-exceeded")
    assert doc["quota"] == "subscriptions_per_tenant"
    assert doc["limit"] == 3
    assert "CITYHUB_QUOTAS__SUBSCRIPTIONS_PER_TENANT" in doc["detail"]
    # Another tenant's key: its own bucket and its own subscriptions.
    status, doc, _ = call(server, "POST", beta, keys["sub_b"], kafka_sub("b0"))
    assert status == 201, doc

    # sub_a spends the rest of its burst, then is refused.
    started = time.monotonic()
    for _ in range(BURST + 2):
        status, doc, headers = call(server, "GET", acme, keys["sub_a"])
        if status == 429:
            break
        assert status == 200, doc
    else:
        pytest.fail("sub_a was never throttled")
    assert time.monotonic() - started < 1 / RATE, "the burst ran out too slowly to tell"
    retry_after = int(headers["Retry-After"])
    assert 1 <= retry_after <= 1 / RATE
    assert doc["quota"] == "api_requests_per_second"
    assert doc["type"].endswith("/quota-exceeded")
    assert call(server, "GET", beta, keys["sub_b"])[0] == 200  # a throttled key throttles no other

    time.sleep(retry_after)
    status, doc, _ = call(server, "GET", acme, keys["sub_a"])
    assert status == 200, doc
    assert [s["id"] for s in doc["items"]] == ["s0", "s1", "s2"]

    assert (
        server.metric(
            "cityhub_api_throttled_total", reason="subscriptions_per_tenant", tenant="acme"
        )
        == 1
    )
    assert (
        server.metric("cityhub_api_throttled_total", reason="api_requests_per_key", tenant="acme")
        >= 1
    )
    assert server.metric("cityhub_api_throttled_total", tenant="beta") == 0
