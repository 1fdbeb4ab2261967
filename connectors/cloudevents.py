"""CloudEvents 1.0 for deliveries: the ``cloudevents`` and ``cloudevents-binary`` encodings.

Each item (a canonical observation or aggregate) becomes one CloudEvent whose ``data`` is the
item's JSON exactly as the worker wrote it. The context attributes follow the NL GOV profile for
CloudEvents (Logius) and come from the item and the settings (``CloudEventsSettings``):

=================  =============================================================================
``specversion``    ``1.0``
``id``             observation: its ``event_id`` (UUIDv5 of the reading: the same on every retry,
                   replay and worker); aggregate: ``<aggregate_id>.<revision>`` (one event per
                   revision of a window). Persistent ids, as the profile asks when one exists.
``source``         ``urn:nld:oin:<oin>:systeem:<system>`` (``urn:nld:systeem:<system>`` while no
                   OIN is set)
``type``           ``<type_prefix>.observation.v1`` / ``<type_prefix>.aggregate.v1``
``subject``        the device id (an area aggregate: the area); left out for a personal item,
                   since the profile keeps personal data out of the attributes, which pass
                   intermediaries in clear; characters a CloudEvents String may not hold are
                   percent-encoded (and ``%`` itself), and a subject over 1024 bytes is left out
``time``           when cityhub registered the event, as the profile asks (not when it happened
                   in reality): an observation's ``received_at``; an aggregate's ``window_end``
                   (a window is an event once it closes). The reading's own time is in ``data``.
``datacontenttype`` ``application/json``
``dataschema``     ``<dataschema_base_url>observation.schema.json`` (or ``aggregate``), when set
``traceparent``    the item's W3C trace context, when it carries one (the Distributed Tracing
                   extension)
=================  =============================================================================

No ``sequence``: the items of a subscription come from many Kafka partitions, in no total order
a counter could state; no ``dataref``: cityhub has no per-event URL to fetch.

Modes, by the protocol bindings of CloudEvents 1.0:

- ``cloudevents`` (structured): webhook batches as ``application/cloudevents-batch+json`` (a
  JSON array of events, the JSON Event Format's batch); MQTT messages and Kafka records as one
  event each in ``application/cloudevents+json`` (MQTT 5 Content Type property; Kafka
  ``content-type`` header).
- ``cloudevents-binary``: the payload is the item's JSON, ``application/json`` in the content
  type; the attributes go as MQTT 5 User Properties named as the attributes (MQTT binding) or
  as Kafka headers ``ce_<attribute>`` (Kafka binding). Webhooks are batches: structured only.

Privacy: what reaches an encoding has passed the privacy gate already (the delivery task screens
a batch before its sink encodes it; the worker routes nothing personal to a ``kafka`` topic), so
``data`` is exactly what the ``cityhub`` encoding would send.

Pure: JSON and strings, no I/O.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from cityhub.connectors.sinks.base import Item
from cityhub.connectors.sinks.encodings import EncodedBody, EncodedMessage, EncodingContext
from cityhub.schemas.settings import CloudEventsSettings
from cityhub.schemas.trace_context import TRACEPARENT

SPECVERSION: Final = "1.0"
JSON: Final = "application/json"
STRUCTURED: Final = "application/cloudevents+json"
"""The JSON Event Format's media type (structured mode)."""
BATCH: Final = "application/cloudevents-batch+json"
"""The JSON Event Format's batch media type (a webhook batch)."""
KAFKA_PREFIX: Final = "ce_"
MAX_SUBJECT_BYTES: Final = 1024
"""A longer subject is left out (``data`` still names the device): it would cost every header
and property that carries it, for a filter nobody can write."""
PERSONAL: Final = "personal"
EVENT_TYPES: Final = {"observations": "observation", "aggregates": "aggregate"}
_FALLBACK_IDS: Final = uuid.UUID("3f5a6c1e-2b7d-4e9a-8c1f-0d6b5e4a7c21")
"""Namespace of the id of an item without its own id (never for what the worker writes)."""


def source_of(settings: CloudEventsSettings) -> str:
    """The ``source`` URN: the organisation (its OIN) and the system."""
    if settings.oin is None:
        return f"urn:nld:systeem:{settings.system}"
    return f"urn:nld:oin:{settings.oin}:systeem:{settings.system}"


def type_of(settings: CloudEventsSettings, source: str) -> str:
    """The ``type`` of the items of a subscription to ``source`` (observations, aggregates)."""
    return f"{settings.type_prefix}.{EVENT_TYPES[source]}.v1"


def dataschema_of(settings: CloudEventsSettings, source: str) -> str | None:
    """The ``dataschema`` of ``source``'s items, or None when no schema URL is configured."""
    base = settings.dataschema_base_url
    return None if base is None else f"{base}{EVENT_TYPES[source]}.schema.json"


def safe_string(text: str) -> str:
    """``text`` as a CloudEvents String: control characters (U+0000-U+001F, U+007F-U+009F),
    noncharacters, lone surrogates and ``%`` itself percent-encoded (UTF-8), so that two
    different values never look the same and every binding can carry the result."""
    if text.isascii() and text.isprintable() and "%" not in text:
        return text  # the usual case, decided in C (printable ASCII has no control character)
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_percent, text)


def _percent(match: re.Match[str]) -> str:
    raw = match.group().encode("utf-8", errors="surrogatepass")
    return "".join(f"%{b:02X}" for b in raw)


def _unsafe_class() -> re.Pattern[str]:
    """What a CloudEvents String may not hold, and ``%``: the C0 and C1 controls with DEL,
    surrogates (a ``str`` holds a proper pair as one code point, so any is a lone one), and the
    66 noncharacters (U+FDD0-U+FDEF and the last two code points of every plane)."""
    ranges = [r"\x00-\x1f", r"\x7f-\x9f", "%", r"\ud800-\udfff", r"\ufdd0-\ufdef"]
    ranges += [rf"\U{plane:04x}fffe\U{plane:04x}ffff" for plane in range(17)]
    return re.compile("[" + "".join(ranges) + "]")


