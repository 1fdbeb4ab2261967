"""``GET /api/v1/open/catalog`` over in-memory stores: no key, JSON-LD by default and Turtle by
content negotiation (the same graph), 406 for what it cannot serve, cache headers and 304 on
its ETag, listed offers named by their tenants, IRIs from the setting or a sane Host header,
and the keyless rate limit."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from rdflib import Graph
from rdflib.compare import isomorphic

from cityhub.schemas.open_data import OpenDataSettings
from cityhub.schemas.settings import QuotaSettings
from cityhub.schemas.sharing import Licence, Offer
from cityhub.streams.api import catalogue as catalogue_api
from cityhub.streams.api.app import build_api
from cityhub.streams.api.catalogue import CATALOGUE_KEY, CatalogueSource, negotiate
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore

from .test_api_support import seed
from .test_catalogue_shacl import offer

CATALOG = "/api/v1/open/catalog"


@dataclass
class Api:
    client: TestClient[Any, Any]
    offers: list[Offer]

    async def get(self, **headers: str) -> tuple[int, str, Any]:
        async with self.client.get(CATALOG, headers=headers) as response:
            return response.status, await response.text(), response.headers


@asynccontextmanager
async def running(
    *, settings: OpenDataSettings | None = None, quotas: QuotaSettings | None = None
) -> AsyncIterator[Api]:
    registry = Registry(InMemoryRegistryStore())
    await seed(registry)
    offers: list[Offer] = []

    def listed() -> Iterable[Offer]:
        return list(offers)

    app = build_api(registry, quotas=quotas, listed_offers=listed)
    if settings is not None:
        app[CATALOGUE_KEY] = CatalogueSource(settings, listed)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, offers)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running() as started:
        yield started


async def test_served_without_a_key_as_json_ld(api: Api) -> None:
    status, text, headers = await api.get()
    assert status == 200
    assert headers["Content-Type"] == "application/ld+json"
    assert headers["Cache-Control"] == f"public, max-age={OpenDataSettings().cache_seconds}"
    # The IRIs follow the Host header (no base_url): a shared cache must key on it too.
    assert headers["Vary"] == "Accept, Host"
    assert headers["ETag"].startswith('"')
    document = json.loads(text)
    assert isinstance(document["@context"], dict)
    # IRIs from the request's scheme and Host when no base_url is set.
    host = f"{api.client.server.host}:{api.client.server.port}"
    assert f"http://{host}{CATALOG}" in text


async def test_turtle_by_content_negotiation_is_the_same_graph(api: Api) -> None:
    api.offers.append(offer("acme", "garages", Licence.CC_BY_4_0))
    _, json_ld, _ = await api.get()
    status, turtle, headers = await api.get(Accept="text/turtle")
    assert status == 200
    assert headers["Content-Type"] == "text/turtle; charset=utf-8"
    assert "dcat:Catalog" in turtle
    from_json = Graph().parse(data=json_ld, format="json-ld")
    from_turtle = Graph().parse(data=turtle, format="turtle")
    assert isomorphic(from_json, from_turtle)
    # A second ask is served from the kept rendering: the same bytes.
    assert (await api.get(Accept="text/turtle"))[1] == turtle


async def test_plain_json_gets_the_same_document(api: Api) -> None:
    _, json_ld, _ = await api.get()
    status, text, headers = await api.get(Accept="application/json")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(text) == json.loads(json_ld)


async def test_what_it_cannot_serve_is_a_406_problem(api: Api) -> None:
    for accept in ("text/html", "application/xml, image/*", "text/turtle;q=0, application/*;q=0"):
        status, text, headers = await api.get(Accept=accept)
        assert status == 406, accept
        assert headers["Content-Type"] == "application/problem+json"
        problem = json.loads(text)
        assert problem["status"] == 406
        assert "text/turtle" in problem["detail"]


@pytest.mark.parametrize(
    ("accept", "served"),
    [
        (None, "application/ld+json"),
        ("", "application/ld+json"),
        ("*/*", "application/ld+json"),
        ("text/*", "text/turtle"),
        ("text/turtle;q=0.9, application/ld+json;q=0.8", "text/turtle"),
        ("application/ld+json;q=0.5, text/turtle", "text/turtle"),
        ("text/turtle;q=0, */*", "application/ld+json"),
        ("application/json", "application/json"),
        ("application/json, application/ld+json", "application/ld+json"),
        ("TEXT/Turtle", "text/turtle"),
        ("text/turtle;q=banana, application/ld+json;q=0.1", "application/ld+json"),
        ("text/html", None),
        ("garbage", None),
        ("text/html, " * 100 + "text/turtle", None),
    ],
)
def test_negotiation(accept: str | None, served: str | None) -> None:
    assert negotiate(accept) == served


async def test_an_unchanged_catalogue_is_a_304(api: Api) -> None:
    _, _, headers = await api.get()
    etag = headers["ETag"]
    status, text, again = await api.get(**{"If-None-Match": etag})
    assert status == 304
    assert text == ""
    assert again["ETag"] == etag
    assert again["Cache-Control"].startswith("public")
    # Turtle is another representation: another ETag, so the JSON-LD's does not match it.
    status, _, turtle = await api.get(Accept="text/turtle", **{"If-None-Match": etag})
    assert status == 200
    assert turtle["ETag"] != etag
    # A change (a newly listed offer) is a new ETag.
    api.offers.append(offer("acme", "garages", Licence.CC_BY_4_0))
    status, _, changed = await api.get(**{"If-None-Match": etag})
    assert status == 200
    assert changed["ETag"] != etag


async def test_listed_offers_appear_under_their_tenants_name(api: Api) -> None:
    api.offers.extend(
        [
            offer("acme", "garages", Licence.CC_BY_4_0),
            offer("beta", "indoor", Licence.CC0_1_0),
            offer("nobody", "ghost", Licence.CC0_1_0),
            offer("acme", "hidden", Licence.CC0_1_0, listed=False),
        ]
    )
    _, text, _ = await api.get()
    assert "/tenants/acme/offers/garages#dataset" in text
    assert "/tenants/beta/offers/indoor#dataset" in text
    assert "ghost" not in text
    assert "hidden" not in text
    names = {node.get("foaf:name") for node in json.loads(text)["@graph"] if "foaf:name" in node}
    assert {"Acme", "Beta"} <= names  # the seeded tenants' names


async def test_the_base_url_setting_wins_over_the_host_header() -> None:
    settings = OpenDataSettings(base_url="https://data.city.example/")
    async with running(settings=settings) as api:
        _, text, headers = await api.get(Host="evil.example")
    assert "https://data.city.example/api/v1/open/catalog" in text
    assert headers["Vary"] == "Accept"  # one document whatever the Host
    assert "evil.example" not in text


async def test_a_host_header_that_is_no_host_name_is_refused(api: Api) -> None:
    for host in ('evil.example/"><x', "a b", "x@y", "h" * 300):
        status, text, headers = await api.get(Host=host)
        assert status == 400, host
        assert headers["Content-Type"] == "application/problem+json"
        assert host not in text


async def test_anonymous_callers_are_rate_limited() -> None:
    async with running(quotas=QuotaSettings(api_requests_per_second=1, api_burst=3)) as api:
        statuses = [(await api.get())[0] for _ in range(10)]
    assert statuses[:3] == [200, 200, 200]
    assert 429 in statuses


async def test_documented_without_a_key() -> None:
    async with running() as api, api.client.get("/api/v1/openapi.json") as response:
        document = await response.json()
    operation = document["paths"]["/open/catalog"]["get"]
    assert operation["security"] == []
    assert "application/ld+json" in operation["responses"]["200"]["content"]
    assert "406" in operation["responses"]


async def test_turtle_renders_once_per_document_and_few_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Renderings run in a thread, once per document however many wait for it, at most
    MAX_RENDERINGS documents at a time (a 503 past that), and are kept."""
    calls: list[bytes] = []
    gate = threading.Event()

    def slow(render: bytes) -> bytes:
        calls.append(render)
        gate.wait(5)
        return b"turtle of " + render

    monkeypatch.setattr(catalogue_api, "_render_turtle", slow)
    source = CatalogueSource(OpenDataSettings())
    first = [asyncio.ensure_future(source.turtle("d1", b"1")) for _ in range(5)]
    second = asyncio.ensure_future(source.turtle("d2", b"2"))
    await asyncio.sleep(0.05)
    assert catalogue_api.MAX_RENDERINGS == 2
    with pytest.raises(ApiProblem) as busy:
        await source.turtle("d3", b"3")
    assert busy.value.status == 503
    gate.set()
    assert await asyncio.gather(*first) == [b"turtle of 1"] * 5
    assert await second == b"turtle of 2"
    assert sorted(calls) == [b"1", b"2"]
    assert await source.turtle("d1", b"1") == b"turtle of 1"
    assert await source.turtle("d3", b"3") == b"turtle of 3"
    assert sorted(calls) == [b"1", b"2", b"3"]
