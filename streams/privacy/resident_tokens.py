"""Residents' access tokens where they are kept: the record, its view and its store.

A tenant issues a resident a token bound to one data subject of the tenant
(``resident_token_service.py``). The secret reads ``chr_<token id>_<random>`` and is shown once;
the compacted topic ``<prefix>.resident-tokens`` (one partition, keyed
``resident_token/<tenant>/<token id>``) keeps only its SHA-256 fingerprint, as API keys are kept.
A revoked token stays on the topic with ``revoked_at`` (so that the tenant can see it was
revoked); an erasure writes a tombstone, which removes the token and with it the subject's
pseudonym from the topic once it is compacted.

Every API process reads the topic whole into a ``ResidentTokenView`` at start and follows it,
so a revocation takes effect on the next request that reaches a process whose view has applied
it (the store wakes on each record: well within a second on a healthy broker).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Literal

from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cityhub.schemas.registry import validate_data_subject
from cityhub.streams.compacted_stores import InMemorySpecStore, SpecStore, TopicSpec, gauges
from cityhub.streams.compacted_view import CompactedView

log = logging.getLogger("cityhub.privacy.resident_tokens")

TOKEN_PREFIX = "chr_"  # noqa: S105 - a prefix, not a secret
"""Resident token secrets read ``chr_<token id>_<random>`` (API keys: ``chk_``), so neither can
be mistaken for the other and the id finds the record without a scan."""
TOKEN_ID_PATTERN = r"^[0-9a-f]{16}$"  # noqa: S105 - a pattern, not a secret
_TOKEN_ID = re.compile(TOKEN_ID_PATTERN)
MAX_NAME_LENGTH = 200

TOKENS = Gauge("cityhub_resident_tokens", "Residents' access tokens in the view (revoked too).")
MALFORMED = Counter(
    "cityhub_resident_tokens_malformed",
    "Resident-token topic records skipped because they were malformed.",
)


class ResidentToken(BaseModel):
    """One token as the topic keeps it: never the secret, only its fingerprint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["resident_token"] = "resident_token"
    id: str = Field(pattern=TOKEN_ID_PATTERN)
    tenant: str
    subject: str = Field(repr=False)
    """The data subject (pseudonym) the token acts for."""
    name: str = Field(default="", max_length=MAX_NAME_LENGTH)
    """A label the tenant chose (``handed out at the counter``); not shown to anyone else."""
    secret_sha256: str = Field(repr=False, pattern=r"^[0-9a-f]{64}$")
    created_at: str
    created_by: str
    """The id of the API key that issued it, ``system`` for the CLI."""
    expires_at: str | None = None
    """RFC 3339; None: valid until revoked."""
    revoked_at: str | None = None

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        return validate_data_subject(value)

    def public(self) -> dict[str, object]:
        """The token as the API lists it: no secret, no fingerprint."""
        return self.model_dump(mode="json", exclude={"kind", "secret_sha256"})


def record_key(token: ResidentToken) -> str:
    """The topic's key of a token: ``resident_token/<tenant>/<token id>``."""
    return f"resident_token/{token.tenant}/{token.id}"


def is_token_id(value: str) -> bool:
    """Whether ``value`` has the shape of a token id (16 lower-case hex digits)."""
    return bool(_TOKEN_ID.match(value))


class MalformedToken(ValueError):
    """A record on the topic the view cannot use (logged and counted, never applied)."""


class ResidentTokenView(CompactedView):
    """The tokens after applying the topic's records up to ``offset``, by id and by
    (tenant, subject). ``apply`` never raises on a bad record: it logs the offset, counts it and
    moves on. A tombstone removes the token."""

    def __init__(self) -> None:
        # Neither the key's subject part nor the value: the pseudonym stays out of the log.
        super().__init__(log, "resident token", key_chars=None)
        self._by_id: dict[str, ResidentToken] = {}
        self._by_key: dict[str, str] = {}
        """topic key -> token id, so that a tombstone finds what it removes."""
        self._of_subject: dict[tuple[str, str], set[str]] = {}

    def _apply(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._remove(key)
            return
        doc = json.loads(value)
        if not isinstance(doc, dict) or doc.get("kind") != "resident_token":
            raise MalformedToken("not a resident token")
        token = ResidentToken.model_validate(doc)
        if key != record_key(token):
            raise MalformedToken("the key does not match the record's")
        known = self._by_id.get(token.id)
        if known is not None and (known.tenant, known.subject) != (token.tenant, token.subject):
            # A token never changes hands: a record that moves one to another subject is not
            # one cityhub wrote.
            raise MalformedToken("a token id already bound to another subject")
        self._add(key, token)

    def _add(self, key: str, token: ResidentToken) -> None:
        self._by_id[token.id] = token
        self._by_key[key] = token.id
        self._of_subject.setdefault((token.tenant, token.subject), set()).add(token.id)

    def _remove(self, key: str) -> None:
        token_id = self._by_key.pop(key, None)
        if token_id is None:
            return
        token = self._by_id.pop(token_id)
        ids = self._of_subject.get((token.tenant, token.subject))
        if ids is not None:
            ids.discard(token_id)
            if not ids:
                del self._of_subject[(token.tenant, token.subject)]

    def by_id(self, token_id: str) -> ResidentToken | None:
        return self._by_id.get(token_id)

    def of_subject(self, tenant: str, subject: str) -> list[ResidentToken]:
        """The subject's tokens (revoked ones too), oldest first, ties by id."""
        ids = self._of_subject.get((tenant, subject), set())
        return sorted((self._by_id[i] for i in ids), key=lambda t: (t.created_at, t.id))

    def count(self) -> int:
        return len(self._by_id)


TOKENS_TOPIC: TopicSpec[ResidentTokenView, ResidentToken] = TopicSpec(
    topic=lambda topics: topics.resident_tokens,
    new_view=ResidentTokenView,
    key_of=record_key,
    what="resident tokens",
    client_id="cityhub-resident-tokens",
    on_applied=gauges(MALFORMED, (TOKENS, ResidentTokenView.count)),
    describe=lambda view: f"{view.count()} resident token(s)",
)


class ResidentTokenStore(SpecStore[ResidentTokenView, ResidentToken]):
    """The residents' tokens on Kafka."""

    spec = TOKENS_TOPIC


class InMemoryResidentTokenStore(InMemorySpecStore[ResidentTokenView, ResidentToken]):
    """The same without Kafka, for tests of the service and the API."""

    spec = TOKENS_TOPIC


__all__ = [
    "TOKEN_PREFIX",
    "InMemoryResidentTokenStore",
    "ResidentToken",
    "ResidentTokenStore",
    "ResidentTokenView",
    "is_token_id",
    "record_key",
]
