"""Residents' own access through the API (issue 10, item 5), over in-memory stores.

Three residents: Alice and Bob of tenant acme, and a resident of tenant beta whose pseudonym is
the same as Alice's (two tenants' equal ids are two people). Every ``/me`` route is called as
each of them and must show only what is their own; Alice's device also holds readings from
before it was linked to her and from its earlier holder (Bob), which she must never see.
Revoked, unknown and API-key credentials get 401, and a resident token opens no other route.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.aggregate import Aggregate, aggregate_id
from cityhub.schemas.processing import ActivitySpec
from cityhub.schemas.processing_log import processing_record
from cityhub.schemas.registry import Classification, DeviceSpec, DeviceTypeSpec
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.aggregation.memory import InMemoryAggregates
from cityhub.streams.aggregation.query import QueryLimits, format_ms
from cityhub.streams.api.aggregates import AGGREGATES_KEY
from cityhub.streams.api.app import build_api
from cityhub.streams.api.openapi import build_openapi
from cityhub.streams.api.resident_tokens import ResidentServices
from cityhub.streams.privacy.consent_service import Consents
from cityhub.streams.privacy.consent_store import InMemoryConsentStore
from cityhub.streams.privacy.device_observations import InMemoryObservations
from cityhub.streams.privacy.erasure import Erasure
from cityhub.streams.privacy.keys_store import InMemorySubjectKeyStore
from cityhub.streams.privacy.log_index import ProcessingLogIndex
from cityhub.streams.privacy.log_service import ProcessingLogQueries
from cityhub.streams.privacy.resident_token_service import ResidentTokens, TokenSpec
from cityhub.streams.privacy.resident_tokens import InMemoryResidentTokenStore
from cityhub.streams.privacy.sealing import seal
from cityhub.streams.privacy.service import ProcessingRegister
from cityhub.streams.privacy.store import InMemoryRegisterStore
from cityhub.streams.privacy.subject_access import MemoryLog, SubjectAccess
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore

from .test_api_support import seed
from .test_resident_oidc import EC_KEY, Provider, provider, signed, verifier

__all__ = ["provider"]  # the loopback identity provider, a fixture of the OIDC tests

V1 = "/api/v1"
ALICE = "res-alice-0001"
BOB = "res-bob-000002"
SYSTEM = Principal.system()
BASE = "urn:cityhub:processing-activity:"
ACCESS_ID = "urn:cityhub:processing-activity:cityhub:subject-access"
NOW = time.time()
LINKED_AT = NOW - 2 * 3600
"""When the registry linked the devices (its clock): windows before it are not the resident's."""


@dataclass
class World:
    client: TestClient[Any, Any]
    keys: dict[str, str]
    tokens: dict[str, str]
    """Resident secrets: alice, bob (acme), beta (beta's resident with Alice's pseudonym)."""
    log: MemoryLog
    index: ProcessingLogIndex
    registry: Registry
    resident_tokens: ResidentTokens
    secrets_seen: list[str] = field(default_factory=list)

    async def call(
        self, method: str, path: str, who: str | None, **kw: Any
    ) -> tuple[int, Any, Any]:
        """(status, JSON body, headers) as a resident (``alice``...), a key (``op_a``...), a
        raw bearer (``raw:<token>``) or nobody (None)."""
        headers = dict(kw.pop("headers", {}))
        if who is not None:
            secret = who[4:] if who.startswith("raw:") else self.tokens.get(who) or self.keys[who]
            headers["Authorization"] = f"Bearer {secret}"
        async with self.client.request(method, V1 + path, headers=headers, **kw) as response:
            text = await response.text()
            for secret in (*self.tokens.values(), *self.keys.values()):
                if secret != (orjson.loads(text).get("secret") if text.startswith("{") else ""):
                    assert secret not in text, "a secret leaked into a response"
            doc = orjson.loads(text) if text else None
            return response.status, doc, response.headers


LIMITS = QueryLimits(60, 3600, 86400, 10_000, 1000, 5.0, 2)