_UNSAFE: Final = _unsafe_class()


def attributes(
    doc: Any,
    source: str,
    settings: CloudEventsSettings,
    headers: Sequence[tuple[str, bytes]] = (),
    content: bytes | None = None,
) -> dict[str, str]:
    """The context attributes (``data`` aside) of the item ``doc`` (its parsed JSON; ``content``
    its bytes, when known) of a subscription to ``source``: see the module docstring. Never
    raises; an item without its own id (not one the worker writes) gets a UUIDv5 of its bytes
    (of ``doc``'s JSON without ``content``)."""
    item: Mapping[str, Any] = doc if isinstance(doc, Mapping) else {}
    attrs = {
        "specversion": SPECVERSION,
        "id": _id(item, source, content),
        "source": source_of(settings),
        "type": type_of(settings, source),
    }
    subject = _subject(item, source)
    if subject is not None:
        attrs["subject"] = subject
    time = item.get("received_at" if source == "observations" else "window_end")
    if isinstance(time, str) and time:
        attrs["time"] = safe_string(time)
    attrs["datacontenttype"] = JSON
    schema = dataschema_of(settings, source)
    if schema is not None:
        attrs["dataschema"] = schema
    for name, value in headers:
        if name == TRACEPARENT:
            attrs["traceparent"] = safe_string(value.decode("utf-8", errors="replace"))
            break
    return attrs


def _id(item: Mapping[str, Any], source: str, content: bytes | None) -> str:
    if source == "observations":
        event_id = item.get("event_id")
        if isinstance(event_id, str) and event_id:
            return safe_string(event_id)
    else:
        aggregate_id, revision = item.get("aggregate_id"), item.get("revision")
        if isinstance(aggregate_id, str) and aggregate_id and type(revision) is int:
            return f"{safe_string(aggregate_id)}.{revision}"
    if content is None:
        content = orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
    return str(uuid.uuid5(_FALLBACK_IDS, hashlib.sha256(content).hexdigest()))


def _subject(item: Mapping[str, Any], source: str) -> str | None:
    """The device (an area aggregate: the area), or None for a personal item or none."""
    if item.get("classification") == PERSONAL or item.get("data_subject") is not None:
        return None
    if source == "aggregates" and item.get("grouping") == "area":
        subject = item.get("area")
    else:
        subject = item.get("device_id")
    if not isinstance(subject, str) or not subject:
        return None
    subject = safe_string(subject)
    return subject if len(subject.encode()) <= MAX_SUBJECT_BYTES else None


def _attributes_of(item: Item, context: EncodingContext) -> dict[str, str]:
    try:
        doc = orjson.loads(item.value)
    except orjson.JSONDecodeError:
        doc = None  # not the worker's JSON: still an event, with an id of its content
    return attributes(doc, context.source, context.settings.cloudevents, item.headers, item.value)


def structured_event(attrs: Mapping[str, str], data: bytes) -> bytes:
    """One event in the JSON Event Format: the attributes and ``data``, the item's JSON spliced
    in as it is (not decoded and encoded again)."""
    head = orjson.dumps(dict(attrs))
    return b"".join((head[:-1], b',"data":', data, b"}"))


def _structured(item: Item, context: EncodingContext) -> bytes:
    return structured_event(_attributes_of(item, context), item.value)


class StructuredCloudEvents:
    """``cloudevents``: structured mode (webhook batches, MQTT and Kafka messages)."""

    name = "cloudevents"
    kinds: frozenset[str] | None = frozenset({"webhook", "mqtt", "kafka"})
    media_type = STRUCTURED

    def __repr__(self) -> str:
        return "StructuredCloudEvents()"

    def encode_batch(self, items: Sequence[Item], context: EncodingContext) -> EncodedBody:
        events = b",".join(_structured(item, context) for item in items)
        return EncodedBody(BATCH, b"[" + events + b"]")

    def batch_overhead(self, context: EncodingContext) -> int:
        return 1  # "[" and "]" less the comma counted after the last item

    def item_size(self, item: Item, context: EncodingContext) -> int:
        return len(_structured(item, context)) + 1

    def encode_message(self, item: Item, context: EncodingContext) -> EncodedMessage:
        return EncodedMessage(_structured(item, context), STRUCTURED)


class BinaryCloudEvents:
    """``cloudevents-binary``: binary mode (MQTT 5 User Properties, Kafka ``ce_`` headers)."""

    name = "cloudevents-binary"
    kinds: frozenset[str] | None = frozenset({"mqtt", "kafka"})
    media_type = JSON

    def __repr__(self) -> str:
        return "BinaryCloudEvents()"

    def encode_batch(self, items: Sequence[Item], context: EncodingContext) -> EncodedBody:
        raise TypeError("binary-mode CloudEvents are one per message; a batch is structured")

    def batch_overhead(self, context: EncodingContext) -> int:
        raise TypeError("binary-mode CloudEvents are one per message; a batch is structured")

    def item_size(self, item: Item, context: EncodingContext) -> int:
        raise TypeError("binary-mode CloudEvents are one per message; a batch is structured")

    def encode_message(self, item: Item, context: EncodingContext) -> EncodedMessage:
        attrs = _attributes_of(item, context)
        content_type = attrs.pop("datacontenttype")  # the protocol's own content type
        prefix = KAFKA_PREFIX if context.kind == "kafka" else ""
        headers = tuple((prefix + name, value) for name, value in attrs.items())
        return EncodedMessage(item.value, content_type, headers)
