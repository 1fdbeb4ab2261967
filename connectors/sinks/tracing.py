"""The W3C trace context a delivery sends on, continuing the trace each item carries.

Every item of a subscription's topic carries the ``traceparent`` of the worker's routing (a
Kafka header). A delivery is the next hop:

- a **batch** (a webhook POST) is one span, a child of its **first** item's trace: the delivery
  task starts it (:func:`delivery_span`) and names it in its log lines
  (``cityhub.schemas.log_context``); the request's ``traceparent`` header is that span
  (:func:`batch_traceparent`). The other items' traces are not lost: a CloudEvents body gives
  every event its own ``traceparent`` attribute (the Distributed Tracing extension), and the
  ``cityhub`` body's items are found by their ids;
- a **message per item** (MQTT) is one span per item, a child of that item's trace
  (:func:`item_traceparent`), sent as the MQTT 5 User Property ``traceparent``.

An item without a valid ``traceparent`` (written before cityhub carried one on every record)
gets a new trace. Span ids come from one pool per process (``SpanPool``).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from cityhub.connectors.sinks.base import Item
from cityhub.schemas import log_context
from cityhub.schemas.trace_context import (
    SpanPool,
    TraceContext,
    parse_traceparent,
    traceparent_in,
)

_SPANS = SpanPool()


def delivery_span(items: Sequence[Item]) -> TraceContext:
    """A new span for delivering ``items`` as one batch: a child of the first item's trace (a
    new trace when it carries none, or when there is no item)."""
    parent = traceparent_in(items[0].headers) if items else None
    context = parse_traceparent(_SPANS.child_of(parent))
    assert context is not None  # child_of makes valid version-00 values only
    return context


def batch_traceparent(items: Sequence[Item]) -> str:
    """The ``traceparent`` a request carrying ``items`` sends: the span of the delivery the
    caller runs in (set by the delivery task), or else a new one (``delivery_span``)."""
    about = log_context.current()
    span = about.trace if about is not None else delivery_span(items)
    return span.header().decode("ascii")


def item_traceparent(item: Item) -> str:
    """The ``traceparent`` of a message that carries ``item`` alone: a child span of the
    item's trace (a new trace when it carries none)."""
    return _SPANS.child_of(traceparent_in(item.headers)).decode("ascii")


def item_device(item: Item, source: str) -> str | None:
    """The device an item is about, for log lines: an observation's record key (observations
    are keyed by device; an aggregate's key names a group, which may be an area: None)."""
    if source != "observations" or not item.key:
        return None
    return item.key.decode(errors="replace")


@contextmanager
def delivering(items: Sequence[Item], source: str) -> Iterator[TraceContext]:
    """Within the block, the delivery of the batch ``items`` (of a subscription to ``source``)
    is a new span (``delivery_span``): log lines name it and its first item's device, and the
    sinks send it on (``batch_traceparent``). Yields the span."""
    span = delivery_span(items)
    with log_context.about_message(span, item_device(items[0], source) if items else None):
        yield span
