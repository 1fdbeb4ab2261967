"""Subscriptions: what a downstream service asks for, and how cityhub delivers it.

Two shapes, as in the registry (``schemas/registry.py``): the *spec* a subscriber sends
(``SubscriptionSpec``, validated field by field) and the *record* cityhub keeps on the compacted
subscriptions topic (``Subscription``), which adds the tenant, the state and timestamps.

How items are delivered is the ``delivery`` object, one of the *delivery kinds*. Each kind is a
plugin (``cityhub.connectors.sinks``: one Protocol, one registry, the entry-point group
``cityhub.sinks``) that brings its own spec model, a subclass of :class:`DeliverySpec`. This
module knows none of them, so it stays pure and imports nothing of the layers above: the models
here type ``delivery`` by the base class, and :func:`subscription_models` derives the models whose
``delivery`` is the discriminated union of the kinds it is given. The sinks registry calls it with
every registered kind, and everything that reads a spec or a record (the API, the subscriptions
store, the OpenAPI document) validates with what it returns. The base models accept a delivery
object of a kind alone (``{"kind": "kafka"}``, with an ``encoding`` at most) and refuse one with
options, which only its kind's model can read.

A delivery may hold a secret that cityhub needs in clear (a webhook's signing key: HMAC is
symmetric). Its kind's spec model says how (``DeliverySpec.secrets``, ``public``), and:

- ``repr`` and ``str`` mask it (``SecretStr``);
- ``model_dump(mode="json")`` / ``model_dump_json()`` carries it in clear, so a record that
  holds it is never written to the subscriptions topic whole: ``split_secrets``
  (``cityhub.schemas.subscription_secrets``) parts it into the record *without* its secrets (the
  delivery's ``without_secrets()``: a webhook keeps a fingerprint of its secret) for the
  subscriptions topic, which the worker reads for routing, and a ``SubscriptionSecrets`` for the
  compacted subscription-secrets topic, which only the API (the writer) and the delivery (the
  signer) may read; ``join_secrets`` puts them together again for the sink, and only when the
  secret is the one the record's fingerprint names;
- ``Subscription.public()`` is the only form that may leave through the API: no secret (a
  webhook shows a short fingerprint so that a subscriber can tell which secret is configured).

A secret cityhub generates is handed back exactly once, by ``build_subscription``. Records written
before the split (secrets inline) still read, and their delivery still signs with the inline
secret; the API moves such secrets to the secrets topic when it starts.

Pure: pydantic models and functions, no I/O.
"""

from __future__ import annotations

import functools
import hashlib
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    StringConstraints,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from cityhub.schemas.quality import QualityCriterion
from cityhub.schemas.quantities import QuantityName as Quantity
from cityhub.schemas.registry import Area, Id, Name, Tag
from cityhub.schemas.replay import Replay as Replay  # re-exported: their home was here
from cityhub.schemas.replay import ReplaySpec as ReplaySpec

SUBSCRIPTION_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9_-]{0,62})$"
"""Subscription ids: the registry's ``ID_PATTERN`` without ``.``. The id is the last segment of
the subscription's Kafka topic (``<prefix>.sub.<tenant>.<id>``); tenant ids may contain dots, so
a dot in the id would let tenant ``a`` + id ``b.c`` and tenant ``a.b`` + id ``c`` share a topic."""

SubscriptionId = Annotated[str, StringConstraints(pattern=SUBSCRIPTION_ID_PATTERN)]

MAX_FILTER_VALUES = 1000
"""Most values in one filter list (device ids are the long ones)."""
MIN_QUEUE_SIZE = 1
MAX_QUEUE_SIZE = 10_000
DEFAULT_QUEUE_SIZE = 1000

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
    quality: QualityCriterion | None = None
    """By quality flags (``schemas/quality.py``); None: any."""

    @property
    def criteria(self) -> int:
        """How many criteria are active (non-empty lists, the box and the quality)."""
        lists = (self.quantities, self.device_types, self.areas, self.tags, self.device_ids)
        others = (self.bbox, self.quality)
        return sum(1 for values in lists if values) + sum(x is not None for x in others)


