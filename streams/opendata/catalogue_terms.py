"""The terms and addresses the public catalogue (``cityhub.streams.opendata.catalogue``) uses:
where cityhub serves what it describes, the application profile and standards it points to,
and the controlled vocabularies DCAT-AP-NL 3.0 asks for (EU access rights, data themes, file
types and languages; IANA media types). Constants only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cityhub.schemas.open_data import EU_THEME
from cityhub.schemas.sharing import Offer

API_PREFIX = "/api/v1"
CATALOGUE_PATH = API_PREFIX + "/open/catalog"
OPEN_PREFIX = API_PREFIX + "/open"
OPENAPI_PATH = API_PREFIX + "/openapi.json"
SENSORTHINGS_PATH = "/sta/v1.1"

DCAT_AP_NL = "https://docs.geostandaarden.nl/dcat/dcat-ap-nl30/"
"""The application profile the catalogue follows (``dct:conformsTo``)."""
SENSORTHINGS_STANDARD = "http://www.opengis.net/doc/is/sensorthings/1.1"
OPENAPI_STANDARD = "https://spec.openapis.org/oas/v3.1.0"

ACCESS_RIGHT = "http://publications.europa.eu/resource/authority/access-right/"
PUBLIC = ACCESS_RIGHT + "PUBLIC"
RESTRICTED = ACCESS_RIGHT + "RESTRICTED"
FILE_TYPE = "http://publications.europa.eu/resource/authority/file-type/"
LANGUAGE = "http://publications.europa.eu/resource/authority/language/"
IANA_MEDIA_TYPE = "https://www.iana.org/assignments/media-types/"
OFFER_THEME = EU_THEME + "REGI"
"""An offer names no theme of its own: the city's data shared by its partners is "Regions and
cities" (a dataset of the hub names its own theme in its settings)."""

EU_THEME_LABELS: dict[str, str] = {
    "AGRI": "Agriculture, fisheries, forestry and food",
    "ECON": "Economy and finance",
    "EDUC": "Education, culture and sport",
    "ENER": "Energy",
    "ENVI": "Environment",
    "GOVE": "Government and public sector",
    "HEAL": "Health",
    "INTR": "International issues",
    "JUST": "Justice, legal system and public safety",
    "OP_DATPRO": "Provisional data",
    "REGI": "Regions and cities",
    "SOCI": "Population and society",
    "TECH": "Science and technology",
    "TRAN": "Transport",
}
"""The EU data-theme vocabulary's English labels (a theme is a ``skos:Concept`` with one)."""

CONTEXT: dict[str, Any] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "dcatap": "http://data.europa.eu/r5r/",
    "adms": "http://www.w3.org/ns/adms#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
}
"""The inline ``@context``: prefixes only, so that every value says what it is."""


@dataclass(frozen=True, slots=True)
class MediaFormat:
    """A distribution's format: the EU file type (None where the list has none) and the IANA
    media type."""

    file_type: str | None
    media_type: str
    label: str


JSON = MediaFormat("JSON", "application/json", "JSON")
CSV = MediaFormat("CSV", "text/csv", "CSV")
PARQUET = MediaFormat("PARQUET", "application/vnd.apache.parquet", "Parquet")
EVENT_STREAM = MediaFormat(None, "text/event-stream", "Server-Sent Events")


def dataset_paths(dataset_id: str) -> dict[str, str]:
    """Where the open API serves one dataset (paths under the base URL)."""
    root = f"{OPEN_PREFIX}/datasets/{dataset_id}"
    return {
        "dataset": root,
        "windows": root + "/windows",
        "files": root + "/files",
        "stream": f"{OPEN_PREFIX}/stream?dataset={dataset_id}",
    }


def offer_path(offer: Offer) -> str:
    """The offer's page in the API (read with a tenant's key)."""
    return f"{API_PREFIX}/tenants/{offer.tenant}/offers/{offer.id}"
