"""Offers and agreements on the real stack: two ``cityhub api`` processes on one topic prefix
(what one writes, the other serves), a view of the topics of the test's own (what a worker or a
delivery holds) that must follow a revocation within 5 seconds, expiry by the clock alone, the
refusals across tenants, and usage counted by two processes on the agreement-usage topic and
summed by the API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cityhub.schemas.registry import DeviceTypeSpec, Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.sharing import ItemKind
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.sharing.grants import ItemFacts
from cityhub.streams.sharing.stores import SharingStores
from cityhub.streams.sharing.usage import Channel, UsageCounts
from cityhub.streams.sharing.usage_publisher import UsagePublisher

from .hub import BOOTSTRAP, Hub

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

V1 = "/api/v1"
ITEM = ItemFacts(
    tenant="port",
    kind=ItemKind.OBSERVATIONS,
    quantity="pm2_5",
    classification="internal",
    device_id="d1",
    device_type="airq",
)
OFFER: dict[str, Any] = {
    "id": "air",
    "title": "Harbour air",
    "description": "PM of the harbour's sensors",
    "selection": {"device_types": ["airq"]},
    "kinds": ["observations"],
    "purposes": ["air quality policy"],
    "listed": True,
}


def _settings(prefix: str) -> Settings:
    return Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))


def _seed(prefix: str) -> dict[str, str]:
    """Tenants port, city and uni with device type airq, and an operator key of each."""

    async def seed() -> dict[str, str]:
        store = RegistryStore(_settings(prefix))
        await store.start()
        try:
            registry, system = Registry(store), Principal.system()
            keys = {}
            for tenant in ("port", "city", "uni"):
                await registry.create_tenant(system, TenantSpec(id=tenant, name=tenant.title()))
                await registry.create_type(system, tenant, DeviceTypeSpec(id="airq", name="Air"))
                keys[tenant] = (await registry.create_key(system, tenant, Role.OPERATOR, "op"))[1]
            return keys
        finally:
            await store.stop()

    return asyncio.run(seed())


def _call(hub: Hub, method: str, path: str, key: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{hub.port}{V1}{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _until(check: Any, timeout: float, what: str) -> float:
    """Seconds until ``check()`` is true; fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def _seen(hub: Hub, path: str, key: str, check: Any) -> dict[str, Any]:
    """GET ``path`` until ``check(doc)`` holds (another process's view follows the topic within
    about 100 ms: reads are not synchronised, decisions are); the document."""
    found: dict[str, Any] = {}

    def ok() -> bool:
        status, doc = _call(hub, "GET", path, key)
        found.update(doc)
        return status == 200 and bool(check(doc))

    _until(ok, 5, f"GET {path}")
    return found


@pytest.fixture(scope="module")
def hubs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, Hub, dict[str, str]]]:
    root = tmp_path_factory.mktemp("sharing")
    first = Hub(root / "a", command="api")
    second = Hub(root / "b", command="api", prefix=first.prefix)
    first.workdir.mkdir()
    second.workdir.mkdir()
    keys = _seed(first.prefix)
    first.start()
    try:
        second.start()
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second, keys
    finally:
        second.stop()
        first.stop()


class Follower:
    """The sharing stores a worker or a delivery process holds, run in a thread of their own
    (the test's loop is the blocking HTTP calls')."""

    def __init__(self, prefix: str) -> None:
        self.stores = SharingStores.for_settings(_settings(prefix))
        self.loop = asyncio.new_event_loop()
        self._ready = False

    def __enter__(self) -> Follower:
        import threading

        async def run() -> None:
            await self.stores.offers.start()
            await self.stores.agreements.start()
            self._ready = True
            try:
                await asyncio.Event().wait()
            finally:
                await self.stores.agreements.stop()
                await self.stores.offers.stop()

        def main() -> None:
            self._task = self.loop.create_task(run())
            with contextlib.suppress(asyncio.CancelledError):
                self.loop.run_until_complete(self._task)
            self.loop.close()

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        _until(lambda: self._ready, 60, "the sharing views")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(30)

    def granted(self, agreement_id: str) -> bool:
        """Whether the agreement lets city see the port's air item now."""
        grant = self.stores.grants().get(agreement_id)
        return grant is not None and grant.active_at(datetime.now(UTC)) and grant.covers(ITEM)


