"""Subscriptions: what a downstream service asks for, and how cityhub delivers it.

Two shapes, as in the registry (``schemas/registry.py``): the *spec* a subscriber sends
(``SubscriptionSpec``, validated field by field) and the *record* cityhub keeps on the compacted
subscriptions topic (``Subscription``), which adds the tenant, the state and timestamps.

The webhook signing secret is the one secret here that cannot be kept as a fingerprint: the
delivery task needs it in clear to sign every batch (HMAC is symmetric). So the record *stores*
it, and:

- ``repr`` and ``str`` mask it (``SecretStr``);
- ``model_dump(mode="json")`` / ``model_dump_json()`` is the **storage form** and carries it in
  clear, so that the compacted topic can rebuild the view after a restart (whoever may read the
  subscriptions topic can sign as cityhub: restrict it with ACLs as the registry topic);
- ``Subscription.public()`` is the only form that may leave through the API: no secret, only a
  short fingerprint so that a subscriber can tell which secret is configured.

A secret cityhub generates is handed back exactly once, by ``build_subscription``.

Pure: pydantic models and functions, no I/O (``secrets`` only draws random bytes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from cityhub.schemas.errors import InvalidTimestamp
from cityhub.schemas.registry import Area, Id, Name, Tag
from cityhub.schemas.timefmt import FORM, parse_rfc3339

SUBSCRIPTION_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9_-]{0,62})$"
"""Subscription ids: the registry's ``ID_PATTERN`` without ``.``. The id is the last segment of
the subscription's Kafka topic (``<prefix>.sub.<tenant>.<id>``); tenant ids may contain dots, so
a dot in the id would let tenant ``a`` + id ``b.c`` and tenant ``a.b`` + id ``c`` share a topic."""

SubscriptionId = Annotated[str, StringConstraints(pattern=SUBSCRIPTION_ID_PATTERN)]
Quantity = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]

MAX_FILTER_VALUES = 1000
"""Most values in one filter list (device ids are the long ones)."""
MIN_QUEUE_SIZE = 1
MAX_QUEUE_SIZE = 10_000
DEFAULT_QUEUE_SIZE = 1000

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret
WEBHOOK_SECRET_MIN_BYTES = 24
"""Standard Webhooks: a symmetric key is random, at least 24 bytes (192 bits) ..."""
WEBHOOK_SECRET_MAX_BYTES = 64
"""... and at most 512 bits."""
WEBHOOK_SECRET_BYTES = 32
"""What cityhub generates: 256 bits."""
MAX_URL_LENGTH = 2048
MAX_KAFKA_TOPIC_LENGTH = 249
"""Kafka refuses longer topic names."""
MAX_MQTT_TOPIC_BYTES = 256


class Source(StrEnum):
    """What a subscription receives: canonical observations or window aggregates."""

    OBSERVATIONS = "observations"
    AGGREGATES = "aggregates"


class OnFull(StrEnum):
    """What the delivery task does when the subscription's bounded queue is full."""

    PAUSE = "pause"
    """Stop reading from Kafka until there is room; nothing is lost (the default)."""
    DROP_OLDEST = "drop_oldest"
    """Drop the oldest queued item to make room, and count it."""


