"""The public's data requests on the real stack: a ``cityhub api`` process, an HTTP client with
no key files requests, lists and reads them; a tenant's operator answers one with a published
dataset and one with its own offer (written to the offers topic, as the sharing service does),
and the public sees the links; a flood from one address gets 429, an oversized body 413; an
admin reads the contact and declines a request, which erases it; no keyless response ever
carries a contact; and a fresh view of the topic holds what the API said."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cityhub.schemas.data_request import MAX_REQUEST_BYTES, DataRequestStatus
from cityhub.schemas.registry import Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.sharing import Offer, OfferSpec
from cityhub.streams.opendata.requests_store import DataRequestStore
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.sharing.store import OfferStore

from .hub import BOOTSTRAP, Hub

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

OPEN = "/api/v1/open/data-requests"
CONTACT = "p.de.vries@example.org"
PER_ADDRESS = 3


def _settings(prefix: str) -> Settings:
    return Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))


async def _seed(prefix: str) -> dict[str, str]:
    """Tenant acme with an operator and an admin key, and its offer ``parking``."""
    settings = _settings(prefix)
    store = RegistryStore(settings)
    offers = OfferStore(settings, client_id=f"{prefix}-seed-offers")
    await store.start()
    await offers.start()
    try:
        registry, system = Registry(store), Principal.system()
        await registry.create_tenant(system, TenantSpec(id="acme", name="Acme"))
        keys = {
            "op": (await registry.create_key(system, "acme", Role.OPERATOR, "op"))[1],
            "admin": (await registry.create_key(system, "acme", Role.ADMIN, "admin"))[1],
        }
        spec = OfferSpec.model_validate(
            {
                "id": "parking",
                "title": "Parking occupancy",
                "description": "Occupied spaces per street, every 15 minutes.",
                "selection": {"areas": ["centrum"]},
                "kinds": ["aggregates"],
                "purposes": ["mobility research"],
                "listed": True,
            }
        )
        now = "2026-01-01T00:00:00Z"
        await offers.put(Offer(tenant="acme", spec=spec, created_at=now, updated_at=now))
        return keys
    finally:
        await offers.stop()
        await store.stop()


class Client:
    """Calls the hub's API; remembers every keyless response's text."""

    def __init__(self, session: aiohttp.ClientSession, hub: Hub, keys: dict[str, str]) -> None:
        self.session = session
        self.base = f"http://127.0.0.1:{hub.port}"
        self.keys = keys
        self.public_texts: list[str] = []

    async def call(
        self, method: str, path: str, who: str | None = None, **kw: Any
    ) -> tuple[int, Any, Any]:
        headers = dict(kw.pop("headers", {}))
        if who is not None:
            headers["Authorization"] = f"Bearer {self.keys[who]}"
        async with self.session.request(
            method, self.base + path, headers=headers, **kw
        ) as response:
            text = await response.text()
            if who is None:
                self.public_texts.append(text)
            doc = await response.json(content_type=None) if text else None
            return response.status, doc, response.headers

    async def file(self, title: str) -> tuple[int, Any, Any]:
        body = {
            "title": title,
            "data": "Hourly parking occupancy per street in the centre.",
            "purpose": "A resident group's study of parking pressure.",
            "area": "centrum",
            "contact": CONTACT,
        }
        return await self.call("POST", OPEN, json=body)


async def _exercise(hub: Hub, keys: dict[str, str]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        api = Client(session, hub, keys)
        # File without a key: 201, Location, open, no contact.
        status, first, headers = await api.file("Parking per street")
        assert status == 201, first
        assert headers["Location"] == f"{OPEN}/{first['id']}"
        assert first["status"] == "open"
        status, second, _ = await api.file("Parking per hour")
        assert status == 201, second
        status, listed, _ = await api.call("GET", OPEN)
        assert status == 200
        assert [r["id"] for r in listed["items"]] == [second["id"], first["id"]]

        # A tenant answers one with a published dataset, the other with its own offer.
        path = f"/api/v1/tenants/acme/data-requests/{first['id']}/answers"
        status, _, _ = await api.call("POST", path, None, json={"dataset": "air-quality"})
        assert status == 401
        body = {"dataset": "air-quality", "note": "Not parking, but hourly per area."}
        status, answered, _ = await api.call("POST", path, "op", json=body)
        assert status == 200, answered
        path = f"/api/v1/tenants/acme/data-requests/{second['id']}/answers"
        status, answered, _ = await api.call("POST", path, "op", json={"offer": "acme/parking"})
        assert status == 200, answered
        status, missing, _ = await api.call("POST", path, "op", json={"offer": "acme/none"})
        assert status == 400, missing

        # The public sees the links.
        _, one, _ = await api.call("GET", f"{OPEN}/{first['id']}")
        assert one["status"] == "answered"
        assert one["answers"][0]["url"] == "/api/v1/open/datasets/air-quality"
        _, two, _ = await api.call("GET", f"{OPEN}/{second['id']}")
        assert [(a["kind"], a["ref"], a["url"]) for a in two["answers"]] == [
            ("offer", "acme/parking", "/api/v1/tenants/acme/offers/parking")
        ]
        _, answered_page, _ = await api.call("GET", f"{OPEN}?status=answered&limit=1")
        assert len(answered_page["items"]) == 1
        assert answered_page["next_cursor"] is not None

        # Oversized: 413 before anything is stored.
        huge = {"title": "t", "data": "x" * (2 * MAX_REQUEST_BYTES), "purpose": "p"}
        status, problem, _ = await api.call("POST", OPEN, json=huge)
        assert status == 413, problem
        assert problem["type"].endswith("payload-too-large")

        # Flood from one address: the per-address allowance runs out, then 429.
        status, third, _ = await api.file("Parking at night")
        assert status == 201
        status, problem, headers = await api.file("Parking at night, again")
        assert status == 429, problem
        assert problem["quota"] == "data_requests_per_address"
        assert int(headers["Retry-After"]) >= 1

        # The admin reads the contact, and declines the third as a duplicate: contact erased.
        status, admin_view, _ = await api.call(
            "GET", f"/api/v1/data-requests/{third['id']}", "admin"
        )
        assert status == 200
        assert admin_view["contact"] == CONTACT
        status, _, _ = await api.call("GET", f"/api/v1/data-requests/{third['id']}", "op")
        assert status == 403
        decline = f"/api/v1/data-requests/{third['id']}/decline"
        status, declined, _ = await api.call("POST", decline, "admin", json={"reason": "duplicate"})
        assert status == 200, declined
        assert declined["contact"] is None
        _, public, _ = await api.call("GET", f"{OPEN}/{third['id']}")
        assert public["status"] == "declined"
        assert public["decline_reason"] == "duplicate"

        for text in api.public_texts:
            assert CONTACT not in text
            assert '"contact"' not in text
        return {"first": first["id"], "second": second["id"], "third": third["id"]}


async def _view_of_topic(prefix: str) -> DataRequestStore:
    store = DataRequestStore(_settings(prefix), client_id=f"{prefix}-check")
    await store.start()
    await store.stop()
    return store


def test_data_requests_on_the_real_stack(tmp_path: Path) -> None:
    env = {
        "CITYHUB_OPEN_DATA__MAX_REQUESTS_PER_ADDRESS": str(PER_ADDRESS),
        "CITYHUB_OPEN_DATA__FILES_DIR": str(tmp_path / "open-data"),
    }
    hub = Hub(tmp_path / "api", command="api", extra_env=env)
    hub.workdir.mkdir()
    keys = asyncio.run(_seed(hub.prefix))
    hub.start()
    try:
        assert hub.health()["components"]["data_requests"] is True
        ids = asyncio.run(_exercise(hub, keys))
        assert hub.metric("cityhub_data_requests") == 3
        assert hub.metric("cityhub_data_requests_open") == 0
    finally:
        hub.stop()

    # A fresh process's view, built from the topic alone, holds what the API answered.
    view = asyncio.run(_view_of_topic(hub.prefix)).view
    first, second, third = (view.get(ids[name]) for name in ("first", "second", "third"))
    assert first is not None
    assert second is not None
    assert third is not None
    assert first.status is DataRequestStatus.ANSWERED
    assert first.contact == CONTACT  # kept to tell the requester, until its retention
    assert second.answers[0].ref == "acme/parking"
    assert third.status is DataRequestStatus.DECLINED
    assert third.contact is None
