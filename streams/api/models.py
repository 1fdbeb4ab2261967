"""The API's own request and response shapes, beside the registry's models.

Request bodies are the registry's specs (``TenantSpec``, ``DeviceTypeSpec``, ``DeviceSpec``)
except for keys, whose spec lives here. Responses are what the records' ``public()`` views and
the listings return; they are declared as models so that the OpenAPI document is generated from
the same code that a unit test checks the real responses against.

Pure: pydantic models, no I/O.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from cityhub.schemas.registry import (
    Classification,
    FieldMapping,
    Id,
    Location,
    Name,
    NetworkBinding,
    Role,
)
from cityhub.schemas.subscription import (
    KafkaDelivery,
    MqttDelivery,
    OnFull,
    Replay,
    Source,
    SseDelivery,
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


class WebhookDeliveryOut(_Out):
    """A webhook delivery as the API returns it: never the secret, only whether there is one and
    a short fingerprint of it (to tell which secret is configured). The options are those of
    ``WebhookDelivery``, and the delivery honours each of them."""

    kind: Literal["webhook"] = "webhook"
    url: str
    has_secret: bool
    secret_fingerprint: str
    max_batch_size: int
    """Most items in one POST."""
    max_batch_bytes: int
    """Most bytes in one POST body, envelope included (a single larger item is sent alone)."""
    max_wait_ms: int
    """How long a partial batch waits for more items before it is sent."""
    timeout_s: float
    """Per attempt, in total: URL check, connect, send and read the (capped) response."""


DeliveryOut = Annotated[
    KafkaDelivery | WebhookDeliveryOut | SseDelivery | MqttDelivery, Field(discriminator="kind")
]


class SubscriptionOut(_Out):
    """A subscription as the API returns it (``Subscription.public()``)."""

    tenant: str
    id: str
    name: str
    source: Source
    filter: SubscriptionFilter
    delivery: DeliveryOut
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


class SubscriptionCreated(SubscriptionOut):
    """The response to a creation: ``secret`` is the webhook signing secret cityhub generated,
    present only then and never shown again (absent when the request carried its own)."""

    secret: str | None = None


class SubscriptionList(_Out):
    items: list[SubscriptionOut]
    next_cursor: str | None = None


class Problem(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldErrorOut] | None = None
    """For validation problems (422): each field or query parameter and what is wrong with it."""
    request_id: str | None = None
    """Quote this to whoever runs the hub; the server's log carries the same id."""
