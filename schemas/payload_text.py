"""Original payload bytes inside a JSON record: as text when they are UTF-8 (readable with any
Kafka tool), else base64; ``payload_encoding`` says which. Used by the raw envelope and the
dead letter alike.

Text is not always the smaller form: JSON escapes a control character as six bytes
(``\\u0001``) and a quote or backslash as two, so a UTF-8 payload can grow sixfold once
encoded, while base64 grows it by a third. Records that must fit a size (``fit_json``) fall back
to base64 when the text form is too large.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from cityhub.schemas.errors import InvalidEnvelope

TEXT = "utf-8"
BASE64 = "base64"


def payload_to_text(payload: bytes, *, encoding: str | None = None) -> tuple[str, str]:
    """``(payload_encoding, text)`` for ``payload``: ``utf-8`` when it decodes, else ``base64``;
    ``encoding=BASE64`` forces base64."""
    if encoding != BASE64:
        try:
            return TEXT, payload.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return BASE64, base64.b64encode(payload).decode("ascii")


def payload_from_text(encoding: object, text: str) -> bytes:
    """The bytes back from :func:`payload_to_text`'s output; InvalidEnvelope if they cannot be."""
    if encoding == TEXT:
        return text.encode("utf-8")
    if encoding == BASE64:
        try:
            return base64.b64decode(text, validate=True)
        except ValueError as exc:  # binascii.Error, or non-ASCII text
            raise InvalidEnvelope(f"payload is not valid base64: {exc}") from None
    raise InvalidEnvelope(f"payload_encoding must be 'utf-8' or 'base64', not {encoding!r}")


def fit_json(encode: Callable[[str | None], bytes], max_bytes: int | None) -> bytes:
    """``encode(None)`` (the payload as text where it can be), or, when that is larger than
    ``max_bytes``, ``encode(BASE64)`` if that is smaller. The caller checks the result against
    its limit: neither form may fit."""
    data = encode(None)
    if max_bytes is None or len(data) <= max_bytes:
        return data
    packed = encode(BASE64)
    return packed if len(packed) < len(data) else data
