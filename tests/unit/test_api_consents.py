"""Consent records through the tenant's side of the API, over in-memory stores: given,
withdrawn and given again on a resident's documented behalf, each answer with the hash chain;
who may (the tenant's operator and admin keys; not its subscriber keys, nor any key of another
tenant, nor no key); the activity and subject rules as problem documents naming the field;
hostile evidence; and the OpenAPI document."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.consent import canonical_json
from cityhub.streams.api.app import build_api

from .test_api_support import APP_KEY
from .test_consent_support import SUBJECT, UNLINKED, World, build_world

BASE = f"/api/v1/tenants/acme/data-subjects/{SUBJECT}/consents"
EVIDENCE = {"evidence": "signed form 2026-117"}


class Api:
    def __init__(self, client: TestClient[Any, Any], world: World) -> None:
        self.client = client
        self.world = world

    async def call(
        self, method: str, path: str, who: str | None = "op_a", body: Any = None
    ) -> tuple[int, Any]:
        headers = {}
        if who is not None:
            headers["Authorization"] = f"Bearer {self.world.keys[who]}"
        async with self.client.request(method, path, headers=headers, json=body) as response:
            text = await response.text()
            for secret in self.world.keys.values():
                assert secret not in text
            assert APP_KEY.lower() not in text.lower()
            return response.status, await response.json(content_type=None)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    world = await build_world()
    app = build_api(world.registry, processing=world.register, consents=world.consents)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, world)


def _chain_holds(doc: dict[str, Any]) -> None:
    """The chain in an answer checks out by the documented arithmetic alone."""
    previous = None
    for entry in doc["history"]:
        body = {k: v for k, v in entry.items() if k not in ("prev_hash", "hash")}
        digest = hashlib.sha256(entry["prev_hash"].encode() + canonical_json(body)).hexdigest()
        assert digest == entry["hash"]
        if previous is not None:
            assert entry["prev_hash"] == previous
        previous = entry["hash"]
    assert doc["head"] == previous
    assert doc["verified"] == {"ok": True, "broken_at": None, "reason": None}


async def test_given_withdrawn_and_given_again_on_behalf(api: Api) -> None:
    notice = {"uri": "https://example.nl/notices/energy", "version": "3", "language": "nl"}
    status, doc = await api.call("POST", f"{BASE}/energy/give", body={**EVIDENCE, "notice": notice})
    assert status == 200, doc
    assert (doc["status"], doc["active"], doc["legal_basis"]) == ("ConsentGiven", True, "Consent")
    assert doc["conforms_to"] == "https://w3id.org/dpv/schema/dpv-27560#record"
    assert doc["processing_activity"] == {
        "id": "urn:cityhub:processing-activity:acme:energy",
        "slug": "energy",
    }
    entry = doc["history"][0]
    assert entry["collection_method"] == "tenant-on-behalf"
    assert entry["evidence"] == EVIDENCE["evidence"]
    assert entry["acting_key_id"] == api.world.principal("op_a").key_id
    assert entry["notice"] == {**notice, "sha256": None}
    _chain_holds(doc)
    head = doc["head"]
    # Again: nothing written, the same record.
    status, again = await api.call("POST", f"{BASE}/energy/give", body=EVIDENCE)
    assert (status, again["head"]) == (200, head)
    status, doc = await api.call(
        "POST", f"{BASE}/energy/withdraw", "admin", body={**EVIDENCE, "reason": "moving"}
    )
    assert (status, doc["status"], doc["active"]) == (200, "ConsentWithdrawn", False)
    status, doc = await api.call("POST", f"{BASE}/energy/give", body=EVIDENCE)
    assert [e["status"] for e in doc["history"]] == [
        "ConsentGiven",
        "ConsentWithdrawn",
        "RenewedConsentGiven",
    ]
    assert doc["history"][1]["prev_hash"] == head
    _chain_holds(doc)
    status, listed = await api.call("GET", BASE, "admin")
    assert status == 200
    assert [d["id"] for d in listed["items"]] == [doc["id"]]
    _chain_holds(listed["items"][0])
    status, one = await api.call("GET", f"{BASE}/energy")
    assert (status, one) == (200, doc)
    assert len(api.world.store.log) == 3


async def test_who_may_not(api: Api) -> None:
    await api.call("POST", f"{BASE}/energy/give", body=EVIDENCE)
    for method, path in (
        ("GET", BASE),
        ("GET", f"{BASE}/energy"),
        ("POST", f"{BASE}/energy/give"),
        ("POST", f"{BASE}/energy/withdraw"),
    ):
        body = EVIDENCE if method == "POST" else None
        status, doc = await api.call(method, path, None, body)
        assert status == 401, (path, doc)
        status, doc = await api.call(method, path, "sub_a", body)
        assert status == 403, (path, doc)
        # Another tenant's keys, its admin's too, find nothing here.
        for who in ("op_b", "sub_b"):
            status, doc = await api.call(method, path, who, body)
            assert status == 404, (who, path, doc)
            assert SUBJECT not in doc["detail"]
            assert "errors" not in doc or all(SUBJECT not in e["message"] for e in doc["errors"])
    # An admin key of acme is no key of beta.
    status, _ = await api.call(
        "GET", "/api/v1/tenants/beta/data-subjects/res-beta0001/consents", "admin"
    )
    assert status == 404
    status, _ = await api.call("GET", "/api/v1/tenants/nope/data-subjects/res-x0000000/consents")
    assert status == 404
    assert len(api.world.store.log) == 1


async def test_rules_answered_as_problems_naming_the_field(api: Api) -> None:
    status, doc = await api.call("POST", f"{BASE}/energy/give", body={})
    assert (status, doc["errors"][0]["field"]) == (400, "evidence")
    for slug, field in (
        ("parking", "legal_basis"),
        ("ended", "valid_to"),
        ("later", "valid_from"),
        ("nope", "activity"),
    ):
        status, doc = await api.call("POST", f"{BASE}/{slug}/give", body=EVIDENCE)
        assert (status, [e["field"] for e in doc["errors"]]) == (400, [field]), slug
    status, doc = await api.call(
        "POST", f"/api/v1/tenants/acme/data-subjects/{UNLINKED}/consents/energy/give", body=EVIDENCE
    )
    assert status == 404
    assert UNLINKED not in doc["detail"]
    status, doc = await api.call(
        "GET", "/api/v1/tenants/acme/data-subjects/123456782/consents", "op_a"
    )
    assert (status, doc["errors"][0]["field"]) == (400, "data_subject")
    assert "123456782" not in doc["detail"]
    status, doc = await api.call("POST", f"{BASE}/energy/withdraw", body=EVIDENCE)
    assert status == 404
    status, doc = await api.call("GET", f"{BASE}/energy")
    assert status == 404
    status, doc = await api.call(
        "POST", f"{BASE}/energy/give", body={**EVIDENCE, "notice": {"version": "1"}}
    )
    assert (status, doc["errors"][0]["field"]) == (400, "notice")
    status, doc = await api.call("POST", f"{BASE}/energy/give", body={**EVIDENCE, "extra": 1})
    assert status == 400
    assert api.world.store.log == []


@pytest.mark.parametrize(
    "evidence",
    [
        "x" * 501,
        "two\nlines",
        "\x1b[31mred",
        "nul\x00",
        "right-to-left \u202eoverride",
        "",
        ["not", "text"],
        12,
    ],
)
async def test_hostile_evidence_is_refused(api: Api, evidence: Any) -> None:
    status, doc = await api.call("POST", f"{BASE}/energy/give", body={"evidence": evidence})
    assert status == 400, doc
    assert doc["errors"][0]["field"] == "evidence"
    if isinstance(evidence, str) and len(evidence) > 3:
        assert evidence not in str(doc)
    assert api.world.store.log == []


async def test_long_unicode_evidence_is_kept_as_text(api: Api) -> None:
    evidence = "Formulier Nº 42 — 日本語 ✓ <b>&amp;</b> " * 10
    status, doc = await api.call("POST", f"{BASE}/energy/give", body={"evidence": evidence})
    assert status == 200, doc
    assert doc["history"][0]["evidence"] == evidence.strip()
    _chain_holds(doc)


async def test_a_lone_surrogate_never_reaches_the_chain(api: Api) -> None:
    async with api.client.post(
        f"{BASE}/energy/give",
        data=b'{"evidence": "bad \\ud800 half"}',
        headers={
            "Authorization": f"Bearer {api.world.keys['op_a']}",
            "Content-Type": "application/json",
        },
    ) as response:
        assert response.status in (400, 400)
    assert api.world.store.log == []


async def test_the_routes_are_documented(api: Api) -> None:
    async with api.client.get("/api/v1/openapi.json") as response:
        doc = await response.json()
    paths = doc["paths"]
    base = "/tenants/{tenant}/data-subjects/{subject}/consents"
    assert paths[base]["get"]["operationId"] == "listConsents"
    give = paths[base + "/{activity}/give"]["post"]
    assert give["operationId"] == "giveConsent"
    ref = give["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(schema["properties"]) == {"evidence", "notice"}
    assert paths[base + "/{activity}/withdraw"]["post"]["operationId"] == "withdrawConsent"


async def test_without_the_service_the_routes_answer_503() -> None:
    world = await build_world()
    app = build_api(world.registry)
    async with TestClient(TestServer(app)) as client:
        api = Api(client, world)
        status, doc = await api.call("GET", BASE)
        assert status == 503, doc
