"""Body encodings: how a subscription's items are written on the wire, one registry of them.

A subscription's ``delivery`` names an ``encoding`` (default ``cityhub``: the bodies cityhub has
always sent, unchanged). An encoding turns the items a delivery kind sends (canonical
observations or aggregates, as :class:`~cityhub.connectors.sinks.base.Item`) into what goes out:

- a **batch** for the kinds that send many items at once (``webhook``): one body and its
  content type (:meth:`Encoding.encode_batch`), plus what a body costs in bytes
  (:meth:`Encoding.batch_overhead`, :meth:`Encoding.item_size`) so that batches keep to the
  subscription's ``max_batch_bytes``;
- a **message** per item for the kinds that send items one by one (``mqtt``, and ``kafka``,
  whose subscription topic the worker writes): a payload, its content type, and headers
  (:meth:`Encoding.encode_message`; Kafka record headers, MQTT 5 User Properties).

Built in: ``cityhub`` (every kind; this module), ``cloudevents`` and ``cloudevents-binary``
(``cityhub.connectors.cloudevents``).

How to add an encoding
----------------------

1. Write a class that satisfies :class:`Encoding`: ``name`` (lower case, ``[a-z][a-z0-9-]*``),
   ``kinds`` (the delivery kinds it serves, e.g. ``frozenset({"webhook"})``; None for every
   kind), ``media_type`` (what its bodies are, for the docs), and the four methods. Implement
   the methods of the kinds it serves; the others raise ``TypeError`` (never called: a
   subscription that pairs the encoding with a kind it does not serve is refused with a 422 on
   ``delivery.encoding`` by :func:`check_encoding`). Keep it pure (no I/O): the worker calls
   ``encode_message`` on its hot path for ``kafka`` subscriptions, and the module must be
   listed in pyproject's ``pure`` import contract.
2. Register it: an entry point in the group ``cityhub.encodings`` (cityhub's own
   ``pyproject.toml`` lists the built-in ones; ``pip install -e .`` again to see a new entry
   point), naming an instance or a class called with no arguments. A test may call
   :func:`register_encoding` / :func:`unregister_encoding` instead.
3. Nothing else: the subscription's ``delivery.encoding`` takes the name, the API and the CLI
   pass it through, the API refuses a kind it does not serve, the webhook and MQTT sinks and
   the worker's routing to ``kafka`` topics ask this registry.

What an encoding may rely on: an item's ``value`` is the canonical JSON exactly as the worker
wrote it (``schemas/json/observation.schema.json`` or ``aggregate.schema.json``, by
``context.source``), never a personal item's opened value (the privacy gate decides on items
before any encoding sees them; a sealed personal item stays sealed inside any body).
``encode_*`` must not raise for an odd but valid item (a device id with any characters, a huge
item): a value it cannot read is a bug in the worker, and raising fails the batch (a dead letter
after the retries).

Pure: Protocols, data and JSON, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cityhub.connectors.plugins import PluginRegistry
from cityhub.connectors.sinks.base import InvalidDeliverySpec, Item
from cityhub.connectors.sinks.errors import UnknownEncoding
from cityhub.connectors.sinks.webhook_body import webhook_body
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import DEFAULT_ENCODING, ENCODING_PATTERN

__all__ = [
    "DEFAULT_ENCODING",
    "ENTRY_POINT_GROUP",
    "CityhubEncoding",
    "EncodedBody",
    "EncodedMessage",
    "Encoding",
    "EncodingContext",
    "UnknownEncoding",
    "check_encoding",
    "encoding_names",
    "get_encoding",
    "register_encoding",
    "serves",
    "unregister_encoding",
]

ENTRY_POINT_GROUP = "cityhub.encodings"

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class EncodingContext:
    """What an encoding knows besides the items: the subscription and the deployment."""

    kind: str
    """The delivery kind that sends the result (``webhook``, ``mqtt``, ``kafka``): a message's
    headers are named as that protocol's binding names them."""
    source: str
    """``observations`` or ``aggregates``: what the items are."""
    tenant: str
    subscription_id: str
    settings: Settings


@dataclass(frozen=True, slots=True)
class EncodedBody:
    """A batch as one body (a webhook POST)."""

    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class EncodedMessage:
    """One item as one message (an MQTT PUBLISH, a Kafka record)."""

    payload: bytes
    content_type: str | None = None
    """MQTT 5 Content Type property; a Kafka ``content-type`` header. None: none is sent."""
    headers: tuple[tuple[str, str], ...] = ()
    """Kafka record headers (UTF-8) or MQTT 5 User Properties, named for ``context.kind``."""


