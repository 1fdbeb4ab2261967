"""Where subscriptions' secrets live: the compacted ``<prefix>.subscription-secrets`` topic.

The subscriptions topic holds each record without its secrets (the worker reads it for
routing); their secrets (a webhook's signing secret) are here, keyed like the record
(``subscription/<tenant>/<id>``), as ``SubscriptionSecrets`` JSON, a tombstone when the
subscription is deleted. Only the API, which writes both topics, and the delivery, which signs,
read this one (``streams/devtools/stack/kafka_acls.py``, ``docs/security.md``).

``SubscriptionSecretsView`` is the view (no I/O; it never logs a value), ``SubscriptionSecretStore``
tails the topic into it (``streams/compacted.py``), and ``InMemorySubscriptionSecretStore`` is its
double for tests without Kafka.
"""

from __future__ import annotations

import json
import logging
from typing import Protocol

from prometheus_client import Counter
from pydantic import ValidationError

from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription_secrets import SubscriptionSecrets
from cityhub.schemas.topics import Topics
from cityhub.streams.compacted import (
    DEFAULT_WRITE_TIMEOUT,
    CompactedTopicStore,
    InMemoryCompactedStore,
    InMemoryTopic,
)

log = logging.getLogger("cityhub.subscriptions.secrets")

MALFORMED = Counter(
    "cityhub_subscription_secrets_malformed",
    "Subscription-secrets topic records skipped because they were malformed.",
)


class SubscriptionSecretsView:
    """The secrets after applying the topic's records up to ``offset``, by key.

    ``apply`` never raises on a bad record: it logs the offset and key (never the value, which
    holds secrets in clear), counts it in ``malformed`` and moves on.
    """

    def __init__(self) -> None:
        self._offset = -1
        self.applied = 0
        """Records applied (tombstones and malformed records included)."""
        self._malformed = 0
        self._by_key: dict[str, SubscriptionSecrets] = {}

    @property
    def offset(self) -> int:
        """The offset of the last record applied; -1 before the first."""
        return self._offset

    @property
    def malformed(self) -> int:
        return self._malformed

    def apply(self, key: str, value: bytes | None, offset: int) -> None:
        """Apply one record: ``value`` None deletes ``key``'s secrets, otherwise it is a
        ``SubscriptionSecrets`` JSON whose key must be ``key``. Never raises."""
        self._offset = offset
        self.applied += 1
        if value is None:
            self._by_key.pop(key, None)
            return
        try:
            secrets = SubscriptionSecrets.model_validate(json.loads(value))
        except ValidationError as exc:
            # pydantic's message would quote the input, secrets included: say only how much.
            self._skip(offset, key, f"{exc.error_count()} invalid field(s)")
            return
        except ValueError as exc:  # not JSON: the decoder's message names a position only
            self._skip(offset, key, str(exc))
            return
        if secrets.key != key:
            self._skip(offset, key, f"the key does not match the record's ({secrets.key})")
            return
        self._by_key[key] = secrets

    def _skip(self, offset: int, key: str, reason: str) -> None:
        self._malformed += 1
        log.warning(
            "skipping malformed subscription secrets at offset %d (key %r): %s", offset, key, reason
        )

    def get(self, key: str) -> SubscriptionSecrets | None:
        """The secrets of the subscription of ``key`` (``subscription_key``), or None."""
        return self._by_key.get(key)

    def count(self) -> int:
        return len(self._by_key)


class SubscriptionSecretRecordStore(Protocol):
    """What the subscriptions service and the delivery need from a secrets store."""

    @property
    def view(self) -> SubscriptionSecretsView: ...

    @property
    def ready(self) -> bool: ...

    async def put(self, record: SubscriptionSecrets) -> int:
        """Write a record (``acks=all``); return its offset once the view has applied it."""
        ...

    async def delete(self, key: str) -> int:
        """Write a tombstone for ``key``; return its offset once the view has applied it."""
        ...


def _count_malformed(view: SubscriptionSecretsView, applied: int, malformed: int) -> None:
    if malformed:
        MALFORMED.inc(malformed)


def _key_of(record: SubscriptionSecrets) -> str:
    return record.key


class SubscriptionSecretStore(CompactedTopicStore[SubscriptionSecretsView, SubscriptionSecrets]):
    """The subscriptions' secrets on Kafka."""

    def __init__(
        self,
        settings: Settings,
        *,
        client_id: str = "cityhub-subscription-secrets",
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
    ) -> None:
        super().__init__(
            settings,
            topic=Topics.for_prefix(settings.kafka.topic_prefix).subscription_secrets,
            view=SubscriptionSecretsView(),
            key_of=_key_of,
            what="subscription secrets",
            client_id=client_id,
            write_timeout=write_timeout,
            on_applied=_count_malformed,
            describe=lambda view: f"{view.count()} subscription(s) with secrets",
        )


class InMemorySubscriptionSecretStore(
    InMemoryCompactedStore[SubscriptionSecretsView, SubscriptionSecrets]
):
    """A ``SubscriptionSecretRecordStore`` without Kafka, for tests of the service and delivery."""

    def __init__(self, *, topic: InMemoryTopic | None = None) -> None:
        """``topic``: one shared with other stores (an API instance, a delivery process)."""
        super().__init__(SubscriptionSecretsView(), _key_of, topic=topic)


__all__ = [
    "InMemorySubscriptionSecretStore",
    "SubscriptionSecretRecordStore",
    "SubscriptionSecretStore",
    "SubscriptionSecretsView",
]
