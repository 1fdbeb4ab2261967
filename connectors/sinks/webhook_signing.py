"""Standard Webhooks signatures (https://www.standardwebhooks.com, spec 1.0.0), symmetric form.

Each POST carries three headers:

- ``webhook-id``: the message id, the same on every retry of one batch (an idempotency key);
- ``webhook-timestamp``: the attempt's time, integer seconds since the epoch (new per retry);
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256(key, f"{id}.{timestamp}.{body}")>``, where
  ``key`` is the base64 after the ``whsec_`` prefix of the secret, decoded. Several signatures,
  space-separated, let a secret be rotated without downtime: sign with the new and the old.

The secret is ``whsec_`` + standard base64 of 24 to 64 random bytes (``webhook_secret_key``
reads it, ``generate_webhook_secret`` makes one of 32). The body is signed as the exact bytes
sent. Pure: ``hmac``, ``base64`` and ``secrets`` (random bytes only), no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping

from cityhub.schemas.errors import CityhubError

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret
WEBHOOK_SECRET_MIN_BYTES = 24
"""Standard Webhooks: a symmetric key is random, at least 24 bytes (192 bits) ..."""
WEBHOOK_SECRET_MAX_BYTES = 64
"""... and at most 512 bits."""
WEBHOOK_SECRET_BYTES = 32
"""What cityhub generates: 256 bits."""
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300
"""How far a timestamp may be from the verifier's clock, either way (the reference libraries'
five minutes)."""

_MSG_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
"""The spec asks that the id cannot contain ``.`` (it would shift the signed content's
fields); cityhub's ids are ``msg_`` + letters, digits, ``_`` and ``-``."""


def generate_webhook_secret() -> str:
    """A new Standard Webhooks signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(
        secrets.token_bytes(WEBHOOK_SECRET_BYTES)
    ).decode("ascii")


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (the base64 after the prefix, decoded).

    Raises ValueError, saying what is wrong, unless the secret is ``whsec_`` + standard base64
    of 24 to 64 bytes.
    """
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {WEBHOOK_SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(WEBHOOK_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"a webhook secret is {WEBHOOK_SECRET_PREFIX!r} followed by standard base64"
        ) from None
    if not WEBHOOK_SECRET_MIN_BYTES <= len(key) <= WEBHOOK_SECRET_MAX_BYTES:
        raise ValueError(
            f"a webhook secret's key must be {WEBHOOK_SECRET_MIN_BYTES} to "
            f"{WEBHOOK_SECRET_MAX_BYTES} random bytes, got {len(key)}"
        )
    return key


class InvalidWebhookSignature(CityhubError):
    """A webhook whose headers are missing or malformed, whose timestamp is outside the
    tolerance, or that carries no valid ``v1`` signature of one of the secrets."""


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    """What is signed: ``{msg_id}.{timestamp}.{body}`` as bytes."""
    return f"{msg_id}.{timestamp}.".encode() + body


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of the message with ``secret`` (a ``whsec_`` secret)."""
    digest = hmac.new(
        webhook_secret_key(secret), signed_content(msg_id, timestamp, body), hashlib.sha256
    ).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def sign(secret: str | Iterable[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one POST of ``body``.

    ``secret`` is one ``whsec_`` secret, or several (current first, then those being rotated
    out), each contributing one signature. Raises ValueError on a malformed secret, a
    ``msg_id`` outside ``[A-Za-z0-9_-]{1,128}``, a timestamp that is not a non-negative int
    (a float would be signed as ``1.5`` and fail every verifier), or no secret at all.
    """
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    if not _MSG_ID.match(msg_id):
        raise ValueError(f"webhook message id {msg_id!r} must match {_MSG_ID.pattern}")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError(f"webhook timestamp must be whole seconds since the epoch: {timestamp!r}")
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: " ".join(signature(s, msg_id, timestamp, body) for s in secrets),
    }


def verify(
    secret: str | Iterable[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Check a received webhook; return None when it is authentic and fresh.

    Header names are matched case-insensitively. Passes when the timestamp is within
    ``tolerance_s`` of ``now`` (either way) and any ``v1`` signature in the header equals the
    HMAC of any of the given secrets, compared in constant time; other versions (``v1a``) are
    skipped. Raises ``InvalidWebhookSignature`` saying which check failed otherwise. Replays
    within the tolerance are the receiver's to drop by ``webhook-id``.
    """
    secrets = [secret] if isinstance(secret, str) else list(secret)
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get(HEADER_ID)
    raw_timestamp = lowered.get(HEADER_TIMESTAMP)
    raw_signatures = lowered.get(HEADER_SIGNATURE)
    if not (msg_id and raw_timestamp and raw_signatures):
        raise InvalidWebhookSignature(
            f"missing {HEADER_ID}, {HEADER_TIMESTAMP} or {HEADER_SIGNATURE} header"
        )
    if not raw_timestamp.isascii() or not raw_timestamp.isdigit() or len(raw_timestamp) > 12:
        raise InvalidWebhookSignature(f"{HEADER_TIMESTAMP} is not whole seconds: {raw_timestamp!r}")
    timestamp = int(raw_timestamp)
    if abs(now - timestamp) > tolerance_s:
        raise InvalidWebhookSignature(
            f"{HEADER_TIMESTAMP} {timestamp} is more than {tolerance_s:g} s from now ({now:.0f})"
        )
    offered: list[bytes] = []
    for item in raw_signatures.split(" "):
        version, sep, encoded = item.partition(",")
        if version != SIGNATURE_VERSION or not sep:
            continue
        try:
            offered.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    content = signed_content(msg_id, timestamp, body)
    expected = [hmac.new(webhook_secret_key(s), content, hashlib.sha256).digest() for s in secrets]
    # Every pair is compared, no early exit, so the time taken says nothing about which matched.
    matched = False
    for candidate in offered:
        for digest in expected:
            matched |= hmac.compare_digest(candidate, digest)
    if not matched:
        raise InvalidWebhookSignature("no valid v1 signature for the configured secret(s)")
