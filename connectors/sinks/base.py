"""What a delivery sink is: the extension point every delivery kind plugs into.

A *delivery kind* (``kafka``, ``webhook``, ``sse``, ``mqtt``, or a plugin's) is a
:class:`DeliverySink`. It names itself (``kind``), owns the pydantic model of its ``delivery``
object (``spec_model``, a :class:`~cityhub.schemas.subscription.DeliverySpec`, which also says
how the kind is served and what its public form hides) and the model of that public form
(``public_model``, for the OpenAPI document), checks a spec in the context of the subscription
and the deployment (``check``: a webhook URL against SSRF, a topic name's length), and builds
the running :class:`Sink` of a subscription that a delivery task serves (``build``).

A :class:`Sink` makes one attempt per ``send``: it returns once the receiver confirmed the batch,
or raises :class:`~cityhub.connectors.sinks.errors.DeliveryFailed` saying whether trying again
can help; the delivery task owns the queue, retries, dead letters, commits and metrics.

One file and one registration make a new kind: ``register_sink(MySink())`` or an entry point in
the group ``cityhub.sinks`` (``cityhub.connectors.sinks``); the subscription models, the API's
models and validation, and the delivery manager all follow from the registry.

Pure: Protocols and data, no I/O; the delivery queue and the kinds build on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from cityhub.schemas.errors import CityhubError
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import DeliverySpec, Serving, Subscription

__all__ = [
    "EVENT_TYPES",
    "BatchLimits",
    "DeliverySink",
    "DeliverySpec",
    "InvalidDeliverySpec",
    "Item",
    "Resolver",
    "Serving",
    "Sink",
    "SpecContext",
]


EVENT_TYPES = {"observations": "cityhub.observations", "aggregates": "cityhub.aggregates"}
"""The event type of an item, by the subscription's source (a webhook body's ``type``, an SSE
event's ``event``)."""


@dataclass(frozen=True, slots=True)
class Item:
    """One record of a subscription's topic, as a sink receives it."""

    partition: int
    offset: int
    timestamp_ms: int
    """The record's Kafka timestamp: when the worker routed it to the subscription."""
    key: bytes | None
    value: bytes
    """The item's JSON (a canonical observation or aggregate) exactly as the worker wrote it."""
    headers: tuple[tuple[str, bytes], ...] = ()
    """The record's headers: a personal item's ``cityhub-privacy`` mark, its ``traceparent``."""

    @classmethod
    def of(cls, record: Any) -> Item:
        """The item of an aiokafka ``ConsumerRecord``."""
        headers = record.headers
        return cls(
            record.partition,
            record.offset,
            record.timestamp,
            record.key,
            record.value,
            tuple(headers) if headers else (),
        )


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """How a delivery cuts its queue into batches for a sink (``DeliveryQueue.take``)."""

    max_items: int
    max_bytes: int | None = None
    """Most of the items' sizes in one batch, each ``len(value) + item_overhead``; None: no
    byte bound. A first item larger than this on its own is sent alone."""
    item_overhead: int = 0
    """Bytes a sink adds per item (a webhook body's comma); the least it adds when
    ``item_size`` is given."""
    linger_s: float = 0.0
    """How long a partial batch waits for more items."""
    item_size: Callable[[Item], int] | None = None
    """The bytes an item takes in a batch when they are not ``len(value) + item_overhead``
    (an encoding that wraps each item: ``Encoding.item_size``)."""


@runtime_checkable
class Sink(Protocol):
    """The running sink of one subscription, as its delivery task drives it."""

    batch_limits: BatchLimits
    """How the task cuts batches for this sink."""

    async def start(self) -> None:
        """Prepare (connect); may raise ``DeliveryFailed``, which the task retries."""
        ...

    async def send(self, items: Sequence[Item], msg_id: str) -> None:
        """Deliver the batch in one attempt, or raise ``DeliveryFailed``. ``msg_id`` is the
        same on every attempt of one batch, so that a receiver can deduplicate."""
        ...

    async def stop(self) -> None:
        """Release everything (connections, sessions); idempotent. ``send`` afterwards raises
        RuntimeError."""
        ...


Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> addresses``, as ``cityhub.connectors.sinks.ssrf`` resolves host names."""


@dataclass(frozen=True, slots=True)
class SpecContext:
    """What a kind's ``check`` may look at besides the spec: the subscription it is for, the
    deployment's settings, and how host names resolve (None: the system's resolver; a test
    passes its own)."""

    tenant: str
    subscription_id: str
    settings: Settings
    resolver: Resolver | None = None


class InvalidDeliverySpec(CityhubError):
    """A delivery spec its kind refuses in context; the API answers 422 naming each field.

    ``errors`` are ``(field, message)`` pairs; a field is a dotted path in the subscription spec
    (``delivery.url``, ``id``)."""

    def __init__(self, detail: str, *, errors: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = tuple(errors) or (("delivery", detail),)


@runtime_checkable
class DeliverySink(Protocol):
    """A delivery kind; see the module docstring."""

    kind: str
    """The ``kind`` of its ``delivery`` objects: the key of the registry."""
    spec_model: type[DeliverySpec]
    """The model of the ``delivery`` object; its ``kind`` field is ``Literal[kind]``."""
    public_model: type[BaseModel]
    """The model of ``spec_model.public()``, the delivery as the API shows it (with the
    ``encoding`` every delivery has, when it is not ``spec_model`` itself)."""

    async def check(self, spec: DeliverySpec, context: SpecContext) -> None:
        """Raise :class:`InvalidDeliverySpec` unless ``spec`` (of ``spec_model``) may be used
        for ``context``'s subscription; called when a subscription is created."""
        ...

    def build(self, record: Subscription, settings: Settings) -> Sink:
        """The sink of ``record`` (whose delivery is of ``spec_model``), for a delivery task;
        nothing connects before ``start``. Only kinds served by a task are built."""
        ...