def secret_fingerprint(secret: str) -> str:
    """First 16 hex digits of the secret's SHA-256: tells secrets apart, reveals nothing."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


class Serving(StrEnum):
    """How a delivery kind is served."""

    TASK = "task"
    """A delivery task reads the subscription's topic and hands batches to the kind's sink, which
    confirms each (webhook, MQTT); the task retries, dead-letters and commits."""
    TOPIC = "topic"
    """The subscription's Kafka topic is the delivery: its subscriber consumes it (kafka)."""
    LIVE = "live"
    """The API streams the topic to each connected client (sse)."""


KIND_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
ENCODING_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
DEFAULT_ENCODING = "cityhub"
"""cityhub's own bodies: the item's canonical JSON (a webhook batch in cityhub's envelope)."""


class DeliverySpec(_Spec):
    """The base of every delivery kind's spec model: the ``delivery`` object of a subscription.

    A kind subclasses it with ``kind: Literal["<kind>"] = "<kind>"`` and its options, sets
    ``serving`` when a delivery task does not serve it, and overrides the hooks below when it
    holds a secret. The hooks are pure, so the records keep working where no sink is loaded.
    """

    serving: ClassVar[Serving] = Serving.TASK
    """How the kind is served; a kind served by its topic has no delivery queue, so
    ``on_full`` and ``queue_size`` are refused for it."""

    kind: Annotated[str, StringConstraints(pattern=KIND_PATTERN)]
    encoding: Annotated[str, StringConstraints(pattern=ENCODING_PATTERN)] = Field(
        default=DEFAULT_ENCODING,
        description="How items are written on the wire: cityhub (the default) or another "
        "registered encoding the delivery kind takes, e.g. cloudevents (webhook, mqtt, kafka) or "
        "cloudevents-binary (mqtt, kafka); one the kind does not take is refused.",
    )
    """How items are written on the wire (``cityhub.connectors.sinks.encodings``): ``cityhub``
    (the default) or another registered encoding. Which encodings a kind takes is the encodings
    registry's to say; the API refuses a pair that does not fit."""

    @model_validator(mode="before")
    @classmethod
    def _options_need_their_kind(cls, data: Any) -> Any:
        if cls is DeliverySpec and isinstance(data, dict) and set(data) - {"kind", "encoding"}:
            raise ValueError(
                f"the options of a {data.get('kind')!r} delivery are read by its kind's model: "
                "validate with the models of cityhub.connectors.sinks.subscription_models()"
            )
        return data

    def stored(
        self, previous: DeliverySpec | None, new_secret: Callable[[], str] | None
    ) -> tuple[DeliverySpec, str | None]:
        """The delivery as a record keeps it, and a secret generated for it that the subscriber
        sees once (None). ``previous`` is the replaced record's delivery of the same kind, if
        any; ``new_secret``, when given, replaces the kind's own secret generator (tests)."""
        return self, None

    def check_record(self) -> None:
        """Raise ValueError, saying what is missing, unless a record may hold this delivery."""

    def secrets(self) -> tuple[str, ...]:
        """The secrets this delivery holds in clear, for its sink; none may appear in a log,
        a message, a ``repr`` or the public form."""
        return ()

    def public(self) -> dict[str, Any]:
        """The delivery as the API shows it: the JSON form without any secret."""
        return self.model_dump(mode="json")

    def without_secrets(self) -> DeliverySpec:
        """The delivery as the subscriptions topic keeps it: without the secrets, but with what
        ``public()`` and ``with_secrets`` need to know of them (a fingerprint). A kind that holds
        none returns itself; so does one that does not override this (its secrets stay inline,
        on the subscriptions topic)."""
        return self

    def awaits_secrets(self) -> bool:
        """Whether ``without_secrets`` took secrets that the sink needs (put them back with
        ``with_secrets`` before building it)."""
        return False

    def with_secrets(self, secrets: Sequence[str]) -> DeliverySpec | None:
        """The delivery with ``secrets`` (a ``SubscriptionSecrets``'s) put back, for the sink;
        None unless they are the ones ``without_secrets`` took (by fingerprint), so that a sink
        never signs with another subscription's or an outdated secret."""
        return self


