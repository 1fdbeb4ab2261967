"""The public's data requests through the API, over in-memory stores: filing without a key
(201 and Location), the public listing and reading that never show the contact, the anonymous
limits (body cap, per-address rate with IPv6 by /64, the cap on open requests), answers by a
tenant's own offer or a published dataset, and the admin's decline and contact reads."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from cityhub.schemas.data_request import MAX_REQUEST_BYTES
from cityhub.schemas.settings import QuotaSettings
from cityhub.schemas.sharing import Offer, OfferSpec
from cityhub.streams.api.app import build_api
from cityhub.streams.api.routes import ROUTES
from cityhub.streams.opendata.requests import DataRequests
from cityhub.streams.opendata.requests_store import InMemoryDataRequestStore
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore

from .test_api_support import seed

V1 = "/api/v1"
OPEN = f"{V1}/open/data-requests"
ADMIN = f"{V1}/data-requests"
CONTACT = "jan.jansen@example.org"


def answers(tenant: str, request_id: str) -> str:
    return f"{V1}/tenants/{tenant}/data-requests/{request_id}/answers"


def offer(tenant: str, offer_id: str, *, withdrawn: bool = False) -> Offer:
    return Offer(
        tenant=tenant,
        spec=OfferSpec(
            id=offer_id,
            title="Parking occupancy",
            description="Per street, every 15 minutes.",
            selection={"device_types": ["th"]},  # type: ignore[arg-type]
            kinds=["observations"],  # type: ignore[list-item]
            purposes=["mobility policy"],
        ),
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
        withdrawn_at="2026-01-02T00:00:00Z" if withdrawn else None,
    )


OFFERS = {
    ("acme", "parking"): offer("acme", "parking"),
    ("acme", "old"): offer("acme", "old", withdrawn=True),
    ("beta", "noise"): offer("beta", "noise"),
}


@dataclass
class Clock:
    now: float = 1_780_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Api:
    client: TestClient[Any, Any]
    keys: dict[str, str]
    store: InMemoryDataRequestStore
    clock: Clock
    texts: list[str] = field(default_factory=list)
    """Every response body without a key, to look for a contact in."""

    async def call(
        self, method: str, path: str, who: str | None = None, **kw: Any
    ) -> tuple[int, Any, CIMultiDict[str]]:
        headers = dict(kw.pop("headers", {}))
        if who is not None:
            headers["Authorization"] = f"Bearer {self.keys[who]}"
        async with self.client.request(method, path, headers=headers, **kw) as response:
            text = await response.text()
            if who is None:
                self.texts.append(text)
            doc = orjson.loads(text) if text and response.content_type.endswith("json") else text
            return response.status, doc, CIMultiDict(response.headers)

    async def file(self, address: str = "192.0.2.1", **fields: Any) -> tuple[int, Any, Any]:
        body = {
            "title": "Parking occupancy per street",
            "data": "Occupied spaces per street, every 15 minutes.",
            "purpose": "A study of parking pressure.",
            "contact": CONTACT,
            **fields,
        }
        return await self.call("POST", OPEN, json=body, headers={"X-Forwarded-For": address})


@asynccontextmanager
async def running(
    *, per_address: int = 5, max_open: int = 10_000, quotas: QuotaSettings | None = None
) -> AsyncIterator[Api]:
    registry = Registry(InMemoryRegistryStore())
    keys = await seed(registry)
    store = InMemoryDataRequestStore()
    clock = Clock()
    service = DataRequests(
        store,
        registry.view,
        datasets={"air-quality", "noise"},
        offers=lambda tenant, offer_id: OFFERS.get((tenant, offer_id)),
        per_address_per_hour=per_address,
        max_open=max_open,
        clock=clock,
        monotonic=clock,
    )
    app = build_api(registry, data_requests=service, quotas=quotas)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, keys, store, clock)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running() as started:
        yield started


async def test_filed_without_a_key_listed_and_read_without_the_contact(api: Api) -> None:
    status, doc, headers = await api.file()
    assert status == 201, doc
    assert headers["Location"] == f"{OPEN}/{doc['id']}"
    assert doc["status"] == "open"
    assert doc["answers"] == []
    status, one, _ = await api.call("GET", headers["Location"])
    assert status == 200
    assert one == doc
    status, page, _ = await api.call("GET", OPEN)
    assert status == 200
    assert [r["id"] for r in page["items"]] == [doc["id"]]
    for text in api.texts:
        assert CONTACT not in text
        assert "contact" not in text
    # What is stored still holds it, for the admin.
    status, admin, headers = await api.call("GET", f"{ADMIN}/{doc['id']}", "admin")
    assert status == 200
    assert admin["contact"] == CONTACT
    assert headers["Cache-Control"] == "no-store"


async def test_the_contact_is_for_admin_keys_only(api: Api) -> None:
    _, doc, _ = await api.file()
    for who in ("op_a", "sub_a", "op_b"):
        status, problem, _ = await api.call("GET", f"{ADMIN}/{doc['id']}", who)
        assert status == 403, problem
        assert CONTACT not in str(problem)
        status, _, _ = await api.call("GET", ADMIN, who)
        assert status == 403
    status, _, _ = await api.call("GET", ADMIN)
    assert status == 401
    status, page, _ = await api.call("GET", ADMIN, "admin")
    assert page["items"][0]["contact"] == CONTACT


async def test_listing_pages_newest_first_and_filters_by_status(api: Api) -> None:
    ids = []
    for n in range(3):
        api.clock.now += 1
        status, doc, _ = await api.file(address=f"192.0.2.{n}", title=f"request {n}")
        assert status == 201
        ids.append(doc["id"])
    status, page, headers = await api.call("GET", f"{OPEN}?limit=2")
    assert [r["id"] for r in page["items"]] == [ids[2], ids[1]]
    assert page["next_cursor"] == ids[1]
    assert 'rel="next"' in headers["Link"]
    _, rest, _ = await api.call("GET", f"{OPEN}?limit=2&cursor={page['next_cursor']}")
    assert [r["id"] for r in rest["items"]] == [ids[0]]
    assert rest["next_cursor"] is None
    await api.call("POST", answers("acme", ids[0]), "op_a", json={"dataset": "noise"})
    _, answered, _ = await api.call("GET", f"{OPEN}?status=answered")
    assert [r["id"] for r in answered["items"]] == [ids[0]]
    _, still_open, _ = await api.call("GET", f"{OPEN}?status=open")
    assert [r["id"] for r in still_open["items"]] == [ids[2], ids[1]]
    status, problem, _ = await api.call("GET", f"{OPEN}?status=maybe")
    assert status == 400, problem


async def test_an_unknown_request_is_404(api: Api) -> None:
    status, problem, _ = await api.call("GET", f"{OPEN}/0190000000ab-00000000")
    assert status == 404
    assert problem["status"] == 404


async def test_an_oversized_body_is_413_before_it_is_read(api: Api) -> None:
    body = orjson.dumps({"title": "t", "data": "x" * MAX_REQUEST_BYTES, "purpose": "p"})
    status, problem, _ = await api.call(
        "POST", OPEN, data=body, headers={"Content-Type": "application/json"}
    )
    assert status == 413, problem
    assert api.store.view.count() == 0


async def test_invalid_bodies_are_400_naming_the_field_without_echoing_it(api: Api) -> None:
    status, problem, _ = await api.file(title="a\x1b[2Jb")
    assert status == 400
    assert [e["field"] for e in problem["errors"]] == ["title"]
    assert "\x1b" not in str(problem)
    status, problem, _ = await api.call(
        "POST", OPEN, data=b"title=x", headers={"Content-Type": "text/plain"}
    )
    assert status == 415
    assert api.store.view.count() == 0


async def test_a_flood_from_one_address_is_429_with_retry_after(api: Api) -> None:
    # A forwarded-for header is anyone's to write: it changes nothing.
    for n in range(5):
        status, doc, _ = await api.file(address=f"198.51.100.{n}")
        assert status == 201, doc
    status, problem, headers = await api.file()
    assert status == 429
    assert problem["quota"] == "data_requests_per_address"
    assert problem["setting"] == "CITYHUB_OPEN_DATA__MAX_REQUESTS_PER_ADDRESS"
    assert 1 <= int(headers["Retry-After"]) <= 720
    assert api.store.view.count() == 5
    # A token comes back after an hour / 5.
    api.clock.now += 720
    status, _, _ = await api.file()
    assert status == 201


async def test_the_cap_on_open_requests_is_503_until_some_are_answered() -> None:
    async with running(max_open=2) as api:
        ids = [(await api.file())[1]["id"] for _ in range(2)]
        status, problem, headers = await api.file()
        assert status == 503
        assert problem["quota"] == "open_data_requests"
        assert headers["Retry-After"] == "3600"
        await api.call("POST", answers("acme", ids[0]), "op_a", json={"dataset": "noise"})
        status, _, _ = await api.file()
        assert status == 201


async def test_answered_with_a_dataset_links_to_it(api: Api) -> None:
    _, doc, _ = await api.file()
    body = {"dataset": "air-quality", "note": "Hourly means per area."}
    status, answered, _ = await api.call("POST", answers("acme", doc["id"]), "op_a", json=body)
    assert status == 200, answered
    assert answered["status"] == "answered"
    [answer] = answered["answers"]
    assert answer["kind"] == "dataset"
    assert answer["ref"] == "air-quality"
    assert answer["tenant"] == "acme"
    assert answer["note"] == "Hourly means per area."
    assert answer["url"] == f"{V1}/open/datasets/air-quality"
    assert "contact" not in answered
    _, public, _ = await api.call("GET", f"{OPEN}/{doc['id']}")
    assert public["answers"] == [answer]


async def test_answered_with_the_tenants_own_offer(api: Api) -> None:
    _, doc, _ = await api.file()
    path = answers("acme", doc["id"])
    status, answered, _ = await api.call("POST", path, "op_a", json={"offer": "acme/parking"})
    assert status == 200, answered
    [answer] = answered["answers"]
    assert (answer["kind"], answer["ref"]) == ("offer", "acme/parking")
    assert answer["url"] == f"{V1}/tenants/acme/offers/parking"
    # A second tenant adds its own answer; the same answer twice is a conflict.
    status, both, _ = await api.call(
        "POST", answers("beta", doc["id"]), "op_b", json={"dataset": "noise"}
    )
    assert status == 200
    assert [a["tenant"] for a in both["answers"]] == ["acme", "beta"]
    status, _, _ = await api.call("POST", path, "op_a", json={"offer": "acme/parking"})
    assert status == 409


@pytest.mark.parametrize(
    ("who", "tenant", "body", "expected", "field"),
    [
        ("op_a", "acme", {"offer": "beta/noise"}, 400, "offer"),  # another tenant's offer
        ("op_a", "acme", {"offer": "acme/none"}, 400, "offer"),  # no such offer
        ("op_a", "acme", {"offer": "acme/old"}, 400, "offer"),  # withdrawn
        ("op_a", "acme", {"dataset": "parking"}, 400, "dataset"),  # not published
        ("op_a", "acme", {"dataset": "noise", "offer": "acme/parking"}, 400, "(body)"),
        ("sub_a", "acme", {"dataset": "noise"}, 403, None),  # a subscriber key reads only
        ("op_b", "acme", {"dataset": "noise"}, 404, None),  # another tenant's key
        (None, "acme", {"dataset": "noise"}, 401, None),
    ],
)
async def test_answers_that_are_refused(
    api: Api, who: str | None, tenant: str, body: dict[str, str], expected: int, field: str | None
) -> None:
    _, doc, _ = await api.file()
    status, problem, _ = await api.call("POST", answers(tenant, doc["id"]), who, json=body)
    assert status == expected, problem
    if field is not None:
        assert field in [e["field"] for e in problem["errors"]]
    assert api.store.view.get(doc["id"]).status.value == "open"  # type: ignore[union-attr]


async def test_an_answer_to_an_unknown_request_is_404(api: Api) -> None:
    path = answers("acme", "0190000000ab-00000000")
    status, _, _ = await api.call("POST", path, "op_a", json={"dataset": "noise"})
    assert status == 404


async def test_declined_by_an_admin_erases_the_contact_and_hides_the_text(api: Api) -> None:
    _, doc, _ = await api.file(title="Buy cheap watches")
    path = f"{ADMIN}/{doc['id']}/decline"
    status, _, _ = await api.call("POST", path, "op_a", json={"reason": "spam"})
    assert status == 403
    status, declined, _ = await api.call("POST", path, "admin", json={"reason": "spam"})
    assert status == 200, declined
    assert declined["status"] == "declined"
    assert declined["contact"] is None
    assert declined["contact_erased_at"] is not None
    _, public, _ = await api.call("GET", f"{OPEN}/{doc['id']}")
    assert public["decline_reason"] == "spam"
    assert "title" not in public
    assert "Buy cheap watches" not in str(public)
    # Nothing on the topic holds the contact but the first record (compaction drops it).
    assert CONTACT not in api.store.log[-1][1].decode()  # type: ignore[union-attr]
    status, _, _ = await api.call("POST", path, "admin", json={"reason": "spam"})
    assert status == 409
    status, _, _ = await api.call(
        "POST", answers("acme", doc["id"]), "op_a", json={"dataset": "noise"}
    )
    assert status == 409


async def test_an_admin_erases_a_contact_on_request(api: Api) -> None:
    _, doc, _ = await api.file()
    path = f"{ADMIN}/{doc['id']}/contact"
    for who in ("op_a", "sub_b"):
        status, _, _ = await api.call("DELETE", path, who)
        assert status == 403
    status, _, _ = await api.call("DELETE", path)
    assert status == 401
    status, _, _ = await api.call("DELETE", path, "admin")
    assert status == 204
    _, admin, _ = await api.call("GET", f"{ADMIN}/{doc['id']}", "admin")
    assert admin["contact"] is None
    assert admin["contact_erased_at"] is not None
    assert admin["status"] == "open"  # the request itself stays
    writes = len(api.store.log)
    status, _, _ = await api.call("DELETE", path, "admin")
    assert status == 204
    assert len(api.store.log) == writes  # nothing left to erase: nothing written
    status, _, _ = await api.call("DELETE", f"{ADMIN}/0190000000ab-00000000/contact", "admin")
    assert status == 404


async def test_without_the_service_the_routes_answer_503() -> None:
    registry = Registry(InMemoryRegistryStore())
    await seed(registry)
    async with (
        TestClient(TestServer(build_api(registry))) as client,
        client.get(OPEN) as response,
    ):
        assert response.status == 503


async def test_mutated_bodies_are_refused_as_problems_never_a_500() -> None:
    """Hostile input: a valid filing with random bytes flipped, inserted or cut is stored as
    given or refused with 400 (or 413, 415), never a 500, and never stored with a control
    character."""
    rng = random.Random(13)
    body = orjson.dumps(
        {
            "title": "Parking occupancy",
            "data": "Per street.\nEvery 15 minutes.",
            "purpose": "Research",
            "area": "centrum",
            "quantities": ["occupancy"],
            "contact": CONTACT,
            "language": "nl",
        }
    )
    quotas = QuotaSettings(api_requests_per_second=10_000, api_burst=10_000)
    statuses: set[int] = set()
    async with running(per_address=10_000, quotas=quotas) as api:
        for _ in range(400):
            mutated = bytearray(body)
            for _ in range(rng.randint(1, 4)):
                at = rng.randrange(len(mutated))
                match rng.randrange(3):
                    case 0:
                        mutated[at] = rng.randrange(256)
                    case 1:
                        mutated.insert(at, rng.choice(b'\x00\x1b\x7f"\\{}[],:\xe2\x80\xae'))
                    case _:
                        del mutated[at]
            status, doc, _ = await api.call(
                "POST", OPEN, data=bytes(mutated), headers={"Content-Type": "application/json"}
            )
            statuses.add(status)
            assert status in {201, 400}, doc
            assert doc["status"] == status if status != 201 else doc["status"] == "open"
        for record in api.store.view.all():
            text = record.model_dump_json()
            assert not re.search(r"\\u00(?:0[0-8bcef]|1[0-9a-f]|7f)", text), text
    assert statuses == {201, 400}


def test_the_public_routes_are_the_keyless_ones() -> None:
    ours = {r.operation_id: r for r in ROUTES if r.tag == "data-requests"}
    public = {name for name, r in ours.items() if r.public}
    assert public == {"fileDataRequest", "listDataRequests", "getDataRequest"}
    assert all(r.full_path.startswith(f"{V1}/open/") for r in ours.values() if r.public)
