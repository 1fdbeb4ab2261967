"""The public DCAT-AP-NL 3.0 catalogue of what cityhub publishes and of what its tenants offer.

``build_catalogue`` describes, as one JSON-LD document with an inline ``@context`` (a reader
needs no network to expand it):

- the catalogue itself (``dcat:Catalog``), published by the hub's organisation (a TOOI IRI);
- each open dataset of ``OpenDataSettings.datasets`` (access rights PUBLIC), with four
  distributions as the open API serves them: the JSON windows, the daily CSV files, the daily
  Parquet files and the live Server-Sent Events stream, each under the dataset's licence;
- each offer a tenant chose to list (``OfferSpec.listed``, not withdrawn): its metadata only,
  never its data; access rights RESTRICTED (data under an agreement), one distribution whose
  access URL is the offer's page in the API, under the offer's licence; the tenant is its
  creator and publisher;
- the data services: the open API and the live stream (public, serving the open datasets) and
  SensorThings (``/sta/v1.1``, with a key: it serves the listed offers to tenants with an
  agreement).

Controlled vocabularies as DCAT-AP-NL asks: EU data themes, access rights, file types and
languages, IANA media types, licences as their canonical URIs. The few terms the catalogue
points to are typed in the graph (``dct:LicenseDocument``, ``skos:Concept``, ...) so that the
class-range shapes hold without fetching the vocabularies.

``catalogue_turtle`` gives the same graph as Turtle (rdflib parses the JSON-LD). Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from rdflib import Graph

from cityhub.schemas.open_data import EU_THEME, OpenDataset, OpenDataSettings
from cityhub.schemas.sharing import Licence, Offer
from cityhub.streams.opendata.catalogue_terms import (
    API_PREFIX,
    CATALOGUE_PATH,
    CONTEXT,
    CSV,
    DCAT_AP_NL,
    EU_THEME_LABELS,
    EVENT_STREAM,
    FILE_TYPE,
    IANA_MEDIA_TYPE,
    JSON,
    LANGUAGE,
    OFFER_THEME,
    OPEN_PREFIX,
    OPENAPI_PATH,
    OPENAPI_STANDARD,
    PARQUET,
    PUBLIC,
    RESTRICTED,
    SENSORTHINGS_PATH,
    SENSORTHINGS_STANDARD,
    MediaFormat,
    dataset_paths,
    offer_path,
)

ListedOffers = Callable[[], Iterable[Offer]]
"""Where the catalogue takes the listed offers from (the sharing view's ``listed_offers``)."""
TenantName = Callable[[str], str | None]
"""A tenant's name by its id (the registry view); None: no such tenant (its offers are left
out)."""


def _types(node: dict[str, Any]) -> list[str]:
    kinds = node.get("@type", [])
    return [kinds] if isinstance(kinds, str) else list(kinds)


def _ref(iri: str) -> dict[str, str]:
    return {"@id": iri}


def _refs(iris: Iterable[str]) -> list[dict[str, str]]:
    return [_ref(i) for i in iris]


class _Graph:
    """The nodes of the document by ``@id``, in the order first added (deterministic output)."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}

    def add(self, node: dict[str, Any]) -> str:
        """Add ``node``; a node already there with its ``@id`` takes its types and the
        properties it has not got (a dataset's IRI is also its landing page)."""
        iri: str = node["@id"]
        known = self.nodes.get(iri)
        if known is None:
            self.nodes[iri] = node
            return iri
        types = _types(known) + [t for t in _types(node) if t not in _types(known)]
        for key, value in node.items():
            known.setdefault(key, value)
        known["@type"] = types[0] if len(types) == 1 else types
        return iri

    def resource(self, iri: str) -> str:
        """A web resource (an endpoint, its description): DCAT-AP's range ``rdfs:Resource``,
        which a validator without inference only sees when it is stated."""
        return self.add({"@id": iri, "@type": "rdfs:Resource"})

    def term(self, iri: str, kind: str, label: str | None = None) -> str:
        """A vocabulary term the catalogue points to, typed for the class-range shapes."""
        node: dict[str, Any] = {"@id": iri, "@type": kind}
        if label is not None:
            node["skos:prefLabel"] = label
        return self.add(node)

    def theme(self, iri: str) -> str:
        """A data theme, with its label (DCAT-AP asks a concept for one)."""
        code = iri.rstrip("/").rsplit("/", 1)[-1]
        label = EU_THEME_LABELS.get(code, code) if iri.startswith(EU_THEME) else code
        return self.term(iri, "skos:Concept", label)

    def licence(self, licence: Licence) -> str:
        return self.add(
            {"@id": licence.uri, "@type": "dct:LicenseDocument", "dct:identifier": licence.value}
        )

    def agent(self, iri: str, name: str) -> str:
        return self.add(
            {"@id": iri, "@type": ["foaf:Agent", "foaf:Organization"], "foaf:name": name}
        )

    def contact(self, iri: str, name: str, email: str) -> str:
        return self.add(
            {
                "@id": iri,
                "@type": ["vcard:Kind", "vcard:Organization"],
                "vcard:fn": name,
                # Percent-encoded: an address may hold what an IRI may not (">", a quote, "{").
                "vcard:hasEmail": _ref("mailto:" + quote(email, safe="@+")),
            }
        )

    def format(self, node: dict[str, Any], fmt: MediaFormat) -> None:
        media_type = IANA_MEDIA_TYPE + fmt.media_type
        node["dcat:mediaType"] = _ref(self.term(media_type, "dct:MediaType", fmt.media_type))
        if fmt.file_type is not None:
            file_type = FILE_TYPE + fmt.file_type
            node["dct:format"] = _ref(self.term(file_type, "dct:MediaTypeOrExtent", fmt.label))


@dataclass(frozen=True, slots=True)
class _Hub:
    """The IRIs every part of the catalogue shares."""

    base: str
    catalogue: str
    publisher: str
    contact: str
    language: str
    open_api: str
    stream: str
    sensorthings: str


def build_catalogue(
    settings: OpenDataSettings,
    base_url: str,
    offers: Iterable[Offer] = (),
    tenant_name: TenantName = lambda _tenant: None,
) -> dict[str, Any]:
    """The catalogue as a JSON-LD document (``@context`` inline, nodes in ``@graph``) with its
    IRIs under ``base_url`` (``https://data.city.example``, no trailing slash needed). Offers
    that are not listed, are withdrawn, or whose tenant ``tenant_name`` does not know are left
    out; the rest appear sorted by ``tenant/id``, so equal inputs give equal documents. With
    ``settings.enabled`` False no open dataset is described."""
    base = base_url.rstrip("/")
    catalogue = base + CATALOGUE_PATH
    graph = _Graph()
    hub = _Hub(
        base=base,
        catalogue=catalogue,
        publisher=graph.agent(settings.publisher_uri, settings.publisher_name),
        contact=graph.contact(
            catalogue + "#contact", settings.publisher_name, settings.contact_email
        ),
        language=graph.term(LANGUAGE + "NLD", "dct:LinguisticSystem", "Nederlands"),
        open_api=base + OPEN_PREFIX,
        stream=base + OPEN_PREFIX + "/stream",
        sensorthings=base + SENSORTHINGS_PATH,
    )
    catalogue_node: dict[str, Any] = {
        "@id": catalogue,
        "@type": "dcat:Catalog",
        "dct:title": f"Open data van {settings.publisher_name} (cityhub)",
        "dct:description": (
            "The datasets this city hub publishes as open data (area aggregates no person can "
            "be picked out of) and the datasets its partners offer to share under agreements, "
            "with the services that serve them."
        ),
        "dct:publisher": _ref(hub.publisher),
        "dct:creator": _ref(hub.publisher),
        "dcat:contactPoint": _ref(hub.contact),
        "dct:language": _ref(hub.language),
        "dct:conformsTo": _ref(graph.term(DCAT_AP_NL, "dct:Standard")),
        "foaf:homepage": _ref(graph.term(base + OPEN_PREFIX + "/datasets", "foaf:Document")),
        "dcat:dataset": [],
        "dcat:service": [],
    }
    graph.add(catalogue_node)
    # Open data switched off: nothing is published, so no open dataset is described.
    datasets = settings.datasets if settings.enabled else ()
    open_ids = [_open_dataset(graph, hub, dataset) for dataset in datasets]
    listed = sorted(
        (o for o in offers if o.spec.listed and o.withdrawn_at is None),
        key=lambda o: o.ref,
    )
    offer_ids = []
    for offer in listed:
        name = tenant_name(offer.tenant)
        if name is not None:
            offer_ids.append(_offer_dataset(graph, hub, offer, name))
    catalogue_node["dcat:dataset"] = _refs(open_ids + offer_ids)
    open_licences = [d.licence for d in datasets]
    offer_licences = [o.spec.licence for o in listed]
    open_themes = sorted({d.theme for d in datasets}) or [EU_THEME + "REGI"]
    catalogue_node["dcat:service"] = _refs(
        [
            _service(
                graph,
                hub,
                iri=hub.open_api,
                title="cityhub open API",
                description=(
                    "The open datasets without a key: their windows as JSON, the daily CSV and "
                    "Parquet files, rate-limited per client address (OpenAPI document: "
                    f"{base}{OPENAPI_PATH})."
                ),
                access=PUBLIC,
                licences=open_licences,
                themes=open_themes,
                serves=open_ids,
                description_url=base + OPENAPI_PATH,
                standard=OPENAPI_STANDARD,
            ),
            _service(
                graph,
                hub,
                iri=hub.stream,
                title="cityhub open data live stream",
                description=(
                    "Newly published windows of the open datasets as Server-Sent Events "
                    "(text/event-stream), without a key; filter with ?dataset=, ?area=, "
                    "?quantity=."
                ),
                access=PUBLIC,
                licences=open_licences,
                themes=open_themes,
                serves=open_ids,
                description_url=base + OPENAPI_PATH,
                standard=None,
            ),
            _service(
                graph,
                hub,
                iri=hub.sensorthings,
                title="cityhub SensorThings API",
                description=(
                    "OGC SensorThings API 1.1 (Sensing, read only) over the observations of the "
                    "tenants' devices: with a tenant's key, its own items, public items and the "
                    "items of the offers it has an active agreement for."
                ),
                access=RESTRICTED,
                licences=offer_licences,
                themes=[OFFER_THEME],
                serves=offer_ids,
                description_url=hub.sensorthings,
                standard=SENSORTHINGS_STANDARD,
            ),
        ]
    )
    return {"@context": CONTEXT, "@graph": list(graph.nodes.values())}


def _duration(seconds: int) -> dict[str, str]:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    text += f"{secs}S" if secs or text == "PT" else ""
    return {"@value": text, "@type": "xsd:duration"}


def _open_dataset(graph: _Graph, hub: _Hub, dataset: OpenDataset) -> str:
    paths = dataset_paths(dataset.id)
    iri = hub.base + paths["dataset"]
    licence = graph.licence(dataset.licence)
    resolution = _duration(dataset.window_seconds)
    distributions = []
    for suffix, title, url, fmt, service in (
        ("json", "Windows as JSON (open API)", paths["windows"], JSON, hub.open_api),
        ("csv", "Daily CSV files", paths["files"], CSV, hub.open_api),
        ("parquet", "Daily Parquet files", paths["files"], PARQUET, hub.open_api),
        ("stream", "Live stream (Server-Sent Events)", paths["stream"], EVENT_STREAM, hub.stream),
    ):
        node: dict[str, Any] = {
            "@id": f"{iri}#{suffix}",
            "@type": "dcat:Distribution",
            "dct:title": title,
            "dcat:accessURL": _ref(graph.resource(hub.base + url)),
            "dcat:accessService": _ref(service),
            "dct:license": _ref(licence),
            "dct:language": _ref(hub.language),
            "dcat:temporalResolution": resolution,
        }
        graph.format(node, fmt)
        distributions.append(graph.add(node))
    node = {
        "@id": iri,
        "@type": "dcat:Dataset",
        "dct:identifier": dataset.id,
        "dct:title": dataset.title,
        "dct:description": dataset.description,
        "dct:accessRights": _ref(graph.term(PUBLIC, "dct:RightsStatement", "public")),
        "dcat:contactPoint": _ref(hub.contact),
        "dct:creator": _ref(hub.publisher),
        "dct:publisher": _ref(hub.publisher),
        "dcat:theme": _ref(graph.theme(dataset.theme)),
        "dct:language": _ref(hub.language),
        "dcat:landingPage": _ref(graph.term(hub.base + paths["dataset"], "foaf:Document")),
        "dcat:temporalResolution": resolution,
        "dcat:distribution": _refs(distributions),
    }
    if dataset.keywords:
        node["dcat:keyword"] = list(dataset.keywords)
    return graph.add(node)


def _offer_dataset(graph: _Graph, hub: _Hub, offer: Offer, tenant_name: str) -> str:
    spec = offer.spec
    page = hub.base + offer_path(offer)
    iri = page + "#dataset"
    tenant = graph.agent(f"{hub.catalogue}#tenant-{offer.tenant}", tenant_name)
    contact = hub.contact
    if spec.contact_email is not None:
        contact = graph.contact(f"{iri}-contact", tenant_name, spec.contact_email)
    purposes = "; ".join(spec.purposes)
    distribution = graph.add(
        {
            "@id": page + "#distribution",
            "@type": "dcat:Distribution",
            "dct:title": "Access under an agreement with " + tenant_name,
            "dct:description": (
                f"Ask {tenant_name} for an agreement with a tenant's key "
                f"(POST {API_PREFIX}/tenants/{{your tenant}}/agreements, offer "
                f'"{offer.ref}") for one of its purposes: {purposes}.'
            ),
            "dcat:accessURL": _ref(graph.resource(page)),
            "dcat:accessService": _ref(hub.sensorthings),
            "dct:license": _ref(graph.licence(spec.licence)),
        }
    )
    node: dict[str, Any] = {
        "@id": iri,
        "@type": "dcat:Dataset",
        "dct:identifier": offer.ref,
        "dct:title": spec.title,
        "dct:description": spec.description,
        "dct:accessRights": _ref(graph.term(RESTRICTED, "dct:RightsStatement", "restricted")),
        "dcat:contactPoint": _ref(contact),
        "dct:creator": _ref(tenant),
        "dct:publisher": _ref(tenant),
        "dcat:theme": _ref(graph.theme(OFFER_THEME)),
        "dct:issued": {"@value": offer.created_at, "@type": "xsd:dateTime"},
        "dct:modified": {"@value": offer.updated_at, "@type": "xsd:dateTime"},
        "dcat:distribution": _ref(distribution),
    }
    if spec.keywords:
        node["dcat:keyword"] = list(spec.keywords)
    return graph.add(node)


def _service(
    graph: _Graph,
    hub: _Hub,
    *,
    iri: str,
    title: str,
    description: str,
    access: str,
    licences: list[Licence],
    themes: list[str],
    serves: list[str],
    description_url: str,
    standard: str | None,
) -> str:
    # One licence per service: the most demanding of what it serves (attribution over none).
    licence = Licence.CC_BY_4_0 if Licence.CC_BY_4_0 in licences or not licences else None
    node: dict[str, Any] = {
        "@id": iri,
        "@type": "dcat:DataService",
        "dct:identifier": iri,
        "dct:title": title,
        "dct:description": description,
        "dcat:endpointURL": _ref(graph.resource(iri)),
        "dcat:endpointDescription": _ref(graph.resource(description_url)),
        "dct:accessRights": _ref(
            graph.term(
                access, "dct:RightsStatement", "public" if access == PUBLIC else "restricted"
            )
        ),
        "dct:license": _ref(graph.licence(licence or Licence.CC0_1_0)),
        "dcat:contactPoint": _ref(hub.contact),
        "dct:publisher": _ref(hub.publisher),
        "dct:creator": _ref(hub.publisher),
        "dcat:theme": _refs(graph.theme(t) for t in themes),
        "dct:language": _ref(hub.language),
        "dcat:keyword": ["cityhub", "open data" if access == PUBLIC else "data sharing"],
    }
    if serves:
        node["dcat:servesDataset"] = _refs(serves)
    if standard is not None:
        node["dct:conformsTo"] = _ref(graph.term(standard, "dct:Standard"))
    return graph.add(node)


def catalogue_graph(document: dict[str, Any]) -> Graph:
    """The catalogue's RDF graph (rdflib), from its JSON-LD document."""
    graph = Graph()
    graph.parse(data=json.dumps(document), format="json-ld")
    for prefix, namespace in CONTEXT.items():
        graph.bind(prefix, namespace)
    return graph


def catalogue_turtle(document: dict[str, Any]) -> str:
    """The catalogue as Turtle: the same graph as the JSON-LD document."""
    return catalogue_graph(document).serialize(format="turtle")