class SubscriptionSpec(_Spec):
    """What a subscriber sends to create or replace a subscription."""

    id: SubscriptionId
    name: Name
    source: Source = Source.OBSERVATIONS
    filter: SubscriptionFilter = Field(default_factory=SubscriptionFilter)
    delivery: SerializeAsAny[DeliverySpec]
    on_full: OnFull = OnFull.PAUSE
    queue_size: int = Field(DEFAULT_QUEUE_SIZE, ge=MIN_QUEUE_SIZE, le=MAX_QUEUE_SIZE, strict=True)
    """Bound of the in-memory queue in front of the sink; Kafka is the buffer behind it.
    Deliveries served by a task or a live stream only: a kind served by its topic (kafka) has no
    queue, and ``on_full`` or ``queue_size`` other than the defaults are refused for it."""
    processing_activity: Id | None = None
    """The slug of the processing activity (in the tenant's register) this subscription serves:
    without one it receives no personal items (``cityhub.streams.privacy.purpose``). Refused for
    a kind served by its topic (kafka), which never receives personal items."""

    record_model: ClassVar[type[Subscription]]
    """The record model that ``build_subscription`` makes from a spec of this model (the
    derived spec model's is the derived record model, whose delivery it can read back)."""

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
        delivery = info.data.get("delivery")
        if (
            isinstance(delivery, DeliverySpec)
            and delivery.serving is Serving.TOPIC
            and value != default
        ):
            raise ValueError(
                f"a {delivery.kind} subscription has no delivery queue (its topic is the "
                f"buffer): leave {info.field_name} out"
            )
        return value

    @field_validator("processing_activity")
    @classmethod
    def _purpose_needs_a_revocable_delivery(cls, value: str | None, info: ValidationInfo) -> Any:
        delivery = info.data.get("delivery")
        if value and isinstance(delivery, DeliverySpec) and delivery.serving is Serving.TOPIC:
            raise ValueError(
                f"a {delivery.kind} subscription never receives personal items (its reader "
                "takes them from the topic, where a withdrawal or an erasure could not stop "
                "them and no use could be logged): leave processing_activity out"
            )
        return value


class Subscription(BaseModel):
    """A subscription as the compacted topic carries it; ``public()`` is what the API returns.

    A delivery's secrets (a webhook's signing secret, always known to a record: inline or by
    fingerprint) are in clear in the JSON dump of a record that holds them: write such a record
    only after ``split_secrets`` (see the module docstring), which leaves the fingerprint.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["subscription"] = "subscription"
    tenant: str
    id: str
    name: str
    source: Source
    filter: SubscriptionFilter
    delivery: SerializeAsAny[DeliverySpec]
    on_full: OnFull
    queue_size: int
    state: SubscriptionState = SubscriptionState.ACTIVE
    created_at: str
    updated_at: str
    replay: Replay | None = None
    """The latest replay request (``POST .../replay``), None if there never was one."""
    processing_activity: str | None = None
    """The processing activity's slug (see ``SubscriptionSpec``)."""

    @model_validator(mode="after")
    def _delivery_is_complete(self) -> Subscription:
        self.delivery.check_record()
        return self

    @property
    def signing_secret(self) -> str | None:
        """The delivery's secret in clear (a webhook's signing secret), for its sink; None for
        a kind that holds none."""
        secrets = self.delivery.secrets()
        return secrets[0] if secrets else None

    def without_secrets(self) -> Subscription:
        """The record as the subscriptions topic keeps it (``DeliverySpec.without_secrets``)."""
        return self.model_copy(update={"delivery": self.delivery.without_secrets()})

    def public(self) -> dict[str, Any]:
        """The subscription as the API returns it: no secret (the delivery's ``public()``; a
        webhook shows ``has_secret`` and ``secret_fingerprint`` instead)."""
        doc = self.model_dump(mode="json", exclude={"kind", "delivery"})
        doc["delivery"] = self.delivery.public()
        return {key: doc[key] for key in type(self).model_fields if key in doc}