class SubscriptionState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    """Paused by the subscriber: nothing is delivered, the Kafka position stays where it was."""
    FAILING = "failing"
    """The sink keeps failing (retries exhausted); set by the delivery task, not by the API."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]


class BoundingBox(_Spec):
    """A latitude/longitude rectangle (WGS 84), edges included.

    ``min_lon < max_lon``: a box across the antimeridian (180°) is two subscriptions' worth of
    filter, or a later extension; refusing it beats silently matching the rest of the world.
    """

    min_lat: Latitude
    min_lon: Longitude
    max_lat: Latitude
    max_lon: Longitude

    @model_validator(mode="after")
    def _ordered(self) -> BoundingBox:
        if not self.min_lat < self.max_lat:
            raise ValueError(f"min_lat ({self.min_lat}) must be below max_lat ({self.max_lat})")
        if not self.min_lon < self.max_lon:
            raise ValueError(
                f"min_lon ({self.min_lon}) must be below max_lon ({self.max_lon}); "
                "boxes across the antimeridian are not supported"
            )
        return self


class SubscriptionFilter(_Spec):
    """Which items a subscription receives.

    Within one list any value matches (OR); the criteria are combined with AND; an empty list
    or no ``bbox`` means *any*. An item that lacks the field a criterion looks at (no area, no
    location) does not match that criterion. The tenant rule applies on top of every filter
    (``cityhub.streams.subscriptions.filter.may_see``).
    """

    quantities: list[Quantity] = Field(default_factory=list, max_length=MAX_FILTER_VALUES)
    device_types: list[Id] = Field(default_factory=list, max_length=MAX_FILTER_VALUES)
    areas: list[Area] = Field(default_factory=list, max_length=MAX_FILTER_VALUES)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_FILTER_VALUES)
    device_ids: list[Id] = Field(default_factory=list, max_length=MAX_FILTER_VALUES)
    bbox: BoundingBox | None = None

    @property
    def criteria(self) -> int:
        """How many criteria are active (non-empty lists and the box)."""
        lists = (self.quantities, self.device_types, self.areas, self.tags, self.device_ids)
        return sum(1 for values in lists if values) + (self.bbox is not None)


def generate_webhook_secret() -> str:
    """A new Standard Webhooks signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(
        secrets.token_bytes(WEBHOOK_SECRET_BYTES)
    ).decode("ascii")


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (the base64 after the prefix, decoded).

    Raises ValueError, saying what is wrong, unless the secret is ``whsec_`` + standard base64
    of 24 to 64 bytes.
    """
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {WEBHOOK_SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(WEBHOOK_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"a webhook secret is {WEBHOOK_SECRET_PREFIX!r} followed by standard base64"
        ) from None
    if not WEBHOOK_SECRET_MIN_BYTES <= len(key) <= WEBHOOK_SECRET_MAX_BYTES:
        raise ValueError(
            f"a webhook secret's key must be {WEBHOOK_SECRET_MIN_BYTES} to "
            f"{WEBHOOK_SECRET_MAX_BYTES} random bytes, got {len(key)}"
        )
    return key


def secret_fingerprint(secret: str) -> str:
    """First 16 hex digits of the secret's SHA-256: tells secrets apart, reveals nothing."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


class KafkaDelivery(_Spec):
    """Into a Kafka topic of the subscription's own, named by cityhub, never by the subscriber:
    ``<prefix>.sub.<tenant>.<id>`` (``subscription_topic``). A subscriber that chose the name
    could write into ``cityhub.devices`` or another tenant's topic."""

    kind: Literal["kafka"] = "kafka"


