"""Offers and agreements through the API over in-memory stores: the whole flow with the keys of
three tenants, what each side and a third tenant see, the refusals as problem documents, the
usage counts, and that responses match the documented models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.registry import Role, TenantSpec
from cityhub.streams.api.app import build_api
from cityhub.streams.api.sharing import AgreementList, AgreementOut, OfferList, OfferOut
from cityhub.streams.privacy.store import InMemoryRegisterStore
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.sharing.service import Sharing
from cityhub.streams.sharing.store import InMemoryAgreementStore, InMemoryOfferStore
from cityhub.streams.sharing.usage import Channel, UsageCounts
from cityhub.streams.sharing.usage_publisher import InMemoryUsageStore, UsagePublisher
from cityhub.streams.sharing.view import SharingView

from .test_api_support import seed

V1 = "/api/v1"
ACME, BETA, GAMMA = (f"{V1}/tenants/{t}" for t in ("acme", "beta", "gamma"))


@dataclass
class Api:
    client: TestClient[Any, Any]
    keys: dict[str, str]
    usage: InMemoryUsageStore

    async def call(self, method: str, path: str, who: str, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.keys[who]}"}
        async with self.client.request(method, path, headers=headers, **kw) as response:
            return response.status, await response.json(content_type=None)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    registry = Registry(InMemoryRegistryStore())
    keys = await seed(registry)
    system = Principal.system()
    await registry.create_tenant(system, TenantSpec(id="gamma", name="Gamma"))
    _, keys["op_c"] = await registry.create_key(system, "gamma", Role.OPERATOR, "op_c")
    view = SharingView()
    usage = InMemoryUsageStore()
    sharing = Sharing(
        InMemoryOfferStore(view=view.offers),
        InMemoryAgreementStore(view=view.agreements),
        registry.view,
        InMemoryRegisterStore().view,
        usage_of=usage.view.of,
    )
    app = build_api(registry, sharing=sharing)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, keys, usage)


def offer(offer_id: str = "temps", **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": offer_id,
        "title": "Temperatures",
        "description": "Every thermometer of acme",
        "selection": {"device_types": ["th"]},
        "kinds": ["observations", "aggregates"],
        "purposes": ["heat plan"],
        "licence": "CC-BY-4.0",
    }
    doc.update(fields)
    return doc


ASK = {"offer": "acme/temps", "purpose": "heat plan", "ends_at": "2030-01-01T00:00:00Z"}


async def test_the_whole_flow(api: Api) -> None:
    status, made = await api.call("POST", f"{ACME}/offers", "op_a", json=offer(listed=True))
    assert status == 201, made
    OfferOut.model_validate(made)
    assert made["ref"] == "acme/temps"
    status, listed = await api.call("GET", f"{V1}/offers", "sub_b")
    assert status == 200
    OfferList.model_validate(listed)
    assert [o["ref"] for o in listed["items"]] == ["acme/temps"]
    status, asked = await api.call("POST", f"{BETA}/agreements", "op_b", json=ASK)
    assert status == 201, asked
    AgreementOut.model_validate(asked)
    assert (asked["state"], asked["active"]) == ("requested", False)
    agreement = asked["id"]
    # the consumer cannot approve its own request, in its tenant or in the provider's
    status, problem = await api.call("POST", f"{BETA}/agreements/{agreement}/approve", "op_b")
    assert status == 403, problem
    status, problem = await api.call("POST", f"{ACME}/agreements/{agreement}/approve", "op_b")
    assert status == 404
    # a third tenant sees nothing of it
    for path in (f"{GAMMA}/agreements/{agreement}", f"{BETA}/agreements/{agreement}"):
        status, _ = await api.call("GET", path, "op_c")
        assert status == 404
    status, none = await api.call("GET", f"{GAMMA}/agreements", "op_c")
    assert none == {"items": []}
    status, approved = await api.call(
        "POST", f"{ACME}/agreements/{agreement}/approve", "op_a", json={"reason": "welcome"}
    )
    assert status == 200, approved
    assert (approved["state"], approved["status"], approved["active"]) == (
        "approved",
        "approved",
        True,
    )
    # uses counted by two processes are summed for both parties
    for process, n in (("p1", 3), ("p2", 4)):
        counts = UsageCounts()
        counts.count(agreement, Channel.DELIVERED, n)
        counts.count(agreement, Channel.READ, 1)
        await UsagePublisher(counts, process=process).publish(api.usage.send)
    for path, who in ((f"{ACME}/agreements/{agreement}", "sub_a"), (f"{BETA}/agreements", "op_b")):
        status, doc = await api.call("GET", path, who)
        assert status == 200, doc
        one = doc["items"][0] if "items" in doc else doc
        assert (one["usage"]["delivered"], one["usage"]["read"]) == (7, 2)
    status, mine = await api.call("GET", f"{BETA}/agreements?role=provider", "op_b")
    AgreementList.model_validate(mine)
    assert mine == {"items": []}
    status, revoked = await api.call("POST", f"{ACME}/agreements/{agreement}/revoke", "op_a")
    assert status == 200, revoked
    assert [(e["state"], e["by_tenant"]) for e in revoked["history"]] == [
        ("requested", "beta"),
        ("approved", "acme"),
        ("revoked", "acme"),
    ]
    assert revoked["active"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**ASK, "purpose": "advertising"}, "purpose"),
        ({**ASK, "offer": "acme/none"}, "offer"),
        ({**ASK, "offer": "beta/temps"}, "offer"),
        ({**ASK, "ends_at": "2001-01-01T00:00:00Z"}, "ends_at"),
        ({**ASK, "ends_at": "tomorrow"}, "ends_at"),
        ({**ASK, "surprise": 1}, "surprise"),
    ],
)
async def test_a_refused_request_is_a_400_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    await api.call("POST", f"{ACME}/offers", "op_a", json=offer())
    status, problem = await api.call("POST", f"{BETA}/agreements", "op_b", json=body)
    assert status == 400, problem
    assert field in [e["field"] for e in problem["errors"]], problem


async def test_offers_are_refused_for_unknown_types_and_wrong_keys(api: Api) -> None:
    bad = offer(selection={"device_types": ["nope"]})
    status, problem = await api.call("POST", f"{ACME}/offers", "op_a", json=bad)
    assert status == 400
    assert problem["errors"][0]["field"] == "selection.device_types"
    personal = offer(classification="personal")
    status, problem = await api.call("POST", f"{ACME}/offers", "op_a", json=personal)
    assert status == 400  # a personal offer names its processing activity
    personal["processing_activity"] = "nothing"
    status, problem = await api.call("POST", f"{ACME}/offers", "op_a", json=personal)
    assert status == 400
    assert problem["errors"][0]["field"] == "processing_activity"
    status, _ = await api.call("POST", f"{ACME}/offers", "sub_a", json=offer())
    assert status == 403
    status, _ = await api.call("POST", f"{ACME}/offers", "op_b", json=offer())
    assert status == 404


async def test_unlisted_and_withdrawn_offers_stay_with_their_tenant(api: Api) -> None:
    await api.call("POST", f"{ACME}/offers", "op_a", json=offer())
    status, _ = await api.call("GET", f"{ACME}/offers/temps", "op_b")
    assert status == 404
    status, _ = await api.call("GET", f"{ACME}/offers", "op_b")
    assert status == 404
    status, _ = await api.call("PUT", f"{ACME}/offers/temps", "op_a", json=offer(listed=True))
    assert status == 200
    status, seen = await api.call("GET", f"{ACME}/offers/temps", "op_b")
    assert status == 200
    assert seen["listed"] is True
    status, withdrawn = await api.call("POST", f"{ACME}/offers/temps/withdraw", "op_a")
    assert status == 200
    assert withdrawn["withdrawn_at"] is not None
    status, _ = await api.call("GET", f"{ACME}/offers/temps", "op_b")
    assert status == 404
    status, own = await api.call("GET", f"{ACME}/offers", "sub_a")
    assert [o["withdrawn_at"] is not None for o in own["items"]] == [True]
    status, problem = await api.call("POST", f"{BETA}/agreements", "op_b", json=ASK)
    assert status == 409, problem


async def test_only_an_admin_key_lists_every_agreement(api: Api) -> None:
    await api.call("POST", f"{ACME}/offers", "op_a", json=offer())
    _, asked = await api.call("POST", f"{BETA}/agreements", "op_b", json=ASK)
    status, every = await api.call("GET", f"{V1}/agreements", "admin")
    assert status == 200
    AgreementList.model_validate(every)
    assert [a["id"] for a in every["items"]] == [asked["id"]]
    for who in ("op_a", "op_b", "sub_a"):
        status, _ = await api.call("GET", f"{V1}/agreements", who)
        assert status == 403


async def test_the_role_filter_is_checked(api: Api) -> None:
    status, problem = await api.call("GET", f"{BETA}/agreements?role=owner", "op_b")
    assert status == 400
    assert problem["errors"][0]["field"] == "role"


async def test_without_the_service_the_routes_answer_503() -> None:
    registry = Registry(InMemoryRegistryStore())
    keys = await seed(registry)
    async with TestClient(TestServer(build_api(registry))) as client:
        headers = {"Authorization": f"Bearer {keys['op_a']}"}
        async with client.get(f"{ACME}/offers", headers=headers) as response:
            assert response.status == 503
