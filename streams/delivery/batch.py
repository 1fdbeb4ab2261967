"""What a delivery sends: batches' message ids and Server-Sent Events (and, from the webhook
kind, ``webhook_body``).

Pure. Items are the bytes of canonical observations or aggregates exactly as the worker wrote
them; bodies splice them in without decoding and encoding them again.

Webhook body (``application/json``)::

    {"type": "cityhub.observations", "tenant": "...", "subscription": "...",
     "items": [<observation>, ...]}

The ``webhook-id`` of a batch is derived from the subscription and the offsets it covers, so a
retried batch carries the same id (Standard Webhooks: receivers deduplicate on it). A batch
delivered again after a crash or a replay may be cut differently and get another id; the
items' own ``event_id`` (or ``aggregate_id`` with ``revision``) identify them in every case.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cityhub.connectors.sinks.base import EVENT_TYPES, Item
from cityhub.connectors.sinks.webhook_body import webhook_body

__all__ = ["EVENT_TYPES", "message_id", "parse_event_id", "sse_event", "webhook_body"]


def message_id(tenant: str, subscription_id: str, items: Sequence[Item]) -> str:
    """``msg_`` and 32 hex digits over the subscription and the batch's first and last
    partition/offset."""
    first, last = items[0], items[-1]
    span = f"{first.partition}:{first.offset}-{last.partition}:{last.offset}"
    text = f"{tenant}\x00{subscription_id}\x00{span}"
    return "msg_" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def sse_event(source: str, item: Item) -> bytes:
    """One Server-Sent Event: ``id`` is ``<partition>:<offset>``, what a client sends back as
    ``Last-Event-ID`` to resume after it; the data is the item's JSON on one line (the JSON
    cityhub writes has no raw newlines)."""
    return b"".join(
        (
            b"id: ",
            f"{item.partition}:{item.offset}".encode(),
            b"\nevent: ",
            EVENT_TYPES[source].encode(),
            b"\ndata: ",
            item.value.replace(b"\n", b" "),
            b"\n\n",
        )
    )


def parse_event_id(text: str) -> tuple[int, int] | None:
    """The (partition, offset) of a ``Last-Event-ID``, or None when it is not one of ours:
    ASCII digits only (``isdigit`` alone takes ``²``, which ``int`` refuses, and ``٣``, which it
    reads), at most 9 and 19 of them; never an exception."""
    text = text.strip()
    if not text.isascii():
        return None
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        return None
    if len(partition) > 9 or len(offset) > 19:
        return None
    return int(partition), int(offset)
