"""The raw envelope: what an ingest connector writes to ``cityhub.raw``, one per message.

It keeps the original payload bytes untouched, with where and when they came in, so that the
normaliser (or a later replay with a fixed decoder) can work from exactly what the sensor sent.
JSON Schema: ``schemas/json/raw-envelope.schema.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from cityhub.schemas.errors import InvalidEnvelope, MalformedJSON
from cityhub.schemas.payload_text import fit_json, payload_from_text, payload_to_text
from cityhub.schemas.timefmt import bounded_repr

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

    def to_json(self, max_bytes: int | None = None) -> bytes:
        """Serialise for Kafka. Text payloads stay readable; others are base64, and so is a text
        payload whose escaped form would exceed ``max_bytes`` when base64 is smaller (the caller
        still checks the length: a payload may be too large either way)."""

        def encode(encoding: str | None) -> bytes:
            used, text = payload_to_text(self.payload, encoding=encoding)
            return orjson.dumps(
                {
                    "v": ENVELOPE_VERSION,
                    "source": self.source,
                    "format": self.format,
                    "topic": self.topic,
                    "device": self.device,
                    "received_at": self.received_at,
                    "payload_encoding": used,
                    "payload": text,
                }
            )

        return fit_json(encode, max_bytes)

    @classmethod
    def from_json(cls, data: bytes) -> RawEnvelope:
        """Parse an envelope from Kafka; raise MalformedJSON or InvalidEnvelope with the cause."""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise MalformedJSON(f"raw envelope is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise InvalidEnvelope("raw envelope must be a JSON object")
        version = doc.get("v")
        if version != ENVELOPE_VERSION or isinstance(version, bool):
            # Read as version 1, another version's fields could mean something else.
            shown = bounded_repr(version)[:20]
            raise InvalidEnvelope(
                f"raw envelope version {shown} is not the one this hub reads "
                f"({ENVELOPE_VERSION}); a record of another version, or not written by a bridge"
            )
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
            payload=payload_from_text(doc.get("payload_encoding"), fields["payload"]),
        )
