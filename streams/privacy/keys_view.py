"""The data subjects' keys in memory: what the compacted ``subject-keys`` topic says.

Pure: no I/O. A store (``keys_store.py``) feeds it the topic's records in offset order with
``apply``; every process that seals or opens personal values holds one. Each record is one data
key of one subject, wrapped with the key-encryption key (KEK); the view unwraps it when it
applies the record and keeps the plain key in memory only. A tombstone removes the key: from
then on no token sealed with it opens in this process (crypto-shredding).

A subject may have several keys (two processes that raced to make the first one, or a later
rotation): ``current`` picks one deterministically (the earliest created, ties by key id), so
every process seals with the same key once it has read the same records, and every key opens
its tokens by id until it is shredded.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from cityhub.schemas.errors import SealingError
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.privacy.sealing import SubjectKey, unwrap

log = logging.getLogger("cityhub.privacy.keys")

KEY_PREFIX = "subject_key/"


class SubjectKeyRecord(BaseModel):
    """One data key on the topic, as written: wrapped, never in clear."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = "subject_key"
    tenant: str
    subject: str
    key_id: str
    wrapped_key: str
    """The key wrapped with the KEK (RFC 3394), base64."""
    created_at: str
    """RFC 3339: the earliest created of a subject's keys is its current one."""

    @field_validator("created_at")
    @classmethod
    def _time(cls, value: str) -> str:
        parse_rfc3339(value)
        return value


def record_key(record: SubjectKeyRecord) -> str:
    """The record's Kafka key: ``subject_key/<tenant>/<subject>/<key id>``."""
    return subject_key_record_key(record.tenant, record.subject, record.key_id)


def subject_key_record_key(tenant: str, subject: str, key_id: str) -> str:
    return f"{KEY_PREFIX}{tenant}/{subject}/{key_id}"


class MalformedKey(ValueError):
    """A record on the keys' topic the view cannot use (counted, logged without its key)."""


@dataclass(frozen=True, slots=True)
class _Held:
    key: SubjectKey
    created_at: datetime


class SubjectKeyView:
    """The keys after applying the topic's records up to ``offset``, unwrapped with ``kek``.
    ``apply`` never raises on a bad record: it counts it and moves on."""

    def __init__(self, kek: bytes) -> None:
        self._kek = kek
        self._offset = -1
        self._malformed = 0
        self._by_record: dict[str, _Held] = {}
        self._by_id: dict[str, str] = {}
        """key id → record key."""
        self._of_subject: dict[tuple[str, str], set[str]] = {}
        """(tenant, subject) → record keys of its usable keys."""
        self._unusable: dict[tuple[str, str], set[str]] = {}
        """(tenant, subject) → record keys of its records that did not unwrap or validate: not
        keys this process can use, but still records to tombstone when the subject is erased
        (another KEK may open them)."""

    def __repr__(self) -> str:
        return f"SubjectKeyView(keys={self.count()}, offset={self._offset})"

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def malformed(self) -> int:
        return self._malformed

    def apply(self, key: str, value: bytes | None, offset: int) -> None:
        """Apply one record: a key (unwrapped now) or a tombstone (the key is gone). Never
        raises; a record that does not parse, does not match its key or does not unwrap with
        this KEK is counted as malformed and skipped."""
        self._offset = offset
        self._forget(key)
        if value is None:
            return
        try:
            held = self._unwrapped(key, value)
        except (
            MalformedKey,
            SealingError,
            ValidationError,
            ValueError,
            TypeError,
            RecursionError,
        ) as exc:
            self._malformed += 1
            owner = _owner_of(key)
            if owner is not None:
                self._unusable.setdefault(owner, set()).add(key)
            reason = (
                f"{exc.error_count()} invalid field(s)"
                if isinstance(exc, ValidationError)
                else type(exc).__name__
                if isinstance(exc, SealingError)
                else str(exc)
            )
            # Neither the record key (it names a data subject) nor the value (a wrapped key).
            log.warning("skipping malformed subject key at offset %d: %s", offset, reason)
            return
        self._by_record[key] = held
        self._by_id[held.key.key_id] = key
        self._of_subject.setdefault((held.key.tenant, held.key.subject), set()).add(key)

    def _unwrapped(self, key: str, value: bytes) -> _Held:
        doc = json.loads(value)
        if not isinstance(doc, dict) or doc.get("kind") != "subject_key":
            raise MalformedKey("not a subject key")
        record = SubjectKeyRecord.model_validate(doc)
        if key != record_key(record):
            raise MalformedKey("the record key does not match the record's fields")
        holder = self._by_id.get(record.key_id)
        if holder is not None and holder != key:
            # The same key id under another record: a copy, never a new key (ids are random).
            raise MalformedKey("a key id already held by another record")
        try:
            wrapped = base64.b64decode(record.wrapped_key, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedKey("the wrapped key is not base64") from None
        secret = unwrap(self._kek, wrapped)
        subject_key = SubjectKey(record.tenant, record.subject, record.key_id, secret)
        return _Held(subject_key, parse_rfc3339(record.created_at))

    def _forget(self, key: str) -> None:
        """Drop what an earlier record under ``key`` put in the view."""
        held = self._by_record.pop(key, None)
        if held is not None:
            self._by_id.pop(held.key.key_id, None)
            owner = (held.key.tenant, held.key.subject)
            keys = self._of_subject.get(owner)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._of_subject[owner]
        named = _owner_of(key)
        if named is not None and named in self._unusable:
            self._unusable[named].discard(key)
            if not self._unusable[named]:
                del self._unusable[named]

    def current(self, tenant: str, subject: str) -> SubjectKey | None:
        """The key to seal ``subject``'s values with: the earliest created of its keys, ties
        broken by key id; None when it has none (never linked, or erased)."""
        held = [self._by_record[k] for k in self._of_subject.get((tenant, subject), ())]
        if not held:
            return None
        return min(held, key=lambda h: (h.created_at, h.key.key_id)).key

    def by_id(self, key_id: str) -> SubjectKey | None:
        """The key of that id, whichever subject it is of; None when shredded or unknown."""
        record = self._by_id.get(key_id)
        return None if record is None else self._by_record[record].key

    def keys_of(self, tenant: str, subject: str) -> list[SubjectKey]:
        """Every usable key of ``subject``, oldest first."""
        held = [self._by_record[k] for k in self._of_subject.get((tenant, subject), ())]
        return [h.key for h in sorted(held, key=lambda h: (h.created_at, h.key.key_id))]

    def record_keys_of(self, tenant: str, subject: str) -> list[str]:
        """The record keys of every record of ``subject`` on the topic, usable or not: what
        erasure tombstones."""
        usable = self._of_subject.get((tenant, subject), set())
        unusable = self._unusable.get((tenant, subject), set())
        return sorted(usable | unusable)

    def count(self) -> int:
        """How many usable keys the view holds."""
        return len(self._by_record)


def _owner_of(key: str) -> tuple[str, str] | None:
    """(tenant, subject) of a well-formed record key, None otherwise. Subjects and key ids hold
    no slash; a tenant id holds none either, but the split does not rely on it."""
    if not key.startswith(KEY_PREFIX):
        return None
    parts = key[len(KEY_PREFIX) :].rsplit("/", 2)
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1]


__all__ = [
    "KEY_PREFIX",
    "SubjectKeyRecord",
    "SubjectKeyView",
    "record_key",
    "subject_key_record_key",
]
