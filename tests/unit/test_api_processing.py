"""The register of processing activities through the API, over in-memory stores: public reads
without a key (JSON and HTML, filters, paging), writes by a tenant's operator or admin key, the
tenant boundary seen from the other side, versions that are never lost, escaping of hostile
names in the pages, the keyless rate limit and the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.settings import QuotaSettings
from cityhub.streams.api.app import build_api
from cityhub.streams.privacy.service import ProcessingRegister
from cityhub.streams.privacy.store import InMemoryRegisterStore
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore

from .test_api_support import seed

V1 = "/api/v1"
PUBLIC = f"{V1}/processing-activities"
PAGES = f"{V1}/processing-register"
ACME = f"{V1}/tenants/acme/processing-activities"
HOSTILE = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>"


@dataclass
class Api:
    client: TestClient[Any, Any]
    keys: dict[str, str]

    async def call(
        self, method: str, path: str, who: str | None = None, **kw: Any
    ) -> tuple[int, Any, Any]:
        """(status, JSON body or text, headers) of one request, as ``who`` (None: no key)."""
        headers = dict(kw.pop("headers", {}))
        if who is not None:
            headers["Authorization"] = f"Bearer {self.keys[who]}"
        async with self.client.request(method, path, headers=headers, **kw) as response:
            if response.content_type in {"application/json", "application/problem+json"}:
                return response.status, await response.json(content_type=None), response.headers
            return response.status, await response.text(), response.headers


@asynccontextmanager
async def running(
    *, quotas: QuotaSettings | None = None, register: bool = True
) -> AsyncIterator[Api]:
    store = InMemoryRegistryStore()
    registry = Registry(store)
    keys = await seed(registry)
    processing = (
        ProcessingRegister(
            InMemoryRegisterStore(), registry.view, base_uri="urn:cityhub:processing-activity:"
        )
        if register
        else None
    )
    app = build_api(registry, processing=processing, quotas=quotas)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, keys)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running() as started:
        yield started


def activity(slug: str = "parking", **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "slug": slug,
        "name": "Parking permits",
        "purpose": "Check that a parked car holds a permit.",
        "legal_basis": "PublicTask",
        "personal_data_categories": ["licence plate", "location"],
        "retention": "P30D",
        "controller": "Municipality of Example",
        "recipients": ["Parking enforcement"],
        "valid_from": "2026-01-01T00:00:00Z",
    }
    doc.update(fields)
    return doc


def update_of(doc: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {k: v for k, v in doc.items() if k != "slug"}
    body.update(fields)
    return body


async def test_created_by_an_operator_and_read_by_anyone(api: Api) -> None:
    status, doc, headers = await api.call("POST", ACME, "op_a", json=activity())
    assert status == 201, doc
    assert headers["Location"] == f"{PUBLIC}/acme/parking"
    assert doc["id"] == "urn:cityhub:processing-activity:acme:parking"
    assert doc["version"] == 1
    assert doc["legal_basis_iri"] == "https://w3id.org/dpv/legal/eu/gdpr#A6-1-e"
    status, read, _ = await api.call("GET", f"{PUBLIC}/acme/parking")
    assert status == 200
    assert read == doc
    assert read["earlier_versions"] == []
    status, listed, _ = await api.call("GET", PUBLIC)
    assert status == 200
    assert [a["id"] for a in listed["items"]] == [doc["id"]]
    assert "earlier_versions" not in listed["items"][0]


async def test_updates_make_versions_and_an_end_deletes_nothing(api: Api) -> None:
    await api.call("POST", ACME, "op_a", json=activity())
    body = update_of(activity(), retention="P14D", base_version=1)
    status, doc, _ = await api.call("PUT", f"{ACME}/parking", "op_a", json=body)
    assert status == 200, doc
    assert (doc["version"], doc["retention"]) == (2, "P14D")
    assert [v["version"] for v in doc["earlier_versions"]] == [1]
    assert doc["earlier_versions"][0]["retention"] == "P30D"
    # A stale base version: somebody changed it meanwhile.
    status, doc, _ = await api.call("PUT", f"{ACME}/parking", "op_a", json=body)
    assert status == 409
    assert doc["errors"][0]["field"] == "base_version"
    status, doc, _ = await api.call(
        "POST", f"{ACME}/parking/end", "admin", json={"valid_to": "2027-01-01T00:00:00Z"}
    )
    assert status == 200, doc
    assert (doc["version"], doc["valid_to"]) == (3, "2027-01-01T00:00:00.000Z")
    assert [v["version"] for v in doc["earlier_versions"]] == [2, 1]
    status, doc, _ = await api.call("GET", f"{PUBLIC}/acme/parking")
    assert doc["version"] == 3
    status, _, _ = await api.call("DELETE", f"{ACME}/parking", "admin")
    assert status == 405


async def test_filters_and_paging(api: Api) -> None:
    await api.call("POST", ACME, "op_a", json=activity("a1"))
    await api.call("POST", ACME, "op_a", json=activity("a2", legal_basis="Consent"))
    await api.call(
        "POST",
        f"{V1}/tenants/beta/processing-activities",
        "op_b",
        json=activity("b1", valid_to="2026-02-01T00:00:00Z"),
    )

    async def ids(query: str) -> list[str]:
        status, doc, _ = await api.call("GET", f"{PUBLIC}?{query}")
        assert status == 200, doc
        return [f"{a['tenant']}/{a['slug']}" for a in doc["items"]]

    assert await ids("") == ["acme/a1", "acme/a2", "beta/b1"]
    assert await ids("tenant=beta") == ["beta/b1"]
    assert await ids("legalBasis=Consent") == ["acme/a2"]
    assert await ids("legalBasis=https://w3id.org/dpv%23Consent") == ["acme/a2"]
    assert await ids("validAt=2026-03-01T00:00:00Z") == ["acme/a1", "acme/a2"]
    assert await ids("validAt=2026-01-15T00:00:00%2B01:00") == ["acme/a1", "acme/a2", "beta/b1"]
    status, page, headers = await api.call("GET", f"{PUBLIC}?limit=2")
    assert status == 200
    assert [a["slug"] for a in page["items"]] == ["a1", "a2"]
    assert 'rel="next"' in headers["Link"]
    _status, rest, _ = await api.call("GET", f"{PUBLIC}?limit=2&cursor={page['next_cursor']}")
    assert [a["slug"] for a in rest["items"]] == ["b1"]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("legalBasis=Whim", "legalBasis"),
        ("validAt=tomorrow", "validAt"),
        ("tenant=../x", "tenant"),
        ("limit=0", "limit"),
    ],
)
async def test_bad_filters_are_400_naming_the_parameter(api: Api, query: str, field: str) -> None:
    status, doc, _ = await api.call("GET", f"{PUBLIC}?{query}")
    assert status == 400
    assert [e["field"] for e in doc["errors"]] == [field]


async def test_bad_bodies_are_400_naming_the_field(api: Api) -> None:
    status, doc, _ = await api.call("POST", ACME, "op_a", json=activity(retention="a month"))
    assert status == 400
    assert [e["field"] for e in doc["errors"]] == ["retention"]
    status, doc, _ = await api.call(
        "POST", ACME, "op_a", json=activity(valid_to="2025-01-01T00:00:00Z")
    )
    assert status == 400
    assert [e["field"] for e in doc["errors"]] == ["valid_to"]
    status, doc, _ = await api.call("POST", ACME, "op_a", json=activity(name="x" * 100_000))
    assert status == 400
    assert "x" * 300 not in str(doc)


async def test_who_may_write(api: Api) -> None:
    status, _, headers = await api.call("POST", ACME, None, json=activity())
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = await api.call("POST", ACME, "sub_a", json=activity())
    assert status == 403
    status, _, _ = await api.call("POST", ACME, "op_a", json=activity())
    assert status == 201
    status, _, _ = await api.call("POST", ACME, "op_a", json=activity())
    assert status == 409
    status, _, _ = await api.call(
        "POST", f"{V1}/tenants/nope/processing-activities", "admin", json=activity()
    )
    assert status == 404
    # An admin key of another tenant does not: the register is its controller's declaration
    # (a review had beta's admin turn acme's consent-based activity into a public task).
    status, _, _ = await api.call(
        "POST", f"{V1}/tenants/beta/processing-activities", "admin", json=activity("by-admin")
    )
    assert status == 404
    await api.call("POST", f"{V1}/tenants/beta/processing-activities", "op_b", json=activity())
    beta = f"{V1}/tenants/beta/processing-activities"
    for method, path, body in (
        ("PUT", f"{beta}/parking", update_of(activity(), legal_basis="PublicTask")),
        ("POST", f"{beta}/parking/end", {}),
    ):
        status, _, _ = await api.call(method, path, "admin", json=body)
        assert status == 404, (method, path)


async def test_another_tenant_gets_404_and_changes_nothing(api: Api) -> None:
    """The tenant boundary from the other side: beta's operator cannot create, update or end
    acme's activities, and is told they are not found; anyone may still read them."""
    await api.call("POST", ACME, "op_a", json=activity())
    for method, path, body in (
        ("POST", ACME, activity("intruder")),
        ("PUT", f"{ACME}/parking", update_of(activity(), name="Taken over")),
        ("POST", f"{ACME}/parking/end", {}),
    ):
        status, doc, _ = await api.call(method, path, "op_b", json=body)
        assert status == 404, (method, path, doc)
        assert doc["type"].endswith("/not-found")
    status, doc, _ = await api.call("GET", f"{PUBLIC}/acme/parking", "op_b")
    assert status == 200
    assert (doc["version"], doc["name"], doc["valid_to"]) == (1, "Parking permits", None)
    status, doc, _ = await api.call("GET", f"{PUBLIC}?tenant=acme")
    assert [a["slug"] for a in doc["items"]] == ["parking"]


