"""Where consent records live: the compacted ``<prefix>.consents`` topic, keyed
``consent/<tenant>/<subject>/<activity slug>``, through the generic store
(``streams/compacted.py``). ``ConsentStore`` tails it into a ``ConsentView``;
``InMemoryConsentStore`` is its double."""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter, Gauge

from cityhub.schemas.consent import ConsentRecord, record_key
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.compacted import (
    DEFAULT_WRITE_TIMEOUT,
    CompactedTopicStore,
    InMemoryCompactedStore,
    InMemoryTopic,
)
from cityhub.streams.privacy.consent_view import REJECTION_REASONS, ConsentView

RECORDS = Gauge("cityhub_consent_records", "Consent records in this process's view.")
ACTIVE = Gauge("cityhub_consents_active", "Consent records whose consent is given now.")
REJECTED = Counter(
    "cityhub_consent_records_rejected",
    "Consent topic records ignored: malformed, tombstone, key (not its own), chain (does not "
    "verify), not_extending (history cut back or rewritten).",
    ["reason"],
)
for _reason in REJECTION_REASONS:
    REJECTED.labels(_reason)


class ConsentRecordStore(Protocol):
    """What the consent service needs from a store."""

    @property
    def view(self) -> ConsentView: ...

    @property
    def ready(self) -> bool: ...

    async def put(self, record: ConsentRecord) -> int:
        """Write a record; return its offset once the view has applied it."""
        ...


class _Gauges:
    """Sets the gauges and counts what the view rejected since the last batch."""

    def __init__(self) -> None:
        self._seen = dict.fromkeys(REJECTION_REASONS, 0)

    def __call__(self, view: ConsentView, applied: int, malformed: int) -> None:
        RECORDS.set(view.count())
        ACTIVE.set(view.active_count())
        if malformed:
            for reason, count in view.rejected().items():
                if count > self._seen[reason]:
                    REJECTED.labels(reason).inc(count - self._seen[reason])
                    self._seen[reason] = count


class ConsentStore(CompactedTopicStore[ConsentView, ConsentRecord]):
    """Consent records on Kafka."""

    def __init__(
        self,
        settings: Settings,
        *,
        client_id: str = "cityhub-consents",
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
    ) -> None:
        super().__init__(
            settings,
            topic=Topics.for_prefix(settings.kafka.topic_prefix).consents,
            view=ConsentView(),
            key_of=record_key,
            what="consents",
            client_id=client_id,
            write_timeout=write_timeout,
            on_applied=_Gauges(),
            describe=lambda view: f"{view.count()} consent record(s), {view.active_count()} active",
        )


class InMemoryConsentStore(InMemoryCompactedStore[ConsentView, ConsentRecord]):
    """A ``ConsentRecordStore`` without Kafka, for tests of the service, the API and the
    purpose check."""

    def __init__(self, *, topic: InMemoryTopic | None = None) -> None:
        super().__init__(ConsentView(), record_key, topic=topic)


__all__ = ["ConsentRecordStore", "ConsentStore", "InMemoryConsentStore"]