def aggregate(device: str, tenant: str, start_ms: int, size: int) -> Aggregate:
    """A device's window as the window agent writes it."""
    return Aggregate(
        aggregate_id=aggregate_id("device", tenant, device, "co2", "ppm", size, start_ms * 1000),
        grouping="device",
        key=device,
        tenant=tenant,
        classification="personal",
        device_id=device,
        area=None,
        quantity="co2",
        unit="ppm",
        window_size=size,
        window_start=format_ms(start_ms),
        window_end=format_ms(start_ms + size * 1000),
        count=1,
        min=600.0,
        max=600.0,
        sum=600.0,
        mean=600.0,
        last=600.0,
        last_observed_at=format_ms(start_ms + 1000),
        last_event_id="e-0",
        revision=0,
    )


def observation(
    event_id: str,
    device: str,
    tenant: str,
    value: float,
    *,
    subject: str | None = None,
    key: Any = None,
    received_at: float = NOW - 60,
) -> bytes:
    """An observation as the normaliser writes it: sealed when the device has a subject."""
    doc: dict[str, Any] = {
        "event_id": event_id,
        "device_id": device,
        "tenant": tenant,
        "device_type": "air",
        "quantity": "co2",
        "field": "co2",
        "value": value,
        "unit": "ppm",
        "observed_at": rfc3339(received_at),
        "received_at": rfc3339(received_at),
        "location": None,
        "extra": {},
        "classification": "personal",
        "network": {"gateways": [{"id": "gw-1", "rssi": -80}]},
    }
    if subject is not None:
        doc["sealed"] = seal(
            key, {"value": value, "location": None, "extra": {}}, event_id=event_id
        )
        doc.update(value=None, data_subject=subject)
    return orjson.dumps(doc)