async def test_unknown_activity_is_a_404_problem(api: Api) -> None:
    status, doc, headers = await api.call("GET", f"{PUBLIC}/acme/nothing")
    assert status == 404
    assert doc["type"].endswith("/not-found")
    assert headers["Content-Type"].startswith("application/problem+json")
    status, _doc, _ = await api.call("GET", f"{PAGES}/acme/nothing")
    assert status == 404


async def test_pages_escape_every_value(api: Api) -> None:
    hostile = activity(
        "xss",
        name=HOSTILE,
        purpose=HOSTILE,
        personal_data_categories=[HOSTILE[:64]],
        controller=HOSTILE[:200],
        recipients=[HOSTILE[:200]],
    )
    status, doc, _ = await api.call("POST", ACME, "op_a", json=hostile)
    assert status == 201, doc
    await api.call("PUT", f"{ACME}/xss", "op_a", json=update_of(hostile, retention="P1D"))
    for path in (PAGES, f"{PAGES}/acme/xss"):
        status, text, headers = await api.call("GET", path)
        assert status == 200
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        # and nothing a slipped value could make run: no script, style, frame or form
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert '<html lang="en">' in text
        assert "<h1>" in text
        assert "<script" not in text.lower()
        assert "<img" not in text.lower()
        assert "&lt;script&gt;" in text
        assert "&quot;&gt;&lt;img" in text
        # Every tag in the page is one the renderer writes.
        tags = set(re.findall(r"</?([a-zA-Z0-9]+)", text))
        assert tags <= {
            "html", "head", "meta", "title", "body", "main", "h1", "h2", "h3", "p", "a",
            "table", "caption", "thead", "tbody", "tr", "th", "td", "dl", "dt", "dd",
            "code", "section",
        }  # fmt: skip
    status, text, _ = await api.call("GET", f"{PAGES}/acme/xss")
    assert "Earlier versions" in text
    assert "<dl>" in text


