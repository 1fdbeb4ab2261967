"""The public catalogue against the DCAT-AP-NL 3.0 SHACL shapes (copied into
tests/standards/dcat-ap-nl-3.0/): the European base shapes, the Dutch profile's mandatory
properties and its class ranges give 0 violations for the default settings, for several
datasets, and with listed offers under both licences; a catalogue missing a mandatory property
fails (so the validation can fail). JSON-LD and Turtle are the same graph."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pyshacl import validate
from rdflib import Graph, URIRef, namespace
from rdflib.compare import isomorphic

from cityhub.schemas.open_data import EU_THEME, OpenDataset, OpenDataSettings
from cityhub.schemas.sharing import Licence, Offer, OfferSpec, Selection
from cityhub.streams.opendata.catalogue import (
    build_catalogue,
    catalogue_graph,
    catalogue_turtle,
)
from cityhub.streams.opendata.catalogue_terms import PUBLIC, RESTRICTED

SHAPES_DIR = Path(__file__).resolve().parents[1] / "standards" / "dcat-ap-nl-3.0"
MANDATORY = ("dcat-ap-SHACL.ttl", "dcat-ap-nl-SHACL.ttl")
CLASS_RANGES = "dcat-ap-nl-SHACL-klassebereik.ttl"
BASE = "https://data.city.example"
NAMES = {"acme": "Acme Transport", "beta": "Beta Woningen"}


@cache
def shapes(*files: str) -> Graph:
    graph = Graph()
    for name in files:
        graph.parse(SHAPES_DIR / name, format="turtle")
    return graph


def violations(document: dict[str, Any], *files: str) -> tuple[bool, str]:
    conforms, _, text = validate(
        catalogue_graph(document),
        shacl_graph=shapes(*files),
        inference="none",
        allow_warnings=True,
    )
    return bool(conforms), str(text)


def offer(tenant: str, offer_id: str, licence: Licence, **spec: Any) -> Offer:
    fields: dict[str, Any] = {
        "id": offer_id,
        "title": f"Offer {offer_id}",
        "description": "Parking occupancy of our garages, per device.",
        "selection": Selection(device_types=["parking"]),
        "kinds": ["observations"],
        "licence": licence,
        "purposes": ["mobility policy", "research"],
        "listed": True,
        **spec,
    }
    return Offer(
        tenant=tenant,
        spec=OfferSpec(**fields),
        created_at="2026-12-01T10:00:00Z",
        updated_at="2026-12-02T10:00:00Z",
    )


OFFERS = (
    offer("acme", "garages", Licence.CC_BY_4_0, contact_email="data@acme.example"),
    offer("beta", "indoor", Licence.CC0_1_0, keywords=["binnenklimaat"]),
)

SEVERAL = OpenDataSettings(
    datasets=(
        OpenDataset(
            id="air",
            title="Lucht",
            description="Air per area.",
            quantities=("pm2_5", "no2"),
            licence=Licence.CC0_1_0,
        ),
        OpenDataset(
            id="parking",
            title="Parkeren",
            description="Parking occupancy per area, quarter-hourly.",
            quantities=("count",),
            window_seconds=900,
            licence=Licence.CC_BY_4_0,
            theme=EU_THEME + "TRAN",
            keywords=("parkeren",),
        ),
        OpenDataset(
            id="noise",
            title="Geluid",
            description="Noise per area.",
            quantities=("laeq",),
            window_seconds=60,
            licence=Licence.CC_BY_4_0,
        ),
    ),
    publisher_name="Gemeente Voorbeeld",
    publisher_uri="https://identifier.overheid.nl/tooi/id/gemeente/gm0363",
    contact_email="opendata@voorbeeld.nl",
)

CASES = {
    "default settings": (OpenDataSettings(), ()),
    "several datasets": (SEVERAL, ()),
    "listed offers, both licences": (OpenDataSettings(), OFFERS),
    "several datasets and offers": (SEVERAL, OFFERS),
    "offers only (open data off)": (OpenDataSettings(enabled=False), OFFERS),
}


def build(settings: OpenDataSettings, offers: tuple[Offer, ...]) -> dict[str, Any]:
    return build_catalogue(settings, BASE, offers, NAMES.get)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize(
    "files",
    [MANDATORY, (*MANDATORY, CLASS_RANGES)],
    ids=["mandatory", "mandatory+class-ranges"],
)
def test_the_catalogue_conforms(case: str, files: tuple[str, ...]) -> None:
    conforms, report = violations(build(*CASES[case]), *files)
    assert conforms, report


def test_the_shapes_are_the_upstream_files() -> None:
    """The copies parse and hold the profile's shapes (a broken copy would validate nothing)."""
    graph = shapes(*MANDATORY, CLASS_RANGES)
    sh = "http://www.w3.org/ns/shacl#"
    targets = set(graph.objects(None, URIRef(sh + "targetClass")))
    assert {
        namespace.DCAT.Catalog,
        namespace.DCAT.Dataset,
        namespace.DCAT.Distribution,
        namespace.DCAT.DataService,
    } <= targets
    assert (SHAPES_DIR / "README.md").read_text().count("37c9871357d2f6addce9eeb7f2cd28916a58ca2c")


