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

from cityhub.schemas.subscription_secrets import SubscriptionSecrets
from cityhub.streams.compacted_stores import InMemorySpecStore, SpecStore, TopicSpec, gauges
from cityhub.streams.compacted_view import WHOLE_KEY, CompactedView

log = logging.getLogger("cityhub.subscriptions.secrets")

MALFORMED = Counter(
    "cityhub_subscription_secrets_malformed",
    "Subscription-secrets topic records skipped because they were malformed.",
)


class SubscriptionSecretsView(CompactedView):
    """The secrets after applying the topic's records up to ``offset``, by key.

    ``apply`` never raises on a bad record: it logs the offset and key (never the value, which
    holds secrets in clear; nor pydantic's message, which would quote it: only how many fields
    were invalid), counts it in ``malformed`` and moves on.
    """

    def __init__(self) -> None:
        super().__init__(log, "subscription secrets", key_chars=WHOLE_KEY)
        self._by_key: dict[str, SubscriptionSecrets] = {}

    def _apply(self, key: str, value: bytes | None) -> None:
        """``value`` None deletes ``key``'s secrets, otherwise it is a ``SubscriptionSecrets``
        JSON whose key must be ``key``."""
        if value is None:
            self._by_key.pop(key, None)
            return
        secrets = SubscriptionSecrets.model_validate(json.loads(value))
        if secrets.key != key:
            raise ValueError(f"the key does not match the record's ({secrets.key})")
        self._by_key[key] = secrets

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


def _key_of(record: SubscriptionSecrets) -> str:
    return record.key


SECRETS_TOPIC: TopicSpec[SubscriptionSecretsView, SubscriptionSecrets] = TopicSpec(
    topic=lambda topics: topics.subscription_secrets,
    new_view=SubscriptionSecretsView,
    key_of=_key_of,
    what="subscription secrets",
    client_id="cityhub-subscription-secrets",
    on_applied=gauges(MALFORMED),
    describe=lambda view: f"{view.count()} subscription(s) with secrets",
)


class SubscriptionSecretStore(SpecStore[SubscriptionSecretsView, SubscriptionSecrets]):
    """The subscriptions' secrets on Kafka."""

    spec = SECRETS_TOPIC


class InMemorySubscriptionSecretStore(
    InMemorySpecStore[SubscriptionSecretsView, SubscriptionSecrets]
):
    """A ``SubscriptionSecretRecordStore`` without Kafka, for tests of the service and delivery."""

    spec = SECRETS_TOPIC


__all__ = [
    "InMemorySubscriptionSecretStore",
    "SubscriptionSecretRecordStore",
    "SubscriptionSecretStore",
    "SubscriptionSecretsView",
]