class WebhookDelivery(_Spec):
    """HTTP POSTs of JSON batches, signed in the Standard Webhooks form.

    ``url`` is checked here only for its shape (http or https, no more than 2048 characters);
    the SSRF rules need DNS and live in ``cityhub.connectors.sinks.ssrf``: the API checks them
    when a subscription is created and the delivery task before each connection.
    """

    kind: Literal["webhook"] = "webhook"
    url: Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL_LENGTH)]
    secret: SecretStr | None = Field(default=None, repr=False)
    """Write-only: ``whsec_`` + base64 of 24 to 64 random bytes. Left out, cityhub generates one
    (or, on a replace, keeps the one it has) and returns a generated one once."""
    max_batch_size: int = Field(default=100, ge=1, le=1000)
    """Most items in one POST."""
    max_batch_bytes: int = Field(default=256 * 1024, ge=1024, le=4 * 1024 * 1024)
    """Most bytes in one POST body, envelope included (a single larger item is sent alone)."""
    max_wait_ms: int = Field(default=20, ge=0, le=10_000)
    """How long a partial batch may wait for more items before it is sent."""
    timeout_s: float = Field(default=10.0, gt=0, le=30, allow_inf_nan=False)
    """Per attempt, in total: the URL check, connect, send and read the (capped) response; a
    receiver that has not answered by then fails the attempt (retried with backoff)."""

    @field_validator("url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        scheme = value.split(":", 1)[0].lower() if ":" in value else ""
        if scheme not in ("http", "https"):
            raise ValueError("a webhook url starts with http:// or https://")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            webhook_secret_key(value.get_secret_value())
        return value

    @field_serializer("secret", when_used="json")
    def _reveal(self, value: SecretStr | None) -> str | None:
        # The JSON dump is the storage form (see the module docstring); public() drops it.
        return None if value is None else value.get_secret_value()


class SseDelivery(_Spec):
    """A live stream over Server-Sent Events: the subscriber connects, nothing is configured."""

    kind: Literal["sse"] = "sse"


class MqttDelivery(_Spec):
    """Republished on cityhub's MQTT broker.

    ``topic`` is relative: the sink publishes under a per-tenant root
    (``mqtt_topic(root, tenant, topic)``), so that a subscriber cannot publish into the topics
    the bridge ingests from, nor into another tenant's. No wildcards, no ``$`` system topics.
    """

    kind: Literal["mqtt"] = "mqtt"
    topic: Annotated[str, StringConstraints(min_length=1)]
    qos: Literal[0, 1] = 1
    """QoS 2 costs two more round trips for what deterministic event ids already give."""

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if len(value.encode()) > MAX_MQTT_TOPIC_BYTES:
            raise ValueError(f"an MQTT topic has at most {MAX_MQTT_TOPIC_BYTES} bytes")
        if "+" in value or "#" in value:
            raise ValueError("an MQTT topic to publish to has no wildcards (+ or #)")
        if value.startswith(("$", "/")):
            raise ValueError("an MQTT topic here starts with neither '$' nor '/'")
        if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
            raise ValueError("an MQTT topic has no control characters")
        if any(level in ("", ".", "..") for level in value.split("/")):
            raise ValueError("an MQTT topic has no empty, '.' or '..' levels")
        return value


Delivery = Annotated[
    KafkaDelivery | WebhookDelivery | SseDelivery | MqttDelivery, Field(discriminator="kind")
]


class SubscriptionSpec(_Spec):
    """What a subscriber sends to create or replace a subscription."""

    id: SubscriptionId
    name: Name
    source: Source = Source.OBSERVATIONS
    filter: SubscriptionFilter = Field(default_factory=SubscriptionFilter)
    delivery: Delivery
    on_full: OnFull = OnFull.PAUSE
    queue_size: int = Field(default=DEFAULT_QUEUE_SIZE, ge=MIN_QUEUE_SIZE, le=MAX_QUEUE_SIZE)
    """Bound of the in-memory queue in front of the sink; Kafka is the buffer behind it.
    Webhook, MQTT and SSE deliveries only: a Kafka-topic subscription has no queue, and
    ``on_full`` or ``queue_size`` other than the defaults are refused for it."""

    # Fields are validated in declaration order: ``info.data`` holds the earlier ones (when
    # they were valid). A setting that a subscription could not act on is refused, not ignored.
    @field_validator("filter")
    @classmethod
    def _filter_fits_source(
        cls, value: SubscriptionFilter, info: ValidationInfo
    ) -> SubscriptionFilter:
        if info.data.get("source") is Source.AGGREGATES:
            # Windows are per device or area: they carry neither tags nor a location, so
            # such a criterion would match nothing, silently.
            lacking = {"tags": "tags", "bbox": "location"}
            used = [name for name in lacking if getattr(value, name)]
            if used:
                raise ValueError(
                    f"aggregates carry no {' and no '.join(lacking[n] for n in used)}: an "
                    f"aggregates subscription cannot filter by {' or '.join(used)}"
                )
        return value

    @field_validator("on_full", "queue_size")
    @classmethod
    def _queue_needs_a_delivery_task(cls, value: Any, info: ValidationInfo) -> Any:
        default = cls.model_fields[str(info.field_name)].default
        if isinstance(info.data.get("delivery"), KafkaDelivery) and value != default:
            raise ValueError(
                f"a Kafka-topic subscription has no delivery queue (its topic is the buffer): "
                f"leave {info.field_name} out"
            )
        return value


class ReplaySpec(_Spec):
    """Where a subscription's delivery restarts from: a time or an offset of its topic (one of
    them). Items are delivered again from there; consumers recognise them by their ids."""

    from_time: AwareDatetime | None = None
    """The first item written to the subscription's topic at or after this time: RFC 3339 with
    an offset, from 1970-01-01T00:00:00Z up to (not including) 2100-01-01T00:00:00Z."""
    from_offset: Annotated[int, Field(ge=0)] | None = None
    """An offset of the subscription's topic (one partition); clipped to what Kafka still has."""

    @field_validator("from_time", mode="before")
    @classmethod
    def _from_time_in_range(cls, value: Any) -> Any:
        # pydantic's own parser takes years 0001 to 9999 (whose offsets overflow when the time
        # is converted to UTC) and epoch numbers: cityhub's parser and range come first.
        if value is None or (isinstance(value, datetime) and value.tzinfo is None):
            return value  # absent, or naive: AwareDatetime says what is wrong
        try:
            if isinstance(value, datetime):
                return parse_rfc3339(value.isoformat())
            if isinstance(value, str):
                return parse_rfc3339(value)
        except InvalidTimestamp as exc:
            raise ValueError(exc.why) from None  # why: no input value in an API answer
        raise ValueError(f"expected {FORM}")

    @model_validator(mode="after")
    def _exactly_one(self) -> ReplaySpec:
        if (self.from_time is None) == (self.from_offset is None):
            raise ValueError("give exactly one of from_time and from_offset")
        return self


class Replay(BaseModel):
    """A replay request as the subscription record carries it. The delivery task that owns the
    subscription applies each ``generation`` once: it seeks, then commits the new position with
    the generation in the commit's metadata, so a restarted task does not apply it again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    generation: int = Field(ge=1)
    from_time: str | None = None
    """RFC 3339."""
    from_offset: int | None = None
    requested_at: str


class Subscription(BaseModel):
    """A subscription as the compacted topic carries it; ``public()`` is what the API returns.

    For a webhook delivery ``delivery.secret`` is always set, and stored in clear in the JSON
    dump: the delivery task needs it to sign (see the module docstring). Never send the dump
    anywhere but the subscriptions topic.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["subscription"] = "subscription"
    tenant: str
    id: str
    name: str
    source: Source
    filter: SubscriptionFilter
    delivery: Delivery
    on_full: OnFull
    queue_size: int
    state: SubscriptionState = SubscriptionState.ACTIVE
    created_at: str
    updated_at: str
    replay: Replay | None = None
    """The latest replay request (``POST .../replay``), None if there never was one."""

    @model_validator(mode="after")
    def _webhook_has_secret(self) -> Subscription:
        if isinstance(self.delivery, WebhookDelivery) and self.delivery.secret is None:
            raise ValueError("a webhook subscription record holds its signing secret")
        return self

    @property
    def signing_secret(self) -> str | None:
        """The webhook signing secret in clear, for the delivery task; None for other kinds."""
        if isinstance(self.delivery, WebhookDelivery) and self.delivery.secret is not None:
            return self.delivery.secret.get_secret_value()
        return None

    def public(self) -> dict[str, Any]:
        """The subscription as the API returns it: no secret; a webhook shows
        ``has_secret`` and ``secret_fingerprint`` instead."""
        doc = self.model_dump(mode="json", exclude={"kind"})
        secret = self.signing_secret
        if secret is not None:
            delivery = doc["delivery"]
            delivery.pop("secret", None)
            delivery["has_secret"] = True
            delivery["secret_fingerprint"] = secret_fingerprint(secret)
        return doc


def build_subscription(
    spec: SubscriptionSpec,
    *,
    tenant: str,
    now: str,
    previous: Subscription | None = None,
    new_secret: Callable[[], str] = generate_webhook_secret,
) -> tuple[Subscription, str | None]:
    """The record for a create (``previous`` None) or a replace, and a secret to show once.

    A webhook spec without a secret keeps ``previous``'s secret if it had one, or gets a new one
    from ``new_secret``; that new secret is the second value, to return to the subscriber in the
    response and never again. Otherwise the second value is None. A replace keeps
    ``created_at`` and the state (the API pauses and resumes, not a replace).
    """
    delivery = spec.delivery
    generated: str | None = None
    if isinstance(delivery, WebhookDelivery) and delivery.secret is None:
        kept = previous.signing_secret if previous is not None else None
        if kept is None:
            generated = new_secret()
            webhook_secret_key(generated)  # a bad factory fails here, not when signing
        delivery = delivery.model_copy(update={"secret": SecretStr(kept or generated or "")})
    record = Subscription(
        tenant=tenant,
        id=spec.id,
        name=spec.name,
        source=spec.source,
        filter=spec.filter,
        delivery=delivery,
        on_full=spec.on_full,
        queue_size=spec.queue_size,
        state=previous.state if previous is not None else SubscriptionState.ACTIVE,
        created_at=previous.created_at if previous is not None else now,
        updated_at=now,
        replay=previous.replay if previous is not None else None,
    )
    return record, generated


def record_key(record: Subscription) -> str:
    """The compacted topic's key: ``subscription/<tenant>/<id>`` (ids are unique per tenant)."""
    return f"subscription/{record.tenant}/{record.id}"


def subscription_topic(prefix: str, tenant: str, subscription_id: str) -> str:
    """The Kafka topic of a subscription with Kafka delivery: ``<prefix>.sub.<tenant>.<id>``.

    Unambiguous because ids have no dot (the id is what follows the last dot). Kafka also
    refuses a topic that differs from an existing one only by ``.`` versus ``_``: tenants
    ``a_b`` and ``a.b`` with equal subscription ids collide, and the second creation fails
    (the delivery task reports it as a conflict; nothing is shared). Raises ValueError beyond
    Kafka's 249 characters.
    """
    topic = f"{prefix}.sub.{tenant}.{subscription_id}"
    if len(topic) > MAX_KAFKA_TOPIC_LENGTH:
        raise ValueError(f"topic {topic!r} is longer than Kafka's {MAX_KAFKA_TOPIC_LENGTH}")
    return topic


def mqtt_topic(root: str, tenant: str, topic: str) -> str:
    """Where an MQTT delivery publishes: ``<root>/<tenant>/<topic>`` (e.g. ``cityhub/sub/...``),
    so each tenant's republished topics sit under a subtree that ACLs can grant it alone."""
    return f"{root.rstrip('/')}/{tenant}/{topic}"