def test_request_approve_revoke_across_processes(hubs: tuple[Hub, Hub, dict[str, str]]) -> None:
    first, second, keys = hubs
    status, doc = _call(first, "POST", "/tenants/port/offers", keys["port"], OFFER)
    assert status == 201, doc
    # the other process lists it at once for any tenant
    listed = _seen(second, "/offers", keys["uni"], lambda doc: doc["items"])
    assert [o["ref"] for o in listed["items"]] == ["port/air"]
    ends = rfc3339(time.time() + 3600)
    ask = {"offer": "port/air", "purpose": "air quality policy", "ends_at": ends}
    with Follower(first.prefix) as follower:
        status, asked = _call(second, "POST", "/tenants/city/agreements", keys["city"], ask)
        assert status == 201, asked
        agreement = asked["id"]
        path = f"/agreements/{agreement}"
        # neither the consumer nor a third tenant approves; the third sees nothing
        status, _ = _call(first, "POST", f"/tenants/city{path}/approve", keys["city"])
        assert status == 403
        for tenant in ("port", "city", "uni"):
            status, _ = _call(first, "POST", f"/tenants/{tenant}{path}/approve", keys["uni"])
            assert status == 404
            status, _ = _call(second, "GET", f"/tenants/{tenant}{path}", keys["uni"])
            assert status == 404
        assert not follower.granted(agreement)
        status, approved = _call(first, "POST", f"/tenants/port{path}/approve", keys["port"])
        assert status == 200, approved
        assert approved["active"] is True
        _until(lambda: follower.granted(agreement), 5, "the approval in another process")
        # The other API process decides on what this one wrote a moment before (it catches
        # up with the topic first): the consumer revokes there at once.
        asked_at = time.monotonic()
        status, revoked = _call(
            second, "POST", f"/tenants/city{path}/revoke", keys["city"], {"reason": "done"}
        )
        assert status == 200, revoked
        answered = time.monotonic() - asked_at
        _until(lambda: not follower.granted(agreement), 5, "the revocation in another process")
        took = time.monotonic() - asked_at
        assert took < 5
        print(f"revoke answered in {answered:.3f} s; another process's grants in {took:.3f} s")
        seen = _seen(first, f"/tenants/port{path}", keys["port"], lambda d: d["state"] == "revoked")
        assert seen["active"] is False
        assert [e["by_tenant"] for e in seen["history"]] == ["city", "port", "city"]


def test_reject_and_expiry(hubs: tuple[Hub, Hub, dict[str, str]]) -> None:
    first, second, keys = hubs
    _call(first, "POST", "/tenants/port/offers", keys["port"], {**OFFER, "id": "air2"})
    soon = datetime.now(UTC) + timedelta(seconds=6)
    ask = {
        "offer": "port/air2",
        "purpose": "air quality policy",
        "ends_at": rfc3339(soon.timestamp()),
    }
    status, rejected_one = _call(first, "POST", "/tenants/city/agreements", keys["city"], ask)
    assert status == 201, rejected_one
    path = f"/tenants/port/agreements/{rejected_one['id']}"
    status, rejected = _call(second, "POST", f"{path}/reject", keys["port"], {"reason": "no"})
    assert (status, rejected["state"]) == (200, "rejected")
    status, _ = _call(first, "POST", f"{path}/approve", keys["port"])
    assert status == 409
    with Follower(first.prefix) as follower:
        status, asked = _call(first, "POST", "/tenants/city/agreements", keys["city"], ask)
        assert status == 201, asked
        path = f"/tenants/port/agreements/{asked['id']}"
        status, approved = _call(second, "POST", f"{path}/approve", keys["port"])
        assert approved["active"] is True
        _until(lambda: follower.granted(asked["id"]), 5, "the approval")
        # no record ends it: the clock does
        _until(lambda: not follower.granted(asked["id"]), 15, "the expiry")
        status, seen = _call(second, "GET", path, keys["port"])
        assert (seen["state"], seen["status"], seen["active"]) == ("approved", "expired", False)


