"""The raw envelope: what an ingest connector writes to ``cityhub.raw``, one per message.

It keeps the original payload bytes untouched, with where and when they came in, so that the
normaliser (or a later replay with a fixed decoder) can work from exactly what the sensor sent.
JSON Schema: ``schemas/json/raw-envelope.schema.json``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from cityhub.schemas.errors import InvalidEnvelope, MalformedJSON

ENVELOPE_VERSION = 1


@dataclass(frozen=True, slots=True)
class RawEnvelope:
    """One message as it was received by a connector."""

    source: str
    """The connector that received it, e.g. ``mqtt``."""
    format: str
    """The ingest format that will interpret the payload, e.g. ``tts-v3``."""
    topic: str
    """Where it came from within the source (the MQTT topic)."""
    device: str
    """The partition key: the device identity the connector could see (DevEUI or device id)."""
    received_at: str
    """When the connector received it, RFC 3339 UTC."""
    payload: bytes
    """The original bytes, untouched."""

    def to_json(self) -> bytes:
        """Serialise for Kafka. Text payloads stay readable; others are base64."""
        try:
            text = self.payload.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            text = base64.b64encode(self.payload).decode("ascii")
            encoding = "base64"
        return orjson.dumps(
            {
                "v": ENVELOPE_VERSION,
                "source": self.source,
                "format": self.format,
                "topic": self.topic,
                "device": self.device,
                "received_at": self.received_at,
                "payload_encoding": encoding,
                "payload": text,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> RawEnvelope:
        """Parse an envelope from Kafka; raise MalformedJSON or InvalidEnvelope with the cause."""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise MalformedJSON(f"raw envelope is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise InvalidEnvelope("raw envelope must be a JSON object")
        fields = {}
        for name in ("source", "format", "topic", "device", "received_at", "payload"):
            value = doc.get(name)
            if not isinstance(value, str):
                raise InvalidEnvelope(f"raw envelope field {name!r} must be a string")
            fields[name] = value
        return cls(
            source=fields["source"],
            format=fields["format"],
            topic=fields["topic"],
            device=fields["device"],
            received_at=fields["received_at"],
            payload=_decode_payload(doc.get("payload_encoding"), fields["payload"]),
        )


def _decode_payload(encoding: Any, text: str) -> bytes:
    if encoding == "utf-8":
        return text.encode("utf-8")
    if encoding == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise InvalidEnvelope(f"raw envelope payload is not valid base64: {exc}") from None
    raise InvalidEnvelope(
        f"raw envelope payload_encoding must be 'utf-8' or 'base64', not {encoding!r}"
    )