async def build_world(oidc_url: str | None = None) -> AsyncIterator[World]:
    registry_store = InMemoryRegistryStore()
    keys_store = InMemorySubjectKeyStore()
    registry = Registry(registry_store, clock=lambda: LINKED_AT, subject_keys=keys_store)
    api_keys = await seed(registry)
    personal = DeviceTypeSpec(id="air", name="Air", classification=Classification.PERSONAL)
    for tenant in ("acme", "beta"):
        await registry.create_type(SYSTEM, tenant, personal)
    for device, tenant, subject in (
        ("a-1", "acme", ALICE),
        ("a-2", "acme", BOB),
        ("b-1", "beta", ALICE),
    ):
        spec = DeviceSpec(id=device, name=device, type="air", data_subject=subject)
        await registry.create_device(SYSTEM, tenant, spec)
    alice_key = keys_store.view.current("acme", ALICE)
    bob_key = keys_store.view.current("acme", BOB)
    beta_key = keys_store.view.current("beta", ALICE)
    observations = InMemoryObservations()
    for device, value in (
        ("a-1", observation("e-before", "a-1", "acme", 400.0)),  # before the link: nobody's
        ("a-1", observation("e-bob", "a-1", "acme", 450.0, subject=BOB, key=bob_key)),
        ("a-1", observation("e-1", "a-1", "acme", 612.0, subject=ALICE, key=alice_key)),
        ("a-1", observation("e-2", "a-1", "acme", 615.0, subject=ALICE, key=alice_key)),
        ("a-2", observation("e-b1", "a-2", "acme", 700.0, subject=BOB, key=bob_key)),
        ("b-1", observation("e-x1", "b-1", "beta", 999.0, subject=ALICE, key=beta_key)),
    ):
        observations.add(device, value)
    # Alice's sealed value moved onto another event's record: it must not open.
    moved = orjson.loads(observation("e-1", "a-1", "acme", 612.0, subject=ALICE, key=alice_key))
    moved["event_id"] = "e-3"
    observations.add("a-1", orjson.dumps(moved))

    register = ProcessingRegister(InMemoryRegisterStore(), registry.view, base_uri=BASE)
    await register.create(
        SYSTEM,
        "acme",
        ActivitySpec(
            slug="air-research",
            name="Indoor air research",
            purpose="Study indoor air quality in social housing.",
            legal_basis="Consent",  # type: ignore[arg-type]
            personal_data_categories=["air"],
            retention="P1Y",
            controller="Municipality of Example",
            recipients=["University"],
            valid_from="2026-01-01T00:00:00Z",
        ),
    )
    consents = Consents(InMemoryConsentStore(), register.view, registry.view)
    log = MemoryLog()
    index = ProcessingLogIndex()
    for tenant, subject, recipient in (
        ("acme", ALICE, "Care provider for Alice"),
        ("acme", BOB, "Care provider for Bob"),
        ("beta", ALICE, "Beta's recipient"),
    ):
        index.add(
            processing_record(
                name="deliver",
                trace=None,
                parent_span_id=None,
                started=NOW - 30,
                ended=NOW - 29,
                ok=True,
                activity_id=f"{BASE}{tenant}:care",
                tenant=tenant,
                subject=subject,
                recipient=recipient,
                items=3,
                action="deliver",
            )
        )
    index.mark_ready()
    tokens = ResidentTokens(InMemoryResidentTokenStore(), registry.view)
    erasure = Erasure(registry, keys_store, consents=consents, log_writer=log, tokens=tokens)
    access = SubjectAccess(
        registry.view, base_uri=BASE, observations=observations, keys=keys_store.view, log=log
    )
    app = build_api(
        registry,
        processing=register,
        consents=consents,
        erasure=erasure,
        processing_log=ProcessingLogQueries(index, registry.view, register.view),
        residents=ResidentServices(
            tokens=tokens,
            access=access,
            oidc=None if oidc_url is None else verifier(oidc_url),
        ),
    )
    aggregates = InMemoryAggregates(LIMITS, partitions=2)
    for device, tenant, start, size in (
        ("a-1", "acme", NOW - 3 * 3600, 60),  # before the link: an earlier holder's
        ("a-1", "acme", LINKED_AT - 600, 3600),  # across the link: partly someone else's
        ("a-1", "acme", NOW - 3600, 60),
        ("a-2", "acme", NOW - 3600, 60),
        ("b-1", "beta", NOW - 3600, 60),
    ):
        aggregates.add(aggregate(device, tenant, int(start) * 1000, size))
    app[AGGREGATES_KEY] = aggregates
    secrets = {}
    for name, tenant, subject in (("alice", "acme", ALICE), ("bob", "acme", BOB)):
        secrets[name] = (await tokens.issue(SYSTEM, tenant, subject, TokenSpec()))[1]
    secrets["beta"] = (await tokens.issue(SYSTEM, "beta", ALICE, TokenSpec()))[1]
    async with TestClient(TestServer(app)) as client:
        yield World(client, api_keys, secrets, log, index, registry, tokens)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async for built in build_world():
        yield built


RESIDENT_READS = [
    "/me",
    "/me/devices",
    "/me/observations",
    "/me/aggregates",
    "/me/processing-log",
    "/me/consents",
    "/me/export",
]


async def test_who_am_i_and_my_devices(world: World) -> None:
    expected = {"alice": ("acme", ALICE, ["a-1"]), "bob": ("acme", BOB, ["a-2"])}
    expected["beta"] = ("beta", ALICE, ["b-1"])
    for who, (tenant, subject, devices) in expected.items():
        status, doc, _ = await world.call("GET", "/me", who)
        assert status == 200, doc
        assert doc == {
            "tenant": tenant,
            "subject": subject,
            "signed_in_with": "token",
            "devices": devices,
        }
        status, doc, _ = await world.call("GET", "/me/devices", who)
        assert [d["id"] for d in doc["items"]] == devices
        assert "app_key_sha256" not in doc["items"][0]