def test_usage_counted_by_two_processes_is_summed(hubs: tuple[Hub, Hub, dict[str, str]]) -> None:
    first, second, keys = hubs
    _call(first, "POST", "/tenants/port/offers", keys["port"], {**OFFER, "id": "air3"})
    ask = {
        "offer": "port/air3",
        "purpose": "air quality policy",
        "ends_at": rfc3339(time.time() + 600),
    }
    status, asked = _call(first, "POST", "/tenants/city/agreements", keys["city"], ask)
    assert status == 201, asked
    agreement = asked["id"]
    _call(first, "POST", f"/tenants/port/agreements/{agreement}/approve", keys["port"])
    settings = _settings(first.prefix)

    async def count() -> None:
        publishers = []
        for delivered, read in ((5, 1), (2, 3)):
            counts = UsageCounts()
            counts.count(agreement, Channel.DELIVERED, delivered)
            counts.count(agreement, Channel.READ, read)
            publishers.append(UsagePublisher(counts, interval=0.2))
        tasks = [asyncio.create_task(p.run(settings)) for p in publishers]
        await asyncio.sleep(1.5)
        publishers[0].counts.count(agreement, Channel.READ, 10)
        await asyncio.sleep(1.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(count())

    def usage(hub: Hub, tenant: str) -> tuple[int, int]:
        _, doc = _call(hub, "GET", f"/tenants/{tenant}/agreements/{agreement}", keys[tenant])
        return doc["usage"]["delivered"], doc["usage"]["read"]

    _until(lambda: usage(first, "port") == (7, 14), 10, "the provider's sum")
    assert usage(second, "city") == (7, 14)
    _, listed = _call(second, "GET", "/tenants/city/agreements?role=consumer", keys["city"])
    assert agreement in [a["id"] for a in listed["items"]]
    _, none = _call(second, "GET", "/tenants/city/agreements?role=provider", keys["city"])
    assert none == {"items": []}


def test_the_sharing_commands(hubs: tuple[Hub, Hub, dict[str, str]]) -> None:
    from click.testing import CliRunner

    from cityhub.streams.sharing.cli import sharing

    first, _, keys = hubs
    _call(first, "POST", "/tenants/port/offers", keys["port"], {**OFFER, "id": "air4"})
    ask = {
        "offer": "port/air4",
        "purpose": "air quality policy",
        "ends_at": rfc3339(time.time() + 600),
    }
    _, asked = _call(first, "POST", "/tenants/city/agreements", keys["city"], ask)
    agreement = asked["id"]
    _call(first, "POST", f"/tenants/port/agreements/{agreement}/approve", keys["port"])
    runner = CliRunner()
    env = {"CITYHUB_KAFKA__TOPIC_PREFIX": first.prefix}

    def cityhub(*args: str, expect: int = 0) -> str:
        result = runner.invoke(sharing, list(args), env=env)
        assert result.exit_code == expect, result.output
        assert "Traceback" not in result.output
        return result.output

    listed = json.loads(cityhub("agreements", "--tenant", "city", "--role", "consumer", "--json"))
    assert agreement in [a["id"] for a in listed["items"]]
    assert "port/air4" in cityhub("offers")
    assert "approved" in cityhub("show", agreement)
    cityhub("revoke", agreement, "--by", "uni", expect=1)  # not a party
    assert "revoked" in cityhub("revoke", agreement, "--by", "port", "--reason", "incident")
    path = f"/tenants/city/agreements/{agreement}"
    seen = _seen(first, path, keys["city"], lambda doc: doc["state"] == "revoked")
    assert seen["history"][-1]["reason"] == "incident"
    assert "Error" in cityhub("show", "agr-0000000000000000", expect=1)