@runtime_checkable
class Encoding(Protocol):
    """A body encoding; see the module docstring for how to add one."""

    name: str
    """What ``delivery.encoding`` says; the key of the registry."""
    kinds: frozenset[str] | None
    """The delivery kinds it serves; None: every kind."""
    media_type: str
    """The media type of what it writes, for the docs (a kind may use a variant)."""

    def encode_batch(self, items: Sequence[Item], context: EncodingContext) -> EncodedBody:
        """The body of ``items`` (at least one) for a batch kind (webhook)."""
        ...

    def batch_overhead(self, context: EncodingContext) -> int:
        """Bytes of a batch body besides its items: a body of items ``i1..in`` (n >= 1) has at
        most ``batch_overhead + item_size(i1) + ... + item_size(in)`` bytes."""
        ...

    def item_size(self, item: Item, context: EncodingContext) -> int:
        """Bytes ``item`` takes in a batch body, its separator included (an upper bound)."""
        ...

    def encode_message(self, item: Item, context: EncodingContext) -> EncodedMessage:
        """``item`` as one message for a message kind (mqtt, kafka)."""
        ...


class CityhubEncoding:
    """``cityhub``: today's bodies, for every kind. A webhook batch is cityhub's envelope
    (``webhook_body``); a message is the item's canonical JSON as it is, with no headers."""

    name = DEFAULT_ENCODING
    kinds: frozenset[str] | None = None
    media_type = JSON

    def __repr__(self) -> str:
        return "CityhubEncoding()"

    def encode_batch(self, items: Sequence[Item], context: EncodingContext) -> EncodedBody:
        c = context
        return EncodedBody(JSON, webhook_body(c.source, c.tenant, c.subscription_id, items))

    def batch_overhead(self, context: EncodingContext) -> int:
        # n items take len(empty) + sum(len(item)) + (n - 1) commas.
        c = context
        return len(webhook_body(c.source, c.tenant, c.subscription_id, ())) - 1

    def item_size(self, item: Item, context: EncodingContext) -> int:
        return len(item.value) + 1

    def encode_message(self, item: Item, context: EncodingContext) -> EncodedMessage:
        return EncodedMessage(item.value)


def _name(encoding: Encoding) -> str:
    return str(encoding.name)


def _check(encoding: Encoding) -> None:
    if not (isinstance(encoding.name, str) and re.fullmatch(ENCODING_PATTERN, encoding.name)):
        raise TypeError(f"{encoding!r}: name {encoding.name!r} does not match {ENCODING_PATTERN}")
    kinds = encoding.kinds
    if kinds is not None and not (isinstance(kinds, frozenset) and kinds):
        raise TypeError(f"{encoding!r}: kinds must be None or a non-empty frozenset of kinds")


_registry: PluginRegistry[Encoding] = PluginRegistry(
    kind="body encoding",
    protocol=Encoding,
    entry_point_group=ENTRY_POINT_GROUP,
    not_found=UnknownEncoding,
    key=_name,
    check=_check,
)
_registry.register(CityhubEncoding())


def register_encoding(encoding: Encoding, *, replace: bool = False) -> None:
    """Make ``encoding`` available as ``encoding.name``: ValueError if the name is taken
    (unless ``replace``), TypeError if it is not an :class:`Encoding`."""
    _registry.register(encoding, replace=replace)


def unregister_encoding(name: str) -> Encoding | None:
    """Forget an encoding (for a test that registered its own); returns it, or None."""
    return _registry.unregister(name)


def get_encoding(name: str) -> Encoding:
    """The encoding ``name``; raises :class:`UnknownEncoding` when none is registered."""
    return _registry.get(name)


def encoding_names() -> list[str]:
    """Every registered encoding, built in and plugins, sorted."""
    return _registry.names()


def serves(encoding: Encoding, kind: str) -> bool:
    """Whether ``encoding`` may be used with deliveries of ``kind``."""
    return encoding.kinds is None or kind in encoding.kinds


def check_encoding(kind: str, name: str) -> Encoding:
    """The encoding ``name`` if it serves ``kind``; else :class:`InvalidDeliverySpec` on
    ``delivery.encoding`` saying which encodings the kind takes (the API's 422)."""
    try:
        encoding = get_encoding(name)
    except UnknownEncoding:
        encoding = None
    if encoding is not None and serves(encoding, kind):
        return encoding
    usable = [n for n in encoding_names() if serves(get_encoding(n), kind)]
    why = "is not an encoding" if encoding is None else f"does not serve {kind} deliveries"
    message = f"{name!r} {why}; a {kind} delivery takes: {', '.join(usable)}"
    raise InvalidDeliverySpec(message, errors=[("delivery.encoding", message)])