async def test_observations_are_only_mine_and_opened(world: World) -> None:
    status, doc, _ = await world.call("GET", "/me/observations", "alice")
    assert status == 200, doc
    assert sorted(i["value"] for i in doc["items"]) == [612.0, 615.0]
    assert {i["event_id"] for i in doc["items"]} == {"e-1", "e-2"}
    assert doc["unreadable"] == 1  # the value moved to another event's record
    assert "network" not in doc["items"][0]
    assert "sealed" not in doc["items"][0]
    status, doc, _ = await world.call("GET", "/me/observations", "bob")
    assert [i["value"] for i in doc["items"]] == [700.0]  # not his old readings on a-1
    status, doc, _ = await world.call("GET", "/me/observations", "beta")
    assert [i["value"] for i in doc["items"]] == [999.0]
    # Another resident's device is not found, never read.
    status, doc, _ = await world.call("GET", "/me/observations?deviceId=a-2", "alice")
    assert status == 404, doc
    status, doc, _ = await world.call("GET", "/me/observations?deviceId=b-1", "alice")
    assert status == 404, doc


async def test_every_read_of_personal_values_is_logged_first(world: World) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    await world.call("GET", "/me/observations", "alice", headers={"traceparent": traceparent})
    [record] = world.log.records
    assert (record.action, record.tenant, record.subject) == ("read", "acme", ALICE)
    assert record.activity_id == ACCESS_ID
    assert record.items == 2
    assert record.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    world.log.fail = True
    status, doc, _ = await world.call("GET", "/me/observations", "alice")
    assert status == 503, doc
    assert "612" not in orjson.dumps(doc).decode()


async def test_aggregates_only_of_my_devices_since_they_are_mine(world: World) -> None:
    status, doc, _ = await world.call("GET", "/me/aggregates", "alice")
    assert status == 200, doc
    assert [(w["device_id"], w["tenant"]) for w in doc["items"]] == [("a-1", "acme")]
    assert "sealed" in doc["note"]
    status, doc, _ = await world.call("GET", "/me/aggregates", "beta")
    assert [(w["device_id"], w["tenant"]) for w in doc["items"]] == [("b-1", "beta")]
    status, doc, _ = await world.call("GET", "/me/aggregates?deviceId=a-1", "bob")
    assert status == 404


async def test_the_processing_log_only_mine(world: World) -> None:
    seen = {}
    for who in ("alice", "bob", "beta"):
        status, doc, _ = await world.call("GET", "/me/processing-log", who)
        assert status == 200, doc
        seen[who] = [e["recipient"] for e in doc["items"]]
    assert seen == {
        "alice": ["Care provider for Alice"],
        "bob": ["Care provider for Bob"],
        "beta": ["Beta's recipient"],
    }


async def test_consents_given_and_withdrawn_by_the_resident_only_for_themself(
    world: World,
) -> None:
    give = "/me/consents/air-research/give"
    status, doc, _ = await world.call("POST", give, "alice", json={})
    assert status == 200, doc
    assert doc["active"] is True
    assert doc["verified"]["ok"] is True
    assert doc["history"][-1]["collection_method"] == "resident"
    status, doc, _ = await world.call("GET", "/me/consents", "bob")
    assert doc["items"] == []
    # beta's resident has the same pseudonym, but acme's activity is not beta's.
    status, doc, _ = await world.call("POST", give, "beta", json={})
    assert status in (404, 400), doc
    status, doc, _ = await world.call("GET", "/me/consents", "beta")
    assert doc["items"] == []
    status, doc, _ = await world.call(
        "POST", "/me/consents/air-research/withdraw", "alice", json={}
    )
    assert (status, doc["active"]) == (200, False)


async def test_the_export_holds_everything_of_mine_and_nothing_else(world: World) -> None:
    await world.call("POST", "/me/consents/air-research/give", "alice", json={})
    status, doc, headers = await world.call("GET", "/me/export", "alice")
    assert status == 200, doc
    assert "attachment" in headers["Content-Disposition"]
    assert [d["id"] for d in doc["devices"]] == ["a-1"]
    assert sorted(i["value"] for i in doc["observations"]["items"]) == [612.0, 615.0]
    assert [(w["device_id"], w["tenant"]) for w in doc["aggregates"]["items"]] == [("a-1", "acme")]
    assert [c["processing_activity"]["slug"] for c in doc["consents"]] == ["air-research"]
    assert [e["recipient"] for e in doc["processing_log"]["items"]] == ["Care provider for Alice"]
    assert len(doc["tokens"]) == 1
    assert "secret_sha256" not in doc["tokens"][0]
    text = orjson.dumps(doc).decode()
    for foreign in (BOB, "a-2", "b-1", "700.0", "999.0", "450.0", "400.0", "Beta's"):
        assert foreign not in text, foreign
    assert [r.action for r in world.log.records] == ["export"]
    assert world.log.records[0].items == 3  # two observations and one window


