"""Base64url without padding (RFC 4648 §5), the one spelling of every opaque token cityhub gives
out: the history, open-data and device-health cursors and the sealed values of personal data.

``decode`` takes back exactly what ``encode`` makes: other letters, padding, a length no encoding
has, or non-zero unused bits in the last character (another spelling of the same bytes) are a
``ValueError``, so a token has one spelling and a made-up one is refused, never read as something
near it.
"""

from __future__ import annotations

import base64
import binascii
import re

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def encode(data: bytes) -> str:
    """``data`` in base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """The bytes ``encode`` made ``text`` of; ``ValueError`` for any other text."""
    if not _ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:  # pragma: no cover - the checks above leave no such text
        raise ValueError("not base64url") from exc
    if encode(data) != text:
        raise ValueError("not canonical base64url")
    return data