SubscriptionSpec.record_model = Subscription


@dataclass(frozen=True, slots=True)
class SubscriptionModels:
    """The subscription models of a set of delivery kinds: subclasses of ``SubscriptionSpec``
    and ``Subscription`` whose ``delivery`` is the discriminated union (by ``kind``) of the
    kinds' spec models, so they read every option of every kind and describe each in JSON
    Schema (``oneOf`` with a ``discriminator``)."""

    kinds: tuple[type[DeliverySpec], ...]
    spec: type[SubscriptionSpec]
    record: type[Subscription]


def subscription_models(kinds: Sequence[type[DeliverySpec]]) -> SubscriptionModels:
    """The models whose ``delivery`` is one of ``kinds`` (at least one, kind names distinct).

    The sinks registry calls this with its registered kinds
    (``cityhub.connectors.sinks.subscription_models``); a spec of the returned ``spec`` model
    builds a record of the returned ``record`` model."""
    kinds = tuple(kinds)
    if not kinds:
        raise ValueError("a subscription needs at least one delivery kind")
    names = [_kind_name(k) for k in kinds]
    if len(set(names)) != len(names):
        raise ValueError(f"delivery kinds must be distinct, got {names}")
    union: Any = Annotated[functools.reduce(operator.or_, kinds), Field(discriminator="kind")]
    record = create_model(
        "Subscription", __base__=Subscription, __module__=__name__, delivery=(union, ...)
    )
    spec = create_model(
        "SubscriptionSpec", __base__=SubscriptionSpec, __module__=__name__, delivery=(union, ...)
    )
    spec.record_model = record
    return SubscriptionModels(kinds, spec, record)


def _kind_name(model: type[DeliverySpec]) -> str:
    if not (isinstance(model, type) and issubclass(model, DeliverySpec)):
        raise TypeError(f"{model!r} is not a DeliverySpec model")
    default = model.model_fields["kind"].default
    if not isinstance(default, str):
        raise TypeError(f"{model.__name__} names no kind: give it kind: Literal[...] = '<kind>'")
    return default


def build_subscription(
    spec: SubscriptionSpec,
    *,
    tenant: str,
    now: str,
    previous: Subscription | None = None,
    new_secret: Callable[[], str] | None = None,
) -> tuple[Subscription, str | None]:
    """The record for a create (``previous`` None) or a replace, and a secret to show once.

    The delivery is stored as its kind says (``DeliverySpec.stored``): a webhook spec without a
    secret keeps ``previous``'s secret if it had one, or gets a new one (from ``new_secret``
    when given); that new secret is the second value, to return to the subscriber in the
    response and never again. Otherwise the second value is None. A replace keeps
    ``created_at`` and the state (the API pauses and resumes, not a replace). The record is of
    the spec model's ``record_model``.
    """
    kept = previous.delivery if previous is not None else None
    if kept is not None and kept.kind != spec.delivery.kind:
        kept = None
    delivery, generated = spec.delivery.stored(kept, new_secret)
    record = type(spec).record_model(
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
        processing_activity=spec.processing_activity,
    )
    return record, generated


def record_key(record: Subscription) -> str:
    """The compacted topic's key: ``subscription/<tenant>/<id>`` (ids are unique per tenant)."""
    return subscription_key(record.tenant, record.id)


def subscription_key(tenant: str, subscription_id: str) -> str:
    """The key of a subscription, on the subscriptions and on the subscription-secrets topic."""
    return f"subscription/{tenant}/{subscription_id}"


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
