"""The dead-letter record: a message cityhub could not handle, with why and where.

Written to ``cityhub.deadletter`` by whichever stage gave up on it, with the original bytes (cut
to the configured maximum, flagged ``truncated``), so that nothing a broker accepted is lost and
a fixed decoder can replay it. JSON Schema: ``schemas/json/deadletter.schema.json``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from cityhub.schemas.errors import Reason
from cityhub.schemas.payload_text import payload_to_text

DEADLETTER_VERSION = 1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    stage: str
    """``bridge`` or ``normalise`` (later stages add theirs)."""
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
        """Build a dead letter, cutting the payload to ``max_payload_bytes``."""
        return cls(
            stage=stage,
            reason=reason,
            detail=detail,
            failed_at=failed_at,
            payload=payload[:max_payload_bytes],
            size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            truncated=len(payload) > max_payload_bytes,
            **where,  # type: ignore[arg-type]
        )

    def to_json(self) -> bytes:
        """Serialise for Kafka; the payload as UTF-8 text when it is, else base64."""
        encoding, text = payload_to_text(self.payload)
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
                "size": self.size,
                "sha256": self.sha256,
                "truncated": self.truncated,
                "payload_encoding": encoding,
                "payload": text,
            }
        )