async def test_erasure_needs_confirmation_and_ends_my_access(world: World) -> None:
    status, doc, _ = await world.call("POST", "/me/erasure", "alice", json={"confirm": False})
    assert status == 400, doc
    status, doc, _ = await world.call("POST", "/me/erasure", "alice", json={})
    assert status == 400, doc
    await world.call("POST", "/me/consents/air-research/give", "alice", json={})
    status, doc, _ = await world.call("POST", "/me/erasure", "alice", json={"confirm": True})
    assert status == 200, doc
    assert doc["devices_unlinked"] == ["a-1"]
    assert doc["keys_shredded"] >= 1
    assert doc["consents_withdrawn"] == 1
    assert doc["tokens_removed"] == 1
    assert ALICE not in orjson.dumps(doc).decode()
    status, _, _ = await world.call("GET", "/me", "alice")
    assert status == 401
    # Bob, and beta's resident of the same pseudonym, are untouched.
    status, doc, _ = await world.call("GET", "/me/observations", "bob")
    assert [i["value"] for i in doc["items"]] == [700.0]
    status, doc, _ = await world.call("GET", "/me/observations", "beta")
    assert [i["value"] for i in doc["items"]] == [999.0]
    assert world.registry.view.devices_of_subject("beta", ALICE)


async def test_a_revoked_token_opens_nothing_from_the_next_request(world: World) -> None:
    status, _, _ = await world.call("GET", "/me", "alice")
    assert status == 200
    [token] = world.resident_tokens.view.of_subject("acme", ALICE)
    status, doc, _ = await world.call(
        "DELETE", f"/tenants/acme/data-subjects/{ALICE}/tokens/{token.id}", "op_a"
    )
    assert (status, doc["revoked_at"] is not None) == (200, True)
    for path in RESIDENT_READS:
        status, doc, headers = await world.call("GET", path, "alice")
        assert status == 401, (path, doc)
        assert headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", RESIDENT_READS)
@pytest.mark.parametrize(
    "who",
    [
        None,
        "op_a",
        "admin",
        "sub_a",
        "raw:chr_0123456789abcdef_unknown-secret-of-the-right-shape-000000",
        "raw:chr_not-a-token",
        "raw:" + "x" * 5000,
        "raw:eyJhbGciOiJub25lIn0.eyJzdWIiOiJyZXMtYWxpY2UtMDAwMSJ9.",
    ],
)
async def test_api_keys_and_unknown_tokens_are_401_on_every_route(
    world: World, path: str, who: str | None
) -> None:
    status, doc, _ = await world.call("GET", path, who)
    assert status == 401, doc
    assert ALICE not in orjson.dumps(doc).decode()
    assert world.log.records == []


async def test_writes_refuse_api_keys_too(world: World) -> None:
    for method, path, body in (
        ("POST", "/me/erasure", {"confirm": True}),
        ("POST", "/me/consents/air-research/give", {}),
        ("POST", "/me/consents/air-research/withdraw", {}),
    ):
        for who in ("op_a", "admin", None):
            status, _, _ = await world.call(method, path, who, json=body)
            assert status == 401
    assert world.registry.view.devices_of_subject("acme", ALICE)


async def test_two_credentials_are_a_400_whichever_they_are(world: World) -> None:
    # A review swapped the order of two residents' tokens and got the other tenant's subject:
    # which one counts would be a guess (a proxy or a log may guess otherwise).
    from multidict import CIMultiDict

    alice, beta = world.tokens["alice"], world.tokens["beta"]
    for headers in (
        CIMultiDict([("Authorization", f"Bearer {alice}"), ("Authorization", f"Bearer {beta}")]),
        CIMultiDict([("Authorization", f"Bearer {alice}"), ("X-API-Key", world.keys["op_a"])]),
    ):
        for method, path in (("GET", "/me"), ("POST", "/me/consents/air-research/withdraw")):
            async with world.client.request(method, V1 + path, headers=headers) as response:
                assert response.status == 400, path
                assert "once" in (await response.json())["detail"]
    assert world.log.records == []


