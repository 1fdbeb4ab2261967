"""The dead-letter record: a message cityhub could not handle, with why and where.

Written to ``cityhub.deadletter`` by whichever stage gave up on it, with the original bytes (cut
to the configured maximum, flagged ``truncated``), so that nothing a broker accepted is lost and
a fixed decoder can replay it. JSON Schema: ``schemas/json/deadletter.schema.json``.

A dead letter is bounded: the strings that come from outside (detail, topics, device) are cut
to a few KiB, and ``to_json(max_bytes)`` cuts the payload further (as base64) until the record
fits, so that a dead letter can always be written, whatever the message it is about. The
``size`` and ``sha256`` always describe the whole original.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import orjson

from cityhub.schemas.errors import Reason
from cityhub.schemas.payload_text import BASE64, fit_json, payload_to_text

DEADLETTER_VERSION = 1

MAX_DETAIL_CHARS = 2048
"""A detail longer than this is cut (it may quote the input)."""
MAX_NAME_CHARS = 1024
"""Topics, device ids and format names from outside are cut to this."""
MIN_DEADLETTER_BYTES = 64 * 1024
"""The smallest ``max_bytes`` that ``to_json`` can always honour: room for every field at its
cut length, each character escaped (6 bytes), and an empty payload."""


def _cut(text: str | None, limit: int) -> str | None:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "\u2026"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    stage: str
    """Who gave up: ``bridge``, ``normalise``, ``worker`` (a record the worker's writer could not
    write: too large once encoded, or refused by Kafka), ``deliver``. The aggregator writes no
    dead letters: it skips and counts what it cannot aggregate."""
    reason: Reason
    detail: str
    """What is wrong, for a person: the field, what was expected, what came."""
    failed_at: str
    payload: bytes
    """The original bytes, cut to ``max_payload_bytes``."""
    size: int
    """Size of the original payload in bytes, before any cut."""
    sha256: str
    """Of the whole original payload: recognises the same bad message sent again."""
    truncated: bool = False
    format: str | None = None
    source_topic: str | None = None
    """The MQTT topic the message came in on."""
    device: str | None = None
    received_at: str | None = None
    kafka_topic: str | None = None
    kafka_partition: int | None = None
    kafka_offset: int | None = None
    """Where the failed record sits in Kafka, when it came from a Kafka topic."""
    target_topic: str | None = None
    """The topic the record was to be written to, when it is the write that failed (a record
    too large for Kafka, or one Kafka refused)."""

    @classmethod
    def of(
        cls,
        *,
        stage: str,
        reason: Reason,
        detail: str,
        failed_at: str,
        payload: bytes,
        max_payload_bytes: int,
        **where: str | int | None,
    ) -> DeadLetter:
        """Build a dead letter, cutting the payload to ``max_payload_bytes`` and the strings
        (detail, topics, device, format) to their bounds."""
        names = {k: _cut(v, MAX_NAME_CHARS) if isinstance(v, str) else v for k, v in where.items()}
        return cls(
            stage=stage,
            reason=reason,
            detail=_cut(detail, MAX_DETAIL_CHARS) or "",
            failed_at=failed_at,
            payload=payload[:max_payload_bytes],
            size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            truncated=len(payload) > max_payload_bytes,
            **names,  # type: ignore[arg-type]
        )

    def to_json(self, max_bytes: int | None = None) -> bytes:
        """Serialise for Kafka; the payload as UTF-8 text when it is, else base64. With
        ``max_bytes`` (at least ``MIN_DEADLETTER_BYTES``) the result is never longer: the
        payload goes as base64 when that is smaller, and is cut further (``truncated``) when
        even that does not fit."""
        data = fit_json(self._encode, max_bytes)
        if max_bytes is None or len(data) <= max_bytes:
            return data
        if max_bytes < MIN_DEADLETTER_BYTES:
            raise ValueError(f"a dead letter needs at least {MIN_DEADLETTER_BYTES} bytes")
        bare = replace(self, payload=b"", truncated=True)
        room = max_bytes - len(bare._encode(BASE64))
        # base64 takes 4 bytes for every 3: as many payload bytes as fit in the room left.
        return replace(bare, payload=self.payload[: room // 4 * 3])._encode(BASE64)

    def _encode(self, encoding: str | None) -> bytes:
        used, text = payload_to_text(self.payload, encoding=encoding)
        return orjson.dumps(
            {
                "v": DEADLETTER_VERSION,
                "stage": self.stage,
                "reason": self.reason.value,
                "detail": self.detail,
                "failed_at": self.failed_at,
                "format": self.format,
                "source_topic": self.source_topic,
                "device": self.device,
                "received_at": self.received_at,
                "kafka_topic": self.kafka_topic,
                "kafka_partition": self.kafka_partition,
                "kafka_offset": self.kafka_offset,
                "target_topic": self.target_topic,
                "size": self.size,
                "sha256": self.sha256,
                "truncated": self.truncated,
                "payload_encoding": used,
                "payload": text,
            }
        )
