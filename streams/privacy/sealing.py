"""Sealing personal values with a data subject's key, and wrapping those keys.

Pure: no I/O (the caller brings the keys; ``os.urandom`` is the only thing read from outside).

A *sealed* value is the personal fields of one observation (``value``, ``location``, ``extra``),
serialised with orjson and encrypted with AES-256-GCM under the subject's data key::

    v1.<key id>.<base64url without padding of (nonce || ciphertext || tag)>

with a fresh random 96-bit nonce per seal. The associated data is ``tenant \\x1f subject \\x1f
event_id``: a token opens only as the value of that event of that subject of that tenant, so it
cannot be moved to another subject's or another event's record. Once the subject's keys are
gone (crypto-shredding, ``cityhub.streams.privacy.erasure``) no token of theirs opens again,
wherever a copy of it lies.

Data keys are stored wrapped with the key-encryption key (KEK) from the settings, by AES key
wrap (RFC 3394, NIST SP 800-38F "KW"). Chosen over AES-GCM with the KEK because it is the
standard construction made for exactly this (key material under a key-encrypting key): no nonce
to draw or store, an integrity check built in (a changed byte does not unwrap), and 40 bytes for
a 32-byte key. Its one weakness against AES-GCM is that it binds no context, so a wrapped key
could be copied under another subject's record by someone who can write the keys' topic; the
view therefore accepts a key only where its record key, its fields and its key id agree, and
``open_sealed`` opens a token only with a key of the token's own tenant and subject. Whoever can
write that topic can delete keys anyway: its ACL is the defence there, not the cipher.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from cityhub.schemas import base64url
from cityhub.schemas.errors import ConfigurationError, KeyErased, SealingError, Unsealable

__all__ = [
    "KEY_BYTES",
    "MAX_TOKEN_CHARS",
    "KeyErased",
    "SealingError",
    "SubjectKey",
    "Unsealable",
    "decode_kek",
    "new_subject_key",
    "open_sealed",
    "seal",
    "unwrap",
    "wrap",
]

VERSION = "v1"
KEY_BYTES = 32
"""AES-256: the data keys and the KEK are 32 random bytes."""
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_TOKEN_CHARS = 1024 * 1024
"""A token longer than this is refused unread (Kafka's records are smaller anyway)."""
WRAPPED_BYTES = KEY_BYTES + 8
"""RFC 3394 adds one 64-bit block to what it wraps."""
_SEPARATOR = "\x1f"
_KEY_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class SubjectKey:
    """One data key of one data subject of one tenant. ``secret`` never shows in a repr."""

    tenant: str
    subject: str
    key_id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _KEY_ID.fullmatch(self.key_id):
            raise SealingError("a data key's id must be 32 lowercase hexadecimal digits")
        if len(self.secret) != KEY_BYTES:
            raise SealingError(f"a data key must be {KEY_BYTES} bytes")
        if _SEPARATOR in self.tenant or _SEPARATOR in self.subject:
            raise SealingError("a tenant or subject id cannot hold the unit separator")


def new_subject_key(tenant: str, subject: str) -> SubjectKey:
    """A new random data key (and a random key id) for ``subject`` of ``tenant``."""
    return SubjectKey(tenant, subject, os.urandom(16).hex(), os.urandom(KEY_BYTES))


def seal(key: SubjectKey, fields: dict[str, Any], *, event_id: str) -> str:
    """The token that holds ``fields`` (anything orjson serialises) for event ``event_id`` of
    ``key``'s subject; a new nonce each time, so sealing the same fields twice differs."""
    nonce = os.urandom(NONCE_BYTES)
    plaintext = orjson.dumps(fields)
    sealed = AESGCM(key.secret).encrypt(nonce, plaintext, _aad(key.tenant, key.subject, event_id))
    token = f"{VERSION}.{key.key_id}.{base64url.encode(nonce + sealed)}"
    if len(token) > MAX_TOKEN_CHARS:
        raise SealingError(f"the sealed fields exceed {MAX_TOKEN_CHARS} characters")
    return token


def open_sealed(
    token: str,
    *,
    tenant: str,
    subject: str,
    event_id: str,
    key_of: Callable[[str], SubjectKey | None],
) -> dict[str, Any]:
    """The fields sealed in ``token`` for event ``event_id`` of ``subject`` of ``tenant``.

    Raises ``Unsealable`` for anything that is not such a token (malformed, over
    ``MAX_TOKEN_CHARS``, tampered with, sealed for another tenant, subject or event) and
    ``KeyErased`` when ``key_of`` has no key of that id (shredded, or never made). Never another
    exception, and no message that quotes the token."""
    key_id, blob = _parse(token)
    key = key_of(key_id)
    if key is None:
        raise KeyErased("the data key of this sealed value is erased")
    if key.tenant != tenant or key.subject != subject:
        # A token moved to another subject's record, or a key id that belongs to someone else.
        raise Unsealable("the sealed value belongs to another data subject")
    try:
        plaintext = AESGCM(key.secret).decrypt(
            blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(tenant, subject, event_id)
        )
    except InvalidTag:
        raise Unsealable(
            "the sealed value does not open: altered, or sealed for another record"
        ) from None
    try:
        fields = orjson.loads(plaintext)
    except orjson.JSONDecodeError:
        raise Unsealable("the sealed value holds no JSON object") from None
    if not isinstance(fields, dict):
        raise Unsealable("the sealed value holds no JSON object")
    return fields


def wrap(kek: bytes, key: bytes) -> bytes:
    """``key`` (a data key's 32 secret bytes) wrapped with the key-encryption key (RFC 3394)."""
    _check_kek(kek)
    if len(key) != KEY_BYTES:
        raise SealingError(f"a data key must be {KEY_BYTES} bytes")
    return aes_key_wrap(kek, key)


def unwrap(kek: bytes, blob: bytes) -> bytes:
    """The data key wrapped in ``blob``; ``Unsealable`` when ``blob`` was not wrapped with this
    KEK or was altered (RFC 3394's integrity check), or is not a wrapped 32-byte key."""
    _check_kek(kek)
    if len(blob) != WRAPPED_BYTES:
        raise Unsealable("not a wrapped data key")
    try:
        return aes_key_unwrap(kek, blob)
    except InvalidUnwrap:
        raise Unsealable("the data key does not unwrap with this key-encryption key") from None


def decode_kek(text: str) -> bytes:
    """The key-encryption key from its text form (base64 of 32 bytes, surrounding blanks
    ignored); ``ConfigurationError`` otherwise, whose message never repeats the text."""
    try:
        kek = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(
            "the key-encryption key is not base64 (make one with: "
            "python -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')"
        ) from None
    if len(kek) != KEY_BYTES:
        raise ConfigurationError(
            f"the key-encryption key must be base64 of {KEY_BYTES} random bytes, not of {len(kek)}"
        )
    return kek


def _check_kek(kek: bytes) -> None:
    if len(kek) != KEY_BYTES:
        raise ConfigurationError(f"the key-encryption key must be {KEY_BYTES} bytes")


def _aad(tenant: str, subject: str, event_id: str) -> bytes:
    if _SEPARATOR in tenant or _SEPARATOR in subject:
        raise Unsealable("a tenant or subject id cannot hold the unit separator")
    return _SEPARATOR.join((tenant, subject, event_id)).encode("utf-8", "surrogatepass")


def _parse(token: object) -> tuple[str, bytes]:
    """The key id and the decoded nonce-and-ciphertext of a well-formed token."""
    if not isinstance(token, str):
        raise Unsealable("a sealed value is a string")
    if len(token) > MAX_TOKEN_CHARS:
        raise Unsealable(f"a sealed value longer than {MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise Unsealable(f"not a sealed value of version {VERSION}")
    key_id, text = parts[1], parts[2]
    if not _KEY_ID.fullmatch(key_id):
        raise Unsealable("a sealed value's key id is malformed")
    try:
        blob = base64url.decode(text)
    except ValueError as exc:
        raise Unsealable(f"a sealed value's body is {exc}") from None
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise Unsealable("a sealed value too short to hold a nonce and a tag")
    return key_id, blob
