"""Original payload bytes inside a JSON record: as text when they are UTF-8 (readable with any
Kafka tool), else base64; ``payload_encoding`` says which. Used by the raw envelope and the
dead letter alike."""

from __future__ import annotations

import base64
import binascii

from cityhub.schemas.errors import InvalidEnvelope


def payload_to_text(payload: bytes) -> tuple[str, str]:
    """``(payload_encoding, text)`` for ``payload``: ``utf-8`` when it decodes, else ``base64``."""
    try:
        return "utf-8", payload.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(payload).decode("ascii")


def payload_from_text(encoding: object, text: str) -> bytes:
    """The bytes back from :func:`payload_to_text`'s output; InvalidEnvelope if they cannot be."""
    if encoding == "utf-8":
        return text.encode("utf-8")
    if encoding == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise InvalidEnvelope(f"payload is not valid base64: {exc}") from None
    raise InvalidEnvelope(f"payload_encoding must be 'utf-8' or 'base64', not {encoding!r}")