async def test_the_list_page_links_each_activity_and_the_next_page(api: Api) -> None:
    for slug in ("a1", "a2"):
        await api.call("POST", ACME, "op_a", json=activity(slug))
    status, text, _ = await api.call("GET", f"{PAGES}?limit=1")
    assert status == 200
    assert f'href="{PAGES}/acme/a1"' in text
    assert 'rel="next"' in text
    assert "<caption>" in text
    status, text, _ = await api.call("GET", f"{PAGES}?tenant=beta")
    assert "No processing activities are registered." in text


async def test_keyless_reads_are_rate_limited_per_address() -> None:
    async with running(quotas=QuotaSettings(api_requests_per_second=0.01, api_burst=2)) as api:
        statuses = [(await api.call("GET", PUBLIC))[0] for _ in range(3)]
        assert statuses == [200, 200, 429]
        status, doc, headers = await api.call("GET", f"{PAGES}")
        assert status == 429
        assert doc["quota"] == "api_requests_per_second"
        assert int(headers["Retry-After"]) >= 1


async def test_without_a_register_the_routes_answer_503() -> None:
    async with running(register=False) as api:
        status, _doc, _ = await api.call("GET", PUBLIC)
        assert status == 503
        status, _, _ = await api.call("POST", ACME, "op_a", json=activity())
        assert status == 503


async def test_openapi_documents_the_public_routes_without_a_key(api: Api) -> None:
    status, doc, _ = await api.call("GET", f"{V1}/openapi.json")
    assert status == 200
    listing = doc["paths"][PUBLIC.removeprefix(V1)]["get"]
    assert listing["security"] == []
    assert "401" not in listing["responses"]
    assert "429" in listing["responses"]
    page = doc["paths"][PAGES.removeprefix(V1)]["get"]
    assert "text/html" in page["responses"]["200"]["content"]
    create = doc["paths"][ACME.replace("acme", "{tenant}").removeprefix(V1)]["post"]
    assert "security" not in create
    assert {"401", "403", "404", "409", "400"} <= set(create["responses"])


async def test_an_end_needs_no_body(api: Api) -> None:
    await api.call("POST", ACME, "op_a", json=activity())
    status, doc, _ = await api.call("POST", f"{ACME}/parking/end", "op_a")
    assert status == 200, doc
    assert doc["valid_to"] is not None
    status, doc, _ = await api.call("GET", f"{PUBLIC}?validAt={doc['valid_to']}")
    assert doc["items"] == []
