"""The public DCAT-AP-NL catalogue on the real stack: a ``cityhub api`` process over Kafka, with
tenants and their offers on the topics (as the registry and the sharing service write them); an
HTTP client with no key fetches ``/api/v1/open/catalog`` as JSON-LD and as Turtle: the same
graph, valid against the DCAT-AP-NL 3.0 shapes (0 violations), with the open datasets, the
listed offers under their tenants' names and licences (not the unlisted one), and the data
services. An offer listed later appears, and a withdrawn one leaves, within seconds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict
from pyshacl import validate
from rdflib import Graph, URIRef
from rdflib.compare import isomorphic

from cityhub.schemas.registry import TenantSpec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.sharing import Licence, Offer, OfferSpec
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.sharing.store import OfferStore

from .hub import BOOTSTRAP, Hub

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CATALOG = "/api/v1/open/catalog"
SHAPES = Path(__file__).resolve().parents[1] / "standards" / "dcat-ap-nl-3.0"
DCAT = "http://www.w3.org/ns/dcat#"
DCT = "http://purl.org/dc/terms/"


def _settings(prefix: str) -> Settings:
    return Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))


def _offer(tenant: str, offer_id: str, licence: Licence, *, listed: bool = True) -> Offer:
    spec = OfferSpec.model_validate(
        {
            "id": offer_id,
            "title": f"{offer_id.title()} of {tenant}",
            "description": "Occupied spaces per street, every 15 minutes.",
            "selection": {"areas": ["centrum"]},
            "kinds": ["aggregates"],
            "purposes": ["mobility research"],
            "licence": licence.value,
            "listed": listed,
        }
    )
    now = "2026-12-01T00:00:00Z"
    return Offer(tenant=tenant, spec=spec, created_at=now, updated_at=now)


async def _put_offers(prefix: str, *offers: Offer) -> None:
    store = OfferStore(_settings(prefix), client_id=f"{prefix}-test-offers-{time.monotonic_ns()}")
    await store.start()
    try:
        for offer in offers:
            await store.put(offer)
    finally:
        await store.stop()


async def _seed(prefix: str) -> None:
    """Tenants acme and beta, two listed offers (CC BY 4.0 and CC0 1.0) and an unlisted one."""
    store = RegistryStore(_settings(prefix))
    await store.start()
    try:
        registry, system = Registry(store), Principal.system()
        await registry.create_tenant(system, TenantSpec(id="acme", name="Acme Transport"))
        await registry.create_tenant(system, TenantSpec(id="beta", name="Beta Woningen"))
    finally:
        await store.stop()
    await _put_offers(
        prefix,
        _offer("acme", "parking", Licence.CC_BY_4_0),
        _offer("beta", "climate", Licence.CC0_1_0),
        _offer("acme", "secret", Licence.CC_BY_4_0, listed=False),
    )


def _shapes() -> Graph:
    graph = Graph()
    for name in ("dcat-ap-SHACL.ttl", "dcat-ap-nl-SHACL.ttl", "dcat-ap-nl-SHACL-klassebereik.ttl"):
        graph.parse(SHAPES / name, format="turtle")
    return graph


async def _get(
    session: aiohttp.ClientSession, url: str, **headers: str
) -> tuple[int, str, CIMultiDict[str]]:
    async with session.get(url, headers=headers) as response:
        return response.status, await response.text(), CIMultiDict(response.headers)


async def _until(
    session: aiohttp.ClientSession, url: str, ok: Any, timeout: float = 15.0
) -> tuple[str, float]:
    """The catalogue's JSON-LD once ``ok(text)`` holds, and how long that took."""
    started = time.monotonic()
    text = ""
    while time.monotonic() - started < timeout:
        status, text, _ = await _get(session, url)
        if status == 200 and ok(text):
            return text, time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"the catalogue did not change within {timeout} s:\n{text[:2000]}")


async def _exercise(hub: Hub) -> dict[str, float]:
    url = f"http://127.0.0.1:{hub.port}{CATALOG}"
    base = f"http://127.0.0.1:{hub.port}/api/v1/tenants"
    async with aiohttp.ClientSession() as session:
        # The API's view follows the offers topic: wait until the seeded offers are there.
        json_ld, _ = await _until(session, url, lambda t: "offers/climate" in t, timeout=30)
        status, json_ld, headers = await _get(session, url)
        assert status == 200
        assert headers["Content-Type"] == "application/ld+json"
        assert headers["Cache-Control"].startswith("public, max-age=")
        status, turtle, turtle_headers = await _get(session, url, Accept="text/turtle")
        assert status == 200
        assert turtle_headers["Content-Type"] == "text/turtle; charset=utf-8"
        status, _, _ = await _get(session, url, Accept="text/html")
        assert status == 406
        status, _, _ = await _get(session, url, **{"If-None-Match": headers["ETag"]})
        assert status == 304

        graph = Graph().parse(data=json_ld, format="json-ld")
        assert isomorphic(graph, Graph().parse(data=turtle, format="turtle"))
        conforms, _, report = validate(
            graph, shacl_graph=_shapes(), inference="none", allow_warnings=True
        )
        assert conforms, report

        parking = URIRef(f"{base}/acme/offers/parking#dataset")
        climate = URIRef(f"{base}/beta/offers/climate#dataset")
        datasets = set(graph.objects(None, URIRef(DCAT + "dataset")))
        assert {parking, climate} <= datasets
        assert URIRef(f"{base}/acme/offers/secret#dataset") not in datasets
        assert "Acme Transport" in json_ld
        assert "Beta Woningen" in json_ld
        licences = {
            str(licence)
            for offer in (parking, climate)
            for distribution in graph.objects(offer, URIRef(DCAT + "distribution"))
            for licence in graph.objects(distribution, URIRef(DCT + "license"))
        }
        assert licences == {Licence.CC_BY_4_0.uri, Licence.CC0_1_0.uri}
        services = set(graph.subjects(None, URIRef(DCAT + "DataService")))
        assert len(services) == 3

        # Listing an offer later, and withdrawing one, reach the catalogue within seconds.
        await _put_offers(hub.prefix, _offer("beta", "water", Licence.CC0_1_0))
        _, appeared = await _until(session, url, lambda t: "offers/water" in t)
        withdrawn = _offer("acme", "parking", Licence.CC_BY_4_0).model_copy(
            update={"withdrawn_at": "2026-12-02T00:00:00Z"}
        )
        await _put_offers(hub.prefix, withdrawn)
        _, left = await _until(session, url, lambda t: "offers/parking" not in t)
        return {"appeared": appeared, "left": left}


def test_the_catalogue_on_the_real_stack(tmp_path: Path) -> None:
    env = {"CITYHUB_OPEN_DATA__FILES_DIR": str(tmp_path / "open-data")}
    hub = Hub(tmp_path / "api", command="api", extra_env=env)
    hub.workdir.mkdir()
    asyncio.run(_seed(hub.prefix))
    hub.start()
    try:
        delays = asyncio.run(_exercise(hub))
    finally:
        hub.stop()
    print(
        f"catalogue: a listed offer appeared after {delays['appeared']:.2f} s, "
        f"a withdrawn one left after {delays['left']:.2f} s"
    )
    assert delays["appeared"] < 10
    assert delays["left"] < 10
