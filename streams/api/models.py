"""The API's own request and response shapes, beside the registry's models.

Request bodies are the registry's specs (``TenantSpec``, ``DeviceTypeSpec``, ``DeviceSpec``)
except for keys, whose spec lives here. Responses are what the records' ``public()`` views and
the listings return; they are declared as models so that the OpenAPI document is generated from
the same code that a unit test checks the real responses against. A subscription's ``delivery``
is one of the registered delivery kinds' public forms: ``subscription_out_models`` derives the
subscription responses from those (the route table passes the sinks registry's).

Pure: pydantic models, no I/O.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from cityhub.schemas.quality import QualitySpec
from cityhub.schemas.registry import (
    Classification,
    FieldMapping,
    Id,
    Location,
    Name,
    NetworkBinding,
    NgsiLdSpec,
    Role,
)
from cityhub.schemas.subscription import (
    OnFull,
    Replay,
    Source,
    SubscriptionFilter,
    SubscriptionState,
)


class ApiKeySpec(BaseModel):
    """What an admin sends to create an API key."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    tenant: Id
    """The tenant the key acts for (an admin key's tenant only labels it)."""
    role: Role
    name: Name
    """Who or what uses the key, so that an operator knows which one to revoke."""


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantOut(_Out):
    id: str
    name: str
    created_at: str
    updated_at: str


class DeviceTypeOut(_Out):
    tenant: str
    id: str
    name: str
    decoder: str
    fields: list[FieldMapping]
    only_mapped: bool
    classification: Classification
    created_at: str
    updated_at: str
    personal_data_category: str | None = None
    ngsi_ld: NgsiLdSpec | None = None
    """Its NGSI-LD view (Smart Data Model, attribute names); null: the defaults."""
    expected_interval_seconds: int | None = None
    """How often its devices report, in seconds (a device may override it); null: the hub's
    default (``health.default_expected_interval_seconds``)."""
    quality: QualitySpec | None = None
    """Its quality limits per quantity and fault fields (docs/quality.md); null: the hub's."""


class DeviceOut(_Out):
    """A device as the API returns it: ``has_app_key`` instead of any trace of the key."""

    tenant: str
    id: str
    name: str
    type: str
    dev_eui: str | None
    location: Location | None
    area: str | None
    tags: list[str]
    active: bool
    has_app_key: bool
    network: NetworkBinding | None = None
    """The network-server application the device's uplinks must come from, if it is bound."""
    data_subject: str | None = None
    """The linked data subject's pseudonymous id: only in answers to the device's own tenant's
    keys, absent in every other answer."""
    expected_interval_seconds: int | None = None
    """How often the device reports, in seconds, overriding its type's; null: its type's."""
    created_at: str
    updated_at: str


class ApiKeyOut(_Out):
    id: str
    tenant: str
    role: Role
    name: str
    created_at: str
    revoked_at: str | None = None


class ApiKeyCreated(ApiKeyOut):
    """The one response that carries a key's secret; it is never shown again."""

    secret: str


class TenantList(_Out):
    items: list[TenantOut]
    next_cursor: str | None = None


class DeviceTypeList(_Out):
    items: list[DeviceTypeOut]
    next_cursor: str | None = None
    """Pass as ``cursor`` for the next page; null on the last page."""


class DeviceList(_Out):
    items: list[DeviceOut]
    next_cursor: str | None = None
    """Pass as ``cursor`` for the next page; null on the last page."""


class ApiKeyList(_Out):
    items: list[ApiKeyOut]
    next_cursor: str | None = None


class FieldErrorOut(_Out):
    field: str
    """Dotted path of the offending field (``location.latitude``, ``tags.2``), or the name of
    a query parameter or CSV column."""
    message: str


class RowResultOut(_Out):
    row: int
    """Rows count from 1: the first data row of a CSV (after its header), or the first element
    of a JSON array."""
    line: int | None = None
    """Where the row starts in the CSV file (header and blank lines counted); for JSON, the
    element's position."""
    id: str | None
    status: str = Field(description="created, updated or error")
    errors: list[FieldErrorOut] = Field(default_factory=list)


class ImportReportOut(_Out):
    created: int
    updated: int
    failed: int
    ignored_columns: list[str] = Field(default_factory=list)
    """CSV header columns cityhub does not know (The Things Stack's own are recognised)."""
    rows: list[RowResultOut]


class PersonalItemsOut(_Out):
    """Whether a subscription receives personal items, and on what terms."""

    received: bool
    reason: str | None = None
    """Why not, when it does not."""
    processing_activity: str | None = None
    terms: str | None = None


class SubscriptionOut(_Out):
    """A subscription as the API returns it (``Subscription.public()``)."""

    tenant: str
    id: str
    name: str
    source: Source
    filter: SubscriptionFilter
    delivery: dict[str, Any]
    """The delivery's public form (never a secret); ``subscription_out_models`` types it by the
    registered kinds."""
    on_full: OnFull
    queue_size: int
    state: SubscriptionState
    created_at: str
    updated_at: str
    replay: Replay | None = None
    """The latest replay request, if any."""
    topic: str
    """The subscription's own Kafka topic: a Kafka-topic subscriber consumes it; every other
    delivery reads from it."""
    processing_activity: str | None = None
    """The processing activity it serves (a slug in the tenant's register), if any."""
    personal_items: PersonalItemsOut


class SubscriptionCreated(SubscriptionOut):
    """The response to a creation: ``secret`` is the webhook signing secret cityhub generated,
    present only then and never shown again (absent when the request carried its own)."""

    secret: str | None = None


class SubscriptionList(_Out):
    items: list[SubscriptionOut]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionOutModels:
    """The subscription responses of a set of delivery kinds."""

    out: type[SubscriptionOut]
    created: type[SubscriptionCreated]
    list: type[SubscriptionList]


@functools.lru_cache(maxsize=8)
def subscription_out_models(public: Sequence[type[BaseModel]]) -> SubscriptionOutModels:
    """The subscription responses whose ``delivery`` is the discriminated union (by ``kind``)
    of the delivery kinds' public models ``public`` (a tuple, at least one): subclasses of
    ``SubscriptionOut``, ``SubscriptionCreated`` and ``SubscriptionList`` under their names."""
    if not public:
        raise ValueError("the responses need at least one delivery kind's public model")
    union: Any = Annotated[functools.reduce(operator.or_, public), Field(discriminator="kind")]
    out = create_model(
        "SubscriptionOut",
        __base__=SubscriptionOut,
        __module__=__name__,
        __doc__=SubscriptionOut.__doc__,
        delivery=(union, ...),
    )
    bases: tuple[type[Any], ...] = (out, SubscriptionCreated)  # out's union, Created's secret
    created: type[SubscriptionCreated] = create_model(
        "SubscriptionCreated",
        __base__=bases,
        __module__=__name__,
        __doc__=SubscriptionCreated.__doc__,
    )
    listing = create_model(
        "SubscriptionList",
        __base__=SubscriptionList,
        __module__=__name__,
        __doc__=SubscriptionList.__doc__,
        items=(list[out], ...),  # type: ignore[valid-type]
    )
    return SubscriptionOutModels(out, created, listing)


class Problem(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    """What went wrong and what to do about it (every problem of this API has one)."""
    instance: str | None = None
    errors: list[FieldErrorOut] | None = None
    """For invalid input (400): each field or query parameter and what is wrong with it."""
    request_id: str | None = None
    """Quote this to whoever runs the hub; the server's log carries the same id."""
