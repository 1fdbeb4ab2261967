"""Where a writer puts the records it cannot write for what they are, and how.

A dead letter continues the trace of the record it stands for (``traceparent_of``: a child span,
the refusal) and its log line names that trace (``cityhub.schemas.log_context``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cityhub.connectors.record_size import Headers, record_size
from cityhub.schemas.deadletter import DeadLetter
from cityhub.schemas.errors import CityhubError, Reason
from cityhub.schemas.log_context import about_message
from cityhub.schemas.timefmt import rfc3339
from cityhub.schemas.trace_context import TRACEPARENT, SpanPool, traceparent_in

_SPANS = SpanPool()

log = logging.getLogger("cityhub.kafka")


class RecordTooLarge(CityhubError):
    """A record larger than the writer's limit, refused before it reached Kafka (a writer with
    no dead-letter route raises it; one with a route dead-letters the record instead)."""

    def __init__(self, topic: str, size: int, limit: int) -> None:
        super().__init__(
            f"a record for {topic} would take {size} bytes, more than the limit of {limit} "
            "(kafka.max_message_bytes)"
        )
        self.topic, self.size, self.limit = topic, size, limit


@dataclass(frozen=True, slots=True)
class DeadLetterRoute:
    """Where a writer puts the records it cannot write, and how it counts them."""

    topic: str
    stage: str
    """The ``stage`` of the dead letters: whose record it was (``bridge``, ``normalise``...)."""
    max_payload_bytes: int
    """The dead letter keeps at most this much of the record."""
    count: Callable[[Reason], None] = field(default=lambda reason: None)
    """Called once per dead letter, with its reason (a metric)."""

    def letter(
        self,
        reason: Reason,
        detail: str,
        topic: str,
        key: bytes,
        value: bytes | None,
        *,
        max_record_bytes: int | None,
        headers: Headers | None = None,
    ) -> tuple[bytes, bytes]:
        """A dead letter (and its key) for a record that could not be written to ``topic``,
        sized to fit ``max_record_bytes`` with a ``traceparent`` header; counts it and logs it
        (with the trace of the record's ``headers``)."""
        self.count(reason)
        with about_message(traceparent_in(headers)):
            log.warning("%s: dead-lettered (%s)", detail, reason.value)
        letter_key = key[:1024]
        letter = DeadLetter.of(
            stage=self.stage,
            reason=reason,
            detail=detail,
            failed_at=rfc3339(time.time()),
            payload=value or b"",
            max_payload_bytes=self.max_payload_bytes,
            device=letter_key.decode(errors="replace"),
            target_topic=topic,
        )
        limit = max_record_bytes
        if limit is not None:
            limit -= record_size(letter_key, b"", traceparent_of(None))
        return letter.to_json(limit), letter_key

    def traced_letter(
        self,
        reason: Reason,
        detail: str,
        topic: str,
        key: bytes,
        value: bytes | None,
        headers: Headers | None,
        max_record_bytes: int | None,
    ) -> tuple[bytes, bytes, Headers]:
        """``letter`` for a record with ``headers``, and the dead letter's own headers (its
        ``traceparent``, ``traceparent_of``)."""
        letter, letter_key = self.letter(
            reason, detail, topic, key, value, max_record_bytes=max_record_bytes, headers=headers
        )
        return letter, letter_key, traceparent_of(headers)


def traceparent_of(headers: Headers | None) -> Headers:
    """The headers of the dead letter of a record with ``headers``: a ``traceparent`` that
    continues the record's trace (a new trace when it carries none)."""
    return [(TRACEPARENT, _SPANS.child_of(traceparent_in(headers)))]
