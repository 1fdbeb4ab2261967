"""The dead letters of a batch a delivery gave up on: one per item, each bounded to fit a Kafka
record, keyed by the item's key (cut to 1 KiB), with a ``traceparent`` header that continues the
item's trace (a child span: the refusal). Pure: the task writes them."""

from __future__ import annotations

import time
from collections.abc import Sequence

from cityhub.connectors.record_size import record_size
from cityhub.connectors.sinks.base import Item
from cityhub.connectors.sinks.tracing import item_traceparent
from cityhub.schemas.deadletter import DeadLetter
from cityhub.schemas.errors import Reason
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import rfc3339
from cityhub.schemas.trace_context import TRACEPARENT

Headers = list[tuple[str, bytes]]

STAGE = "deliver"
MAX_KEY_BYTES = 1024


def delivery_dead_letters(
    batch: Sequence[Item], *, detail: str, topic: str, settings: Settings
) -> list[tuple[bytes, bytes | None, Headers]]:
    """``(dead letter JSON, key, headers)`` of every item of ``batch``, read from ``topic``. The
    items are as the topic holds them (a personal item still sealed)."""
    failed_at = rfc3339(time.time())
    letters = []
    for item in batch:
        letter = DeadLetter.of(
            stage=STAGE,
            reason=Reason.DELIVERY_FAILED,
            detail=detail,
            failed_at=failed_at,
            payload=item.value,
            max_payload_bytes=settings.bridge.max_payload_bytes,
            device=item.key.decode(errors="replace") if item.key else None,
            kafka_topic=topic,
            kafka_partition=item.partition,
            kafka_offset=item.offset,
        )
        key = item.key[:MAX_KEY_BYTES] if item.key else None
        headers = [(TRACEPARENT, item_traceparent(item).encode("ascii"))]
        room = settings.kafka.max_message_bytes - record_size(key, b"", headers)
        letters.append((letter.to_json(room), key, headers))
    return letters