async def test_a_resident_token_opens_no_other_route(world: World) -> None:
    for path in (
        "/tenants/acme/devices",
        "/tenants/acme/devices/a-1",
        f"/tenants/acme/data-subjects/{ALICE}/tokens",
        f"/tenants/acme/data-subjects/{ALICE}/consents",
        "/tenants",
    ):
        status, doc, _ = await world.call("GET", path, "alice")
        assert status == 401, (path, doc)


async def test_the_tenant_issues_lists_and_revokes(world: World) -> None:
    path = f"/tenants/acme/data-subjects/{ALICE}/tokens"
    status, doc, headers = await world.call("POST", path, "op_a", json={"name": "counter"})
    assert status == 201, doc
    assert doc["secret"].startswith(f"chr_{doc['id']}_")
    assert headers["Location"] == f"{V1}{path}/{doc['id']}"
    world.tokens["new"] = doc["secret"]
    assert (await world.call("GET", "/me", "new"))[1]["subject"] == ALICE
    status, listed, _ = await world.call("GET", path, "admin")
    assert status == 200
    assert all("secret" not in t and "secret_sha256" not in t for t in listed["items"])
    assert len(listed["items"]) == 2
    for who, expected in (("sub_a", 403), ("op_b", 404), ("sub_b", 404)):
        assert (await world.call("GET", path, who))[0] == expected
        assert (await world.call("POST", path, who, json={}))[0] == expected
    status, _, _ = await world.call(
        "POST", "/tenants/acme/data-subjects/res-nobody-01/tokens", "op_a", json={}
    )
    assert status == 404
    status, doc, _ = await world.call(
        "POST", "/tenants/acme/data-subjects/123456789/tokens", "op_a", json={}
    )
    assert status == 400
    # Only the request's own path (the problem's instance) holds it; no message repeats it.
    assert (
        "123456789" not in orjson.dumps({k: v for k, v in doc.items() if k != "instance"}).decode()
    )
    status, _, _ = await world.call(
        "DELETE", f"/tenants/beta/data-subjects/{ALICE}/tokens/{doc.get('id', 'x')}", "op_a"
    )
    assert status == 404


def test_the_openapi_document_names_the_resident_scheme() -> None:
    doc = build_openapi(max_body_bytes=1024, max_import_bytes=1024)
    me = doc["paths"]["/me/observations"]["get"]
    assert me["security"] == [{"resident": []}]
    assert "resident" in doc["components"]["securitySchemes"]
    tokens = doc["paths"]["/tenants/{tenant}/data-subjects/{subject}/tokens"]
    assert "security" not in tokens["post"]


async def test_an_identity_providers_token_opens_the_same_routes(
    provider: tuple[Provider, str],
) -> None:
    _, url = provider
    async for world in build_world(oidc_url=url):
        world.tokens["oidc"] = signed(EC_KEY, "ec-1", "ES256", sub=ALICE)
        status, doc, _ = await world.call("GET", "/me", "oidc")
        assert (status, doc["signed_in_with"], doc["devices"]) == (200, "oidc", ["a-1"])
        status, doc, _ = await world.call("GET", "/me/observations", "oidc")
        assert sorted(i["value"] for i in doc["items"]) == [612.0, 615.0]
        assert world.log.records[0].recipient == "data subject (oidc)"
        for hostile in (signed(sub=ALICE, aud="other"), signed(sub=ALICE, kid="nope")):
            world.tokens["hostile"] = hostile
            status, doc, _ = await world.call("GET", "/me", "hostile")
            assert status == 401, doc
        # An API key is no identity provider's token either.
        status, _, _ = await world.call("GET", "/me", "op_a")
        assert status == 401
