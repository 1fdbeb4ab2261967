"""The JSON-LD ``@context`` of cityhub's NGSI-LD documents, and how an answer carries it.

cityhub serves its own context document (``CONTEXT_PATH``): the Smart Data Models terms it
uses (``models.SDM_TERMS``), then the NGSI-LD core context by its URL, last, as the core
context is meant to be (it is ``@protected``: nothing before it can change its terms).

An answer carries the context one of two ways (ETSI GS CIM 009, 6.3.6): with
``Accept: application/ld+json`` an ``@context`` member in the body; with ``application/json``
(or ``*/*``) none in the body and a ``Link`` header to the context document instead.

A receiver that cannot reach the hub (a notification's) gets the context inline: the terms
object and the core context URL, which every JSON-LD processor resolves on its own.

Pure, but for :func:`core_context_document`, which reads the packaged copy of the core
context (``ngsi-ld-core-context-v1.8.jsonld``, for tests and offline processors).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Final

from cityhub.connectors.ngsi_ld.models import SDM_TERMS

CORE_CONTEXT_URL: Final = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
"""A reference, never fetched by cityhub."""
CONTEXT_PATH: Final = "/ngsi-ld/v1/context.jsonld"
"""Where the hub serves its context document, beside the NGSI-LD API."""
JSON_LD_CONTEXT_REL: Final = "http://www.w3.org/ns/json-ld#context"
LD_JSON: Final = "application/ld+json"
JSON: Final = "application/json"
_CORE_CONTEXT_FILE: Final = "ngsi-ld-core-context-v1.8.jsonld"


def terms() -> dict[str, str]:
    """cityhub's terms, each with its IRI (a copy: callers may change it)."""
    return dict(SDM_TERMS)


def context_value() -> list[Any]:
    """The ``@context`` value inline: cityhub's terms, then the core context's URL."""
    return [terms(), CORE_CONTEXT_URL]


def context_document() -> dict[str, Any]:
    """The context document cityhub serves at ``CONTEXT_PATH``."""
    return {"@context": context_value()}


def link_header(context_url: str) -> str:
    """The ``Link`` header that names the context of an ``application/json`` answer."""
    return f'<{context_url}>; rel="{JSON_LD_CONTEXT_REL}"; type="{LD_JSON}"'


def core_context_document() -> dict[str, Any]:
    """The packaged copy of the NGSI-LD core context document (see ``CORE-CONTEXT.md``)."""
    text = resources.files(__package__).joinpath(_CORE_CONTEXT_FILE).read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc
