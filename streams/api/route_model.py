"""The shape of the route table: ``Route`` and ``Param``, which the table
(``cityhub.streams.api.routes``), the app and the OpenAPI generator share, and route modules of
their own (``cityhub.streams.api.processing``) build on without importing the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from cityhub.schemas.registry import DATA_SUBJECT_PATTERN, ID_PATTERN, Role
from cityhub.streams.api.handlers import Handler
from cityhub.streams.registry.principals import Principal

PREFIX = "/api/v1"
API_VERSION = "1.0.0"
"""The API's full version (semantic versioning): the OpenAPI document's ``info.version`` and the
``API-Version`` header of every response. Its major is the ``v1`` of ``PREFIX``; a change a
client could break on needs a new major and a new prefix (NL API Design Rules, /core/semver)."""

ANONYMOUS = Principal(key_id="", tenant="", role=Role.SUBSCRIBER)
"""The principal of a public route's call: no tenant is ``""`` (ids have at least one
character), so it may read or write nothing that needs a key."""


@dataclass(frozen=True, slots=True)
class Param:
    """A path or query parameter, with its JSON Schema."""

    name: str
    location: str  # "path" or "query"
    schema: dict[str, Any]
    description: str
    required: bool = False


ID_SCHEMA: dict[str, Any] = {"type": "string", "pattern": ID_PATTERN}
"""A registry id's schema (tenants, types, devices, activity slugs)."""
TENANT_PARAM = Param("tenant", "path", ID_SCHEMA, "The tenant's id.", required=True)
SUBJECT_PARAM = Param(
    "subject",
    "path",
    {"type": "string", "pattern": DATA_SUBJECT_PATTERN},
    "The data subject's pseudonymous id (the tenant's; never a name or citizen number).",
    required=True,
)

ModelRef = type[BaseModel] | Callable[[], type[BaseModel]]
"""A model, or a function that returns it when the document is built (the subscription models,
derived from the delivery kinds registered by then)."""


def _model(ref: ModelRef | None) -> type[BaseModel] | None:
    if ref is None or isinstance(ref, type):
        return ref
    return ref()


@dataclass(frozen=True, slots=True)
class Route:
    """One operation: its method and path (relative to ``PREFIX``), its handler, and what the
    OpenAPI document says about it."""

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    handler: Handler
    status: int = 200
    """The status of success."""
    response: ModelRef | None = None
    """The success body's model; None: no body (204)."""
    body: ModelRef | None = None
    """The JSON request body's model."""
    body_types: tuple[str, ...] = ()
    """Media types of a body that is not a model (the import's CSV and JSON)."""
    params: tuple[Param, ...] = ()
    problems: tuple[int, ...] = ()
    """Error statuses beyond those every authenticated route may answer (401, 500)."""
    headers: tuple[str, ...] = ()
    """Response headers of success worth documenting (``Location``, ``Link``)."""
    media_type: str = "application/json"
    """The success body's media type (``text/event-stream`` for a live stream)."""
    other_media_types: tuple[str, ...] = ()
    """Further media types the success body may come in (a daily file's Parquet beside its
    CSV, the catalogue's Turtle beside its JSON-LD)."""
    cacheable: bool = False
    """Success carries a strong ``ETag`` and ``Cache-Control: public, max-age=...``, and a
    request whose ``If-None-Match`` names that ETag gets 304 Not Modified without a body (the
    open data and its catalogue)."""
    public: bool = False
    """Served without a key (the register of processing activities): the handler's principal
    is ``ANONYMOUS``, and keyless calls are rate-limited per client address."""
    resident: bool = False
    """A resident's own route (``/me/...``): no API key but a resident's token, which the
    handler checks (``cityhub.streams.api.resident_tokens.as_resident``); the principal it is
    given is ``ANONYMOUS``. Rate-limited per client address, like every call without a key."""

    @property
    def full_path(self) -> str:
        return PREFIX + self.path

    @property
    def response_model(self) -> type[BaseModel] | None:
        """``response``, resolved."""
        return _model(self.response)

    @property
    def body_model(self) -> type[BaseModel] | None:
        """``body``, resolved."""
        return _model(self.body)