def _without(document: dict[str, Any], node_type: str, prop: str) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    removed = 0
    for node in changed["@graph"]:
        kinds = node.get("@type")
        if (kinds == node_type or (isinstance(kinds, list) and node_type in kinds)) and (
            node.pop(prop, None) is not None
        ):
            removed += 1
            break
    assert removed == 1, f"no {node_type} with {prop} to remove"
    return changed


@pytest.mark.parametrize(
    ("node_type", "prop", "path"),
    [
        ("dcat:Dataset", "dct:title", "dct:title"),
        ("dcat:Dataset", "dct:accessRights", "dct:accessRights"),
        ("dcat:Dataset", "dcat:contactPoint", "dcat:contactPoint"),
        ("dcat:Dataset", "dct:creator", "dct:creator"),
        ("dcat:Dataset", "dct:identifier", "dct:identifier"),
        ("dcat:Dataset", "dct:publisher", "dct:publisher"),
        ("dcat:Dataset", "dcat:theme", "dcat:theme"),
        ("dcat:Dataset", "dct:description", "dct:description"),
        ("dcat:Distribution", "dct:license", "dct:license"),
        ("dcat:Distribution", "dcat:accessURL", "dcat:accessURL"),
        ("dcat:DataService", "dcat:endpointDescription", "dcat:endpointDescription"),
    ],
)
def test_a_missing_mandatory_property_is_a_violation(node_type: str, prop: str, path: str) -> None:
    document = _without(build(OpenDataSettings(), OFFERS), node_type, prop)
    conforms, report = violations(document, *MANDATORY)
    assert not conforms
    assert f"Result Path: {path}" in report


def test_a_term_without_its_class_breaks_the_class_ranges() -> None:
    """The class-range shapes see the types the catalogue states for the terms it points to."""
    document = build(OpenDataSettings(), OFFERS)
    for node in document["@graph"]:
        if node.get("@type") == "dct:Standard":
            node["@type"] = "rdfs:Resource"
    conforms, report = violations(document, *MANDATORY, CLASS_RANGES)
    assert not conforms
    assert "dct:Standard" in report or "Standard" in report


@pytest.mark.parametrize("case", list(CASES))
def test_turtle_and_json_ld_are_the_same_graph(case: str) -> None:
    document = build(*CASES[case])
    from_json = Graph().parse(data=json.dumps(document), format="json-ld")
    from_turtle = Graph().parse(data=catalogue_turtle(document), format="turtle")
    assert len(from_json) > 50
    assert isomorphic(from_json, from_turtle)


def _objects(graph: Graph, subject: str, prop: URIRef) -> set[str]:
    return {str(o) for o in graph.objects(URIRef(subject), prop)}


def test_open_datasets_and_offers_say_what_they_are() -> None:
    graph = catalogue_graph(build(SEVERAL, OFFERS))
    catalogue = BASE + "/api/v1/open/catalog"
    datasets = _objects(graph, catalogue, namespace.DCAT.dataset)
    parking = BASE + "/api/v1/open/datasets/parking"
    garages = BASE + "/api/v1/tenants/acme/offers/garages#dataset"
    assert parking in datasets
    assert garages in datasets
    assert len(datasets) == 5
    # An open dataset: public, its theme, four distributions under its licence.
    assert _objects(graph, parking, namespace.DCTERMS.accessRights) == {PUBLIC}
    assert _objects(graph, parking, namespace.DCAT.theme) == {EU_THEME + "TRAN"}
    distributions = _objects(graph, parking, namespace.DCAT.distribution)
    assert len(distributions) == 4
    for distribution in distributions:
        assert _objects(graph, distribution, namespace.DCTERMS.license) == {Licence.CC_BY_4_0.uri}
    access = {u for d in distributions for u in _objects(graph, d, namespace.DCAT.accessURL)}
    assert access == {
        parking + "/windows",
        parking + "/files",
        BASE + "/api/v1/open/stream?dataset=parking",
    }
    media = {m for d in distributions for m in _objects(graph, d, namespace.DCAT.mediaType)}
    assert media == {
        "https://www.iana.org/assignments/media-types/" + m
        for m in (
            "application/json",
            "text/csv",
            "application/vnd.apache.parquet",
            "text/event-stream",
        )
    }
    # A listed offer: restricted, the offer's page, the offer's licence, the tenant by name.
    assert _objects(graph, garages, namespace.DCTERMS.accessRights) == {RESTRICTED}
    (distribution,) = _objects(graph, garages, namespace.DCAT.distribution)
    assert _objects(graph, distribution, namespace.DCAT.accessURL) == {
        BASE + "/api/v1/tenants/acme/offers/garages"
    }
    assert _objects(graph, distribution, namespace.DCTERMS.license) == {Licence.CC_BY_4_0.uri}
    (creator,) = _objects(graph, garages, namespace.DCTERMS.creator)
    assert "Acme Transport" in {str(o) for o in graph.objects(URIRef(creator), None)}
    indoor = BASE + "/api/v1/tenants/beta/offers/indoor#dataset"
    (distribution,) = _objects(graph, indoor, namespace.DCAT.distribution)
    assert _objects(graph, distribution, namespace.DCTERMS.license) == {Licence.CC0_1_0.uri}


def test_the_data_services_serve_what_they_say() -> None:
    graph = catalogue_graph(build(SEVERAL, OFFERS))
    services = set(graph.subjects(namespace.RDF.type, namespace.DCAT.DataService))
    endpoints = {str(next(graph.objects(s, namespace.DCAT.endpointURL))) for s in services}
    assert endpoints == {
        BASE + "/api/v1/open",
        BASE + "/api/v1/open/stream",
        BASE + "/sta/v1.1",
    }
    open_api = URIRef(BASE + "/api/v1/open")
    assert len(set(graph.objects(open_api, namespace.DCAT.servesDataset))) == 3
    assert _objects(graph, BASE + "/api/v1/open", namespace.DCTERMS.accessRights) == {PUBLIC}
    sta = BASE + "/sta/v1.1"
    assert _objects(graph, sta, namespace.DCTERMS.accessRights) == {RESTRICTED}
    assert _objects(graph, sta, namespace.DCAT.servesDataset) == {
        BASE + "/api/v1/tenants/acme/offers/garages#dataset",
        BASE + "/api/v1/tenants/beta/offers/indoor#dataset",
    }


def test_unlisted_withdrawn_and_orphaned_offers_are_left_out() -> None:
    unlisted = offer("acme", "private", Licence.CC_BY_4_0, listed=False)
    withdrawn = offer("acme", "old", Licence.CC_BY_4_0).model_copy(
        update={"withdrawn_at": "2026-12-03T00:00:00Z"}
    )
    orphan = offer("gone", "lost", Licence.CC_BY_4_0)
    document = build(OpenDataSettings(), (unlisted, withdrawn, orphan, OFFERS[0]))
    text = json.dumps(document)
    assert "offers/garages" in text
    for left_out in ("offers/private", "offers/old", "offers/lost"):
        assert left_out not in text


def test_equal_inputs_give_equal_documents() -> None:
    first = build(SEVERAL, OFFERS)
    assert build(SEVERAL, tuple(reversed(OFFERS))) == first
    assert json.dumps(first) == json.dumps(build(SEVERAL, OFFERS))


def test_the_context_is_inline() -> None:
    """A reader expands the document with no network: the @context is a dict of prefixes."""
    context = build(OpenDataSettings(), ())["@context"]
    assert isinstance(context, dict)
    assert all(isinstance(v, str) and v.startswith("http") for v in context.values())


def test_hostile_offer_text_stays_text() -> None:
    """An offer's words and contact address cannot break out of their literal or IRI: both
    renderings parse to the same graph, and the address is one percent-encoded mailto IRI."""
    hostile = offer(
        "acme",
        "evil",
        Licence.CC0_1_0,
        title='"> <x> a <y> . """ \\u0000 <script>',
        description="line one\nline two\t\"quoted\" 'single' <tag> @prefix x: <y> .",
        keywords=['"; drop', "<http://evil.example/>"],
        contact_email='x"><y{z}|\\^`@evil.example',
    )
    document = build(OpenDataSettings(), (hostile,))
    from_json = Graph().parse(data=json.dumps(document), format="json-ld")
    from_turtle = Graph().parse(data=catalogue_turtle(document), format="turtle")
    assert isomorphic(from_json, from_turtle)
    vcard_email = URIRef("http://www.w3.org/2006/vcard/ns#hasEmail")
    emails = {str(o) for o in from_json.objects(None, vcard_email)}
    assert "mailto:x%22%3E%3Cy%7Bz%7D%7C%5C%5E%60@evil.example" in emails
    conforms, report = violations(document, *MANDATORY, CLASS_RANGES)
    assert conforms, report
