"""Every tenant-scoped route of the API, called from the other side.

The API is wired whole over in-memory stores (registry, subscriptions, processing register,
consents, residents' tokens, erasure, processing log, sharing, data requests, aggregates, dead
letters, device health, subscription status) and acme holds one of everything. For each route
under ``/tenants/{tenant}``, with acme's real ids and a body acme's own key gets through:

- beta's operator and subscriber keys are refused (403 or 404) and read nothing of acme's;
- beta's admin key is refused where residents' data are at stake (links, consents, tokens,
  erasure, the processing log, processing activities), the documented exceptions to an admin
  key's reach;
- acme's state is what it was (every list an acme admin reads);
- and then acme's own key succeeds with the very same request, which shows the refusal was the
  boundary's, not a bad body or a wrong id.

A route added to the table without a request here fails ``test_every_tenant_route_is_tried``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.data_request import DataRequestSpec
from cityhub.schemas.deadletter import DeadLetter
from cityhub.schemas.errors import Reason
from cityhub.schemas.health_settings import HealthSettings
from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec, Role, TenantSpec
from cityhub.schemas.settings import Settings
from cityhub.streams.aggregation.memory import InMemoryAggregates
from cityhub.streams.aggregation.query import QueryLimits
from cityhub.streams.api.aggregates import AGGREGATES_KEY
from cityhub.streams.api.app import build_api
from cityhub.streams.api.dead_letters import DEAD_LETTERS_KEY
from cityhub.streams.api.device_health import DEVICE_HEALTH_KEY
from cityhub.streams.api.resident_tokens import ResidentServices
from cityhub.streams.api.routes import ROUTES, Route
from cityhub.streams.api.subscription_status import SUBSCRIPTION_STATUS_KEY
from cityhub.streams.deadletters.view import DeadLetterView
from cityhub.streams.delivery.status_view import SubscriptionStatusView
from cityhub.streams.health.queries import DeviceHealthQueries
from cityhub.streams.health.store import InMemoryDeviceHealthStore
from cityhub.streams.opendata.requests import DataRequests
from cityhub.streams.opendata.requests_store import InMemoryDataRequestStore
from cityhub.streams.privacy.device_observations import InMemoryObservations
from cityhub.streams.privacy.erasure import Erasure
from cityhub.streams.privacy.keys_store import InMemorySubjectKeyStore
from cityhub.streams.privacy.log_index import ProcessingLogIndex
from cityhub.streams.privacy.log_service import ProcessingLogQueries
from cityhub.streams.privacy.resident_token_service import ResidentTokens, TokenSpec
from cityhub.streams.privacy.resident_tokens import InMemoryResidentTokenStore
from cityhub.streams.privacy.subject_access import MemoryLog, SubjectAccess
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.sharing.service import Sharing
from cityhub.streams.sharing.store import InMemoryAgreementStore, InMemoryOfferStore
from cityhub.streams.sharing.usage_publisher import InMemoryUsageStore
from cityhub.streams.sharing.view import SharingView
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore

from .test_api_quotas import HeldStreams
from .test_api_support import public_resolver
from .test_consent_support import SUBJECT, SYSTEM, build_world
from .test_dead_letters_api import Source

V1 = "/api/v1"
BASE = "urn:cityhub:processing-activity:"
SECRET_NAME = "Acme private thermometer"
"""The name of acme's device: no answer to another tenant may carry it."""
LIMITS = QueryLimits(60, 3600, 86400, 10_000, 1000, 5.0, 2)


