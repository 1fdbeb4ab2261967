"""Where offers and agreements live: the compacted ``<prefix>.offers`` and
``<prefix>.agreements`` topics, through the generic store (``streams/compacted.py``).

``OfferStore`` and ``AgreementStore`` tail their topics into an ``OfferView`` and an
``AgreementView`` and return from writes once the view shows them (read-your-writes);
``InMemoryOfferStore`` and ``InMemoryAgreementStore`` are their doubles for tests without Kafka.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter, Gauge

from cityhub.schemas.settings import Settings
from cityhub.schemas.sharing import Agreement, Offer
from cityhub.schemas.topics import Topics
from cityhub.streams.compacted import (
    DEFAULT_WRITE_TIMEOUT,
    CompactedTopicStore,
    InMemoryCompactedStore,
    InMemoryTopic,
)
from cityhub.streams.sharing.view import AgreementView, OfferView, agreement_key, offer_key

OFFERS = Gauge("cityhub_offers", "Offers in the sharing view (withdrawn ones included).")
AGREEMENTS = Gauge("cityhub_agreements", "Agreements in the sharing view, in every state.")
MALFORMED = Counter(
    "cityhub_sharing_records_malformed",
    "Offer and agreement topic records skipped because they were malformed.",
    ["topic"],
)


class OfferRecordStore(Protocol):
    """What the sharing service needs from the offers' store."""

    @property
    def view(self) -> OfferView: ...

    @property
    def ready(self) -> bool: ...

    async def put(self, record: Offer) -> int:
        """Write a record; return its offset once the view has applied it."""
        ...


class AgreementRecordStore(Protocol):
    """What the sharing service needs from the agreements' store."""

    @property
    def view(self) -> AgreementView: ...

    @property
    def ready(self) -> bool: ...

    async def put(self, record: Agreement) -> int:
        """Write a record; return its offset once the view has applied it."""
        ...


def _offer_gauges(view: OfferView, applied: int, malformed: int) -> None:
    if malformed:
        MALFORMED.labels("offers").inc(malformed)
    OFFERS.set(view.count())


def _agreement_gauges(view: AgreementView, applied: int, malformed: int) -> None:
    if malformed:
        MALFORMED.labels("agreements").inc(malformed)
    AGREEMENTS.set(view.count())


class OfferStore(CompactedTopicStore[OfferView, Offer]):
    """The offers on Kafka."""

    def __init__(
        self,
        settings: Settings,
        *,
        view: OfferView | None = None,
        client_id: str = "cityhub-offers",
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
    ) -> None:
        super().__init__(
            settings,
            topic=Topics.for_prefix(settings.kafka.topic_prefix).offers,
            view=view if view is not None else OfferView(),
            key_of=offer_key,
            what="offers",
            client_id=client_id,
            write_timeout=write_timeout,
            on_applied=_offer_gauges,
            describe=lambda view: f"{view.count()} offer(s)",
        )


class AgreementStore(CompactedTopicStore[AgreementView, Agreement]):
    """The agreements on Kafka."""

    def __init__(
        self,
        settings: Settings,
        *,
        view: AgreementView | None = None,
        client_id: str = "cityhub-agreements",
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
    ) -> None:
        super().__init__(
            settings,
            topic=Topics.for_prefix(settings.kafka.topic_prefix).agreements,
            view=view if view is not None else AgreementView(),
            key_of=agreement_key,
            what="agreements",
            client_id=client_id,
            write_timeout=write_timeout,
            on_applied=_agreement_gauges,
            describe=lambda view: f"{view.count()} agreement(s)",
        )


class InMemoryOfferStore(InMemoryCompactedStore[OfferView, Offer]):
    """An ``OfferRecordStore`` without Kafka, for tests of the service and the API."""

    def __init__(self, *, view: OfferView | None = None, topic: InMemoryTopic | None = None):
        super().__init__(view if view is not None else OfferView(), offer_key, topic=topic)


class InMemoryAgreementStore(InMemoryCompactedStore[AgreementView, Agreement]):
    """An ``AgreementRecordStore`` without Kafka, for tests of the service and the API."""

    def __init__(
        self, *, view: AgreementView | None = None, topic: InMemoryTopic | None = None
    ) -> None:
        super().__init__(view if view is not None else AgreementView(), agreement_key, topic=topic)


__all__ = [
    "AgreementRecordStore",
    "AgreementStore",
    "InMemoryAgreementStore",
    "InMemoryOfferStore",
    "OfferRecordStore",
    "OfferStore",
]
