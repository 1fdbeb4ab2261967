"""The ``webhook`` delivery kind: HTTP POSTs of JSON batches, signed in the Standard Webhooks
form, by a delivery task through :class:`~cityhub.connectors.sinks.webhook.WebhookSink`.

The spec's ``url`` is checked for its shape by the model, and against SSRF (which needs DNS:
``cityhub.connectors.sinks.ssrf``) by ``check`` when a subscription is created; the sink checks
it again before each connection. The signing secret is write-only: a record always holds one
(generated when the spec has none, and shown once), stores it in clear for signing, and its public
form shows only ``has_secret`` and a ``secret_fingerprint``. On the subscriptions topic the record
keeps only that fingerprint (``without_secrets``); the secret itself is on the subscription-secrets
topic, and the delivery puts it back (``with_secrets``) before it builds the sink
(``cityhub.schemas.subscription_secrets``).

The body of a batch is written by the subscription's ``delivery.encoding``
(``cityhub.connectors.sinks.encodings``): ``cityhub`` (the default) is ``webhook_body``'s envelope
around the items, ``cloudevents`` a CloudEvents JSON batch; the signature covers the body either
way. The request's ``traceparent`` header is the delivery's span, a child of the first item's
trace (``cityhub.connectors.sinks.tracing``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_serializer,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from cityhub.connectors.sinks.base import (
    BatchLimits,
    DeliverySpec,
    InvalidDeliverySpec,
    Item,
    Sink,
    SpecContext,
)
from cityhub.connectors.sinks.encodings import (
    CityhubEncoding,
    Encoding,
    EncodingContext,
    get_encoding,
)
from cityhub.connectors.sinks.ssrf import (
    UnresolvableWebhookHost,
    UnsafeWebhookUrl,
    check_webhook_url,
    system_resolver,
)
from cityhub.connectors.sinks.tracing import batch_traceparent
from cityhub.connectors.sinks.webhook import WebhookSink
from cityhub.connectors.sinks.webhook_signing import generate_webhook_secret, webhook_secret_key
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import (
    MAX_URL_LENGTH,
    Subscription,
    secret_fingerprint,
)


class WebhookDelivery(DeliverySpec):
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
    secret_fingerprint: SkipJsonSchema[str | None] = Field(default=None, pattern=r"^[0-9a-f]{16}$")
    """Set in a record whose secret is kept apart (``without_secrets``), never with ``secret``;
    not an option of the spec (the JSON Schema leaves it out, and ``stored`` drops one sent)."""
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
        # The JSON dump is the storage form (see cityhub.schemas.subscription); public() drops it.
        return None if value is None else value.get_secret_value()

    def stored(
        self, previous: DeliverySpec | None, new_secret: Callable[[], str] | None
    ) -> tuple[DeliverySpec, str | None]:
        """A spec without a secret keeps ``previous``'s, or gets a new one, shown once. The
        result holds its secret inline (and no fingerprint): ``without_secrets`` parts them."""
        if self.secret is not None:
            return self.model_copy(update={"secret_fingerprint": None}), None
        kept = previous.secrets() if previous is not None else ()
        if kept:
            update = {"secret": SecretStr(kept[0]), "secret_fingerprint": None}
            return self.model_copy(update=update), None
        generated = (new_secret or generate_webhook_secret)()
        webhook_secret_key(generated)  # a bad factory fails here, not when signing
        update = {"secret": SecretStr(generated), "secret_fingerprint": None}
        return self.model_copy(update=update), generated

    def check_record(self) -> None:
        if self.secret is None and self.secret_fingerprint is None:
            raise ValueError(
                "a webhook subscription record holds its signing secret or the secret's fingerprint"
            )
        if self.secret is not None and self.secret_fingerprint is not None:
            raise ValueError("a webhook subscription record holds its secret or its fingerprint")

    def secrets(self) -> tuple[str, ...]:
        return () if self.secret is None else (self.secret.get_secret_value(),)

    def without_secrets(self) -> WebhookDelivery:
        """The secret's fingerprint instead of the secret."""
        if self.secret is None:
            return self
        fingerprint = secret_fingerprint(self.secret.get_secret_value())
        return self.model_copy(update={"secret": None, "secret_fingerprint": fingerprint})

    def awaits_secrets(self) -> bool:
        return self.secret is None and self.secret_fingerprint is not None

    def with_secrets(self, secrets: Sequence[str]) -> WebhookDelivery | None:
        """The secret back in place of its fingerprint; None if ``secrets`` do not start with
        the secret of that fingerprint (an older or newer one than this record's)."""
        if not self.awaits_secrets():
            return self
        if not secrets or secret_fingerprint(secrets[0]) != self.secret_fingerprint:
            return None
        return self.model_copy(update={"secret": SecretStr(secrets[0]), "secret_fingerprint": None})

    def public(self) -> dict[str, Any]:
        """No secret: ``has_secret`` and a 16-digit ``secret_fingerprint`` instead."""
        doc = self.model_dump(mode="json", exclude={"secret", "secret_fingerprint"})
        fingerprint = (
            secret_fingerprint(self.secret.get_secret_value())
            if self.secret is not None
            else self.secret_fingerprint
        )
        if fingerprint is not None:
            doc["has_secret"] = True
            doc["secret_fingerprint"] = fingerprint
        return doc