@dataclass
class World:
    client: TestClient[Any, Any]
    keys: dict[str, str]
    ids: dict[str, str]
    """acme's resources by placeholder: token, offer, agreement, request, letter."""

    async def call(self, method: str, path: str, who: str, body: Any = None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {self.keys[who]}"}
        kw: dict[str, Any] = {}
        if isinstance(body, str):
            headers["Content-Type"] = "text/csv"
            kw["data"] = body.encode()
        elif body is not None:
            kw["json"] = body
        async with self.client.request(method, path, headers=headers, **kw) as response:
            if response.content_type == "text/event-stream":
                return response.status, ""  # a live stream: open, its status is the answer
            return response.status, await response.text()


@asynccontextmanager
async def world() -> AsyncIterator[World]:
    store = InMemoryRegistryStore()
    keys_store = InMemorySubjectKeyStore()
    registry = Registry(store, subject_keys=keys_store)
    built = await build_world(registry)
    keys = dict(built.keys)
    await registry.create_tenant(SYSTEM, TenantSpec(id="gamma", name="Gamma"))
    await registry.create_type(SYSTEM, "gamma", DeviceTypeSpec(id="th", name="Thermo"))
    for name, tenant, role in (("admin_b", "beta", Role.ADMIN), ("op_c", "gamma", Role.OPERATOR)):
        keys[name] = (await registry.create_key(SYSTEM, tenant, role, name))[1]
    await registry.create_type(SYSTEM, "acme", DeviceTypeSpec(id="spare", name="Spare"))
    await registry.create_device(
        SYSTEM, "acme", DeviceSpec(id="a-1", name=SECRET_NAME, type="th", area="north")
    )
    subscriptions = Subscriptions(
        InMemorySubscriptionStore(), registry.view, resolver=public_resolver
    )
    tokens = ResidentTokens(InMemoryResidentTokenStore(), registry.view)
    log = MemoryLog()
    index = ProcessingLogIndex()
    index.mark_ready()
    view = SharingView()
    sharing = Sharing(
        InMemoryOfferStore(view=view.offers),
        InMemoryAgreementStore(view=view.agreements),
        registry.view,
        built.register.view,
        usage_of=InMemoryUsageStore().view.of,
    )
    requests = DataRequests(
        InMemoryDataRequestStore(), registry.view, datasets={"air-quality", "noise"}
    )
    live = HeldStreams(Settings())
    app = build_api(
        registry,
        subscriptions=subscriptions,
        live=live,
        processing=built.register,
        consents=built.consents,
        erasure=Erasure(
            registry, keys_store, consents=built.consents, log_writer=log, tokens=tokens
        ),
        processing_log=ProcessingLogQueries(index, registry.view, built.register.view),
        residents=ResidentServices(
            tokens=tokens,
            access=SubjectAccess(
                registry.view,
                base_uri=BASE,
                observations=InMemoryObservations(),
                keys=keys_store.view,
                log=log,
            ),
            oidc=None,
        ),
        sharing=sharing,
        data_requests=requests,
    )
    letters = DeadLetterView(registry.view, per_tenant=50)
    letter = DeadLetter.of(
        stage="normalise",
        reason=Reason.SCHEMA_MISMATCH,
        detail="no temperature",
        failed_at="2026-12-05T10:00:00.000Z",
        payload=SECRET_NAME.encode(),
        max_payload_bytes=1024,
        device="a-1",
    )
    letters.add(letter.to_json(), partition=0, offset=0)
    app[DEAD_LETTERS_KEY] = Source(letters)
    app[AGGREGATES_KEY] = InMemoryAggregates(LIMITS, partitions=2)
    app[DEVICE_HEALTH_KEY] = DeviceHealthQueries(
        store.view, InMemoryDeviceHealthStore().view, HealthSettings()
    )
    app[SUBSCRIPTION_STATUS_KEY] = SubscriptionStatusView()
    async with TestClient(TestServer(app)) as client:
        w = World(client, keys, {"letter": "0-0"})
        for sub in (HOOK, LIVE):
            status, text = await w.call("POST", f"{V1}/tenants/acme/subscriptions", "sub_a", sub)
            assert status == 201, text
        token, _ = await tokens.issue(SYSTEM, "acme", SUBJECT, TokenSpec(name="phone"))
        w.ids["token"] = token.id
        for tenant, who, offer in (("acme", "op_a", "temps"), ("gamma", "op_c", "parks")):
            status, text = await w.call("POST", f"{V1}/tenants/{tenant}/offers", who, _offer(offer))
            assert status == 201, text
        status, text = await w.call("POST", f"{V1}/tenants/gamma/agreements", "op_c", ASK)
        assert status == 201, text
        w.ids["agreement"] = orjson.loads(text)["id"]
        spec = DataRequestSpec(title="Trees", data="Tree positions", purpose="Shade maps")
        request = await requests.file(spec, "192.0.2.1")
        w.ids["request"] = request.id
        try:
            yield w
        finally:
            live.release.set()
    await store.stop()


def _offer(offer_id: str) -> dict[str, Any]:
    return {
        "id": offer_id,
        "title": f"Offer {offer_id}",
        "description": "Every thermometer",
        "selection": {"device_types": ["th"]},
        "kinds": ["observations"],
        "purposes": ["heat plan"],
        "licence": "CC-BY-4.0",
    }


HOOK = {
    "id": "hook",
    "name": "Hook",
    "filter": {"quantities": ["temperature"]},
    "delivery": {"kind": "webhook", "url": "https://hooks.example.com/in"},
}
LIVE = {"id": "live", "name": "Live", "delivery": {"kind": "sse"}}
ASK = {"offer": "acme/temps", "purpose": "heat plan", "ends_at": "2030-01-01T00:00:00Z"}
ACTIVITY = {
    "slug": "heat",
    "name": "Heat",
    "purpose": "Plan against heat.",
    "legal_basis": "PublicTask",
    "personal_data_categories": ["indoor air"],
    "retention": "P1Y",
    "controller": "Municipality of Example",
    "recipients": ["Energy desk"],
    "valid_from": "2026-01-01T00:00:00Z",
}

Setup = Callable[[World], Awaitable[None]]


@dataclass(frozen=True)
class Request:
    """One call of a route with acme's ids: the body, the acme key that gets through, and what
    acme does first for it to (an agreement approved before it is revoked)."""

    body: Any = None
    own: str = "op_a"
    setup: Setup | None = None


async def _approved(w: World) -> None:
    path = f"{V1}/tenants/acme/agreements/{w.ids['agreement']}/approve"
    assert (await w.call("POST", path, "op_a", {"reason": "ok"}))[0] == 200


async def _consented(w: World) -> None:
    path = f"{V1}/tenants/acme/data-subjects/{SUBJECT}/consents/energy/give"
    assert (await w.call("POST", path, "op_a", {"evidence": "signed form"}))[0] in (200, 201)


SUB = Request(own="sub_a")


TYPE = {"id": "spare", "name": "Spare, renamed"}
REQUESTS: dict[tuple[str, str], Request] = {
    ("GET", "/tenants/{tenant}/device-types"): Request(),
    ("POST", "/tenants/{tenant}/device-types"): Request({"id": "new", "name": "New"}),
    ("GET", "/tenants/{tenant}/device-types/{id}"): Request(),
    ("PUT", "/tenants/{tenant}/device-types/{id}"): Request(TYPE),
    ("DELETE", "/tenants/{tenant}/device-types/{id}"): Request(),
    ("GET", "/tenants/{tenant}/devices"): Request(),
    ("POST", "/tenants/{tenant}/devices"): Request({"id": "new", "name": "N", "type": "th"}),
    ("POST", "/tenants/{tenant}/devices/_import"): Request("id,name,type\nnew,N,th\n"),
    ("GET", "/tenants/{tenant}/devices/{id}"): Request(),
    ("PUT", "/tenants/{tenant}/devices/{id}"): Request({"id": "a-1", "name": "X", "type": "th"}),
    ("PUT", "/tenants/{tenant}/devices/{id}/data-subject"): Request({"data_subject": SUBJECT}),
    ("DELETE", "/tenants/{tenant}/devices/{id}/data-subject"): Request(),
    ("DELETE", "/tenants/{tenant}/devices/{id}"): Request(),
    ("GET", "/tenants/{tenant}/subscriptions"): SUB,
    ("POST", "/tenants/{tenant}/subscriptions"): Request({**HOOK, "id": "hook2"}, "sub_a"),
    ("GET", "/tenants/{tenant}/subscriptions/{id}"): SUB,
    ("DELETE", "/tenants/{tenant}/subscriptions/{id}"): SUB,
    ("POST", "/tenants/{tenant}/subscriptions/{id}/pause"): SUB,
    ("POST", "/tenants/{tenant}/subscriptions/{id}/resume"): SUB,
    ("POST", "/tenants/{tenant}/subscriptions/{id}/replay"): Request({"from_offset": 0}, "sub_a"),
    ("GET", "/tenants/{tenant}/subscriptions/{id}/status"): SUB,
    ("GET", "/tenants/{tenant}/subscriptions/{id}/events"): SUB,
    ("GET", "/tenants/{tenant}/aggregates"): Request(),
    ("POST", "/tenants/{tenant}/processing-activities"): Request(ACTIVITY, own="admin"),
    ("PUT", "/tenants/{tenant}/processing-activities/{slug}"): Request(
        {k: v for k, v in ACTIVITY.items() if k != "slug"}, own="admin"
    ),
    ("POST", "/tenants/{tenant}/processing-activities/{slug}/end"): Request(
        {"valid_to": "2030-01-01T00:00:00Z"}, own="admin"
    ),
    ("GET", "/tenants/{tenant}/processing-log"): Request(own="admin"),
    ("POST", "/tenants/{tenant}/data-subjects/{subject}/erasure"): Request(own="admin"),
    ("GET", "/tenants/{tenant}/data-subjects/{subject}/consents"): Request(),
    ("GET", "/tenants/{tenant}/data-subjects/{subject}/consents/{activity}"): Request(
        setup=_consented
    ),
    ("POST", "/tenants/{tenant}/data-subjects/{subject}/consents/{activity}/give"): Request(
        {"evidence": "signed form"}
    ),
    ("POST", "/tenants/{tenant}/data-subjects/{subject}/consents/{activity}/withdraw"): Request(
        {"evidence": "by phone"}, setup=_consented
    ),
    ("POST", "/tenants/{tenant}/data-subjects/{subject}/tokens"): Request({"name": "tablet"}),
    ("GET", "/tenants/{tenant}/data-subjects/{subject}/tokens"): Request(),
    ("DELETE", "/tenants/{tenant}/data-subjects/{subject}/tokens/{id}"): Request(),
    ("POST", "/tenants/{tenant}/data-requests/{id}/answers"): Request({"dataset": "noise"}),
    ("GET", "/tenants/{tenant}/offers"): Request(),
    ("POST", "/tenants/{tenant}/offers"): Request(_offer("more")),
    ("GET", "/tenants/{tenant}/offers/{offer}"): Request(),
    ("PUT", "/tenants/{tenant}/offers/{offer}"): Request(_offer("temps")),
    ("POST", "/tenants/{tenant}/offers/{offer}/withdraw"): Request(),
    ("GET", "/tenants/{tenant}/agreements"): Request(),
    ("POST", "/tenants/{tenant}/agreements"): Request(
        {"offer": "gamma/parks", "purpose": "heat plan", "ends_at": "2030-01-01T00:00:00Z"}
    ),
    ("GET", "/tenants/{tenant}/agreements/{agreement}"): Request(),
    ("POST", "/tenants/{tenant}/agreements/{agreement}/approve"): Request({"reason": "ok"}),
    ("POST", "/tenants/{tenant}/agreements/{agreement}/reject"): Request({"reason": "no"}),
    ("POST", "/tenants/{tenant}/agreements/{agreement}/revoke"): Request(
        {"reason": "no"}, setup=_approved
    ),
    ("GET", "/tenants/{tenant}/devices/{id}/health"): Request(),
    ("GET", "/tenants/{tenant}/device-health"): Request(),
    ("GET", "/tenants/{tenant}/dead-letters"): Request(),
    ("GET", "/tenants/{tenant}/dead-letters/{letter}"): Request(),
}
"""Every tenant-scoped route, with a request acme's own key gets through."""

QUERIES = {
    "/tenants/{tenant}/aggregates": "?deviceId=a-1&from=2026-12-05T00:00:00Z"
    "&to=2026-12-05T01:00:00Z",
}

RESIDENTS_DATA = ("/data-subject", "/processing-activities", "/processing-log")
"""Paths an admin key of another tenant may not reach either (docs/security.md)."""


def _path(route: Route, ids: dict[str, str]) -> str:
    """The route's path with acme's ids."""
    path = route.path
    family_id = {
        "/subscriptions/{id}/events": "live",
        "/device-types/": "spare",
        "/devices/{id}/data-subject": "air-1",
        "/devices/": "a-1",
        "/subscriptions/": "hook",
        "/tokens/": ids.get("token", ""),
        "/data-requests/": ids.get("request", ""),
    }
    for family, value in family_id.items():
        if family in path or family + "{id}" in path:
            path = path.replace("{id}", value)
    path = (
        path.replace("{tenant}", "acme")
        .replace("{subject}", SUBJECT)
        .replace("{activity}", "energy")
        .replace("{slug}", "energy")
        .replace("{offer}", "temps")
        .replace("{agreement}", ids.get("agreement", ""))
        .replace("{letter}", ids.get("letter", ""))
    )
    assert "{" not in path, path
    return V1 + path + QUERIES.get(route.path, "")


TENANT_ROUTES = [r for r in ROUTES if r.path.startswith("/tenants/{tenant}")]
LISTS = (
    "device-types",
    "devices",
    "subscriptions",
    "offers",
    "agreements",
    "dead-letters",
    f"data-subjects/{SUBJECT}/consents",
    f"data-subjects/{SUBJECT}/tokens",
)


async def _acme_state(w: World) -> list[tuple[int, str]]:
    """Everything acme's admin reads in its lists, and the register of activities."""
    state = [await w.call("GET", f"{V1}/tenants/acme/{name}", "admin") for name in LISTS]
    state.append(await w.call("GET", f"{V1}/processing-activities?tenant=acme", "admin"))
    return state


def test_every_tenant_route_is_tried() -> None:
    routes = {(r.method, r.path) for r in TENANT_ROUTES}
    assert routes - set(REQUESTS) == set(), "a tenant route without a request here"
    assert set(REQUESTS) - routes == set(), "a request here for no route"


@pytest.mark.parametrize(
    "route",
    TENANT_ROUTES,
    ids=lambda r: f"{r.method} {r.path}",
)
async def test_the_other_tenant_is_refused_and_acme_gets_through(route: Route) -> None:
    request = REQUESTS[(route.method, route.path)]
    async with world() as w:
        path = _path(route, w.ids)
        body = request.body(w) if callable(request.body) else request.body
        if request.setup is not None:
            await request.setup(w)
        before = await _acme_state(w)
        foreign = ["op_b", "sub_b"]
        if any(part in route.path for part in RESIDENTS_DATA):
            foreign.append("admin_b")
        for who in foreign:
            status, text = await w.call(route.method, path, who, body)
            assert status in (403, 404), (who, status, text)
            assert SECRET_NAME not in text
            assert SUBJECT not in text.replace(path, "")
        assert await _acme_state(w) == before, "the other tenant changed acme's state"
        status, text = await w.call(route.method, path, request.own, body)
        assert status < 300, (request.own, status, text)