class WebhookDeliveryOut(BaseModel):
    """A webhook delivery as the API returns it: never the secret, only whether there is one and
    a short fingerprint of it (to tell which secret is configured). The options are those of
    ``WebhookDelivery``, and the delivery honours each of them."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["webhook"] = "webhook"
    encoding: str
    """How a batch is written: ``cityhub``, ``cloudevents`` (``application/cloudevents-batch+json``)
    or a plugin's."""
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


def webhook_batch_limits(
    record: Subscription,
    delivery: WebhookDelivery,
    encoding: Encoding | None = None,
    context: EncodingContext | None = None,
) -> BatchLimits:
    """The batches of a webhook subscription: at most ``max_batch_size`` items in a body of at
    most ``max_batch_bytes`` (a single larger item alone), waiting up to ``max_wait_ms``.

    A body of n items has at most ``batch_overhead + sum(item_size)`` bytes (the encoding's
    sizes), so the items' budget is ``max_batch_bytes - batch_overhead``. For ``cityhub``'s
    envelope an item takes ``len(item) + 1`` (its comma), which the queue counts without a
    call per item. ``encoding`` and ``context`` default to the delivery's and the
    environment's settings."""
    if encoding is None:
        encoding = get_encoding(delivery.encoding)
    if context is None:
        context = _context(record, Settings())
    return BatchLimits(
        max_items=delivery.max_batch_size,
        max_bytes=delivery.max_batch_bytes - encoding.batch_overhead(context),
        item_overhead=1,
        linger_s=delivery.max_wait_ms / 1000,
        item_size=None if isinstance(encoding, CityhubEncoding) else _sizes(encoding, context),
    )


SIZES_KEPT = 10_000
"""Item sizes a webhook's batching remembers (by partition and offset: a record's content never
changes) before it starts afresh."""


def _sizes(encoding: Encoding, context: EncodingContext) -> Callable[[Item], int]:
    """``encoding.item_size`` remembered per record: the queue measures its first items again
    each time a lingering batch wakes, and an encoding may have to encode an item to know."""
    known: dict[tuple[int, int], int] = {}

    def size(item: Item) -> int:
        where = (item.partition, item.offset)
        found = known.get(where)
        if found is None:
            if len(known) >= SIZES_KEPT:
                known.clear()
            found = known[where] = encoding.item_size(item, context)
        return found

    return size


def _context(record: Subscription, settings: Settings) -> EncodingContext:
    return EncodingContext("webhook", record.source.value, record.tenant, record.id, settings)


class WebhookTarget:
    """A webhook subscription's sink: POSTs each batch as one signed JSON body, by the
    subscription's own batch options and timeout."""

    def __init__(self, record: Subscription, settings: Settings) -> None:
        delivery = record.delivery
        if not isinstance(delivery, WebhookDelivery) or delivery.secret is None:
            raise ValueError(
                "a webhook target needs a webhook subscription with its secret (a record of the "
                "subscriptions topic holds its fingerprint: join_secrets puts the secret back)"
            )
        self._encoding = get_encoding(delivery.encoding)
        self._context = _context(record, settings)
        self.batch_limits = webhook_batch_limits(record, delivery, self._encoding, self._context)
        self._sink = WebhookSink(
            delivery.url,
            delivery.secret.get_secret_value(),
            allowed_hosts=settings.subscriptions.webhook_allowed_hosts,
            timeout=delivery.timeout_s,
            max_response_bytes=settings.delivery.webhook_max_response_bytes,
        )

    def __repr__(self) -> str:
        return f"WebhookTarget({self._sink!r})"

    async def start(self) -> None:
        return None

    async def send(self, items: Sequence[Item], msg_id: str) -> None:
        body = self._encoding.encode_batch(items, self._context)
        await self._sink.send(
            msg_id,
            body.data,
            content_type=body.content_type,
            traceparent=batch_traceparent(items),
        )

    async def stop(self) -> None:
        await self._sink.close()


class WebhookKind:
    """The ``webhook`` kind."""

    kind = "webhook"
    spec_model: type[DeliverySpec] = WebhookDelivery
    public_model: type[BaseModel] = WebhookDeliveryOut

    def __repr__(self) -> str:
        return "WebhookKind()"

    async def check(self, spec: DeliverySpec, context: SpecContext) -> None:
        """The URL against the SSRF rules (``ssrf.check_webhook_url``), as the sink checks it
        before each connection: refused, or a host that does not resolve, is a field error."""
        assert isinstance(spec, WebhookDelivery)
        try:
            await check_webhook_url(
                spec.url,
                allowed_hosts=frozenset(context.settings.subscriptions.webhook_allowed_hosts),
                resolver=context.resolver or system_resolver,
            )
        except UnsafeWebhookUrl as exc:
            raise InvalidDeliverySpec(
                f"the webhook url is refused: {exc.why}", errors=[("delivery.url", exc.why)]
            ) from None
        except UnresolvableWebhookHost as exc:
            raise InvalidDeliverySpec(
                f"the webhook url is refused: {exc}", errors=[("delivery.url", str(exc))]
            ) from None

    def build(self, record: Subscription, settings: Settings) -> Sink:
        return WebhookTarget(record, settings)
