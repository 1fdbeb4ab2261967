"""Where offers and agreements live: the compacted ``<prefix>.offers`` and
``<prefix>.agreements`` topics, through the generic store (``streams/compacted.py``).

``OfferStore`` and ``AgreementStore`` tail their topics into an ``OfferView`` and an
``AgreementView`` and return from writes once the view shows them (read-your-writes);
``InMemoryOfferStore`` and ``InMemoryAgreementStore`` are their doubles for tests without Kafka.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Counter, Gauge

from cityhub.connectors.kafka_clients import kafka_consumer
from cityhub.schemas.sharing import Agreement, Offer
from cityhub.streams.compacted import View
from cityhub.streams.compacted_stores import InMemorySpecStore, SpecStore, TopicSpec, gauges
from cityhub.streams.service_errors import Unavailable
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

    async def sync(self) -> None:
        """Return once the view holds every record the topic held when called."""
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

    async def sync(self) -> None:
        """Return once the view holds every record the topic held when called."""
        ...


OFFERS_TOPIC: TopicSpec[OfferView, Offer] = TopicSpec(
    topic=lambda topics: topics.offers,
    new_view=OfferView,
    key_of=offer_key,
    what="offers",
    client_id="cityhub-offers",
    on_applied=gauges(MALFORMED, (OFFERS, OfferView.count), label="offers"),
    describe=lambda view: f"{view.count()} offer(s)",
)
AGREEMENTS_TOPIC: TopicSpec[AgreementView, Agreement] = TopicSpec(
    topic=lambda topics: topics.agreements,
    new_view=AgreementView,
    key_of=agreement_key,
    what="agreements",
    client_id="cityhub-agreements",
    on_applied=gauges(MALFORMED, (AGREEMENTS, AgreementView.count), label="agreements"),
    describe=lambda view: f"{view.count()} agreement(s)",
)

SYNC_TIMEOUT = 5.0

V = TypeVar("V", bound=View)
R = TypeVar("R", bound=Offer | Agreement)


class _SyncedStore(SpecStore[V, R]):
    """A compacted store that can catch up with its topic on demand. A decision (approve,
    revoke, an id taken) made by one API instance must see what another instance wrote a
    moment before: without it, a request rejected on one instance could be approved on another
    whose view was 100 ms behind.

    The end offset is asked with a consumer of its own, made at the first ``sync``: the tailing
    consumer's requests queue behind its long-polling fetch (100 ms per question)."""

    _ends: AIOKafkaConsumer | None = None

    async def _end_offset(self) -> int:
        if self._ends is None:
            ends = kafka_consumer(
                self._settings.kafka,
                client_id=f"{self._client_id}-ends",
                group_id=None,
                enable_auto_commit=False,
            )
            await ends.start()
            self._ends = ends
        tp = TopicPartition(self.topic, 0)
        return int((await self._ends.end_offsets([tp]))[tp])

    async def sync(self) -> None:
        if not self.ready:
            raise Unavailable(f"the {self.topic} store is not started")
        try:
            end = await asyncio.wait_for(self._end_offset(), SYNC_TIMEOUT)
        except Exception as exc:
            raise Unavailable(f"could not read the end of {self.topic}: {exc!r}") from None
        # The last record is at end - 1: wait for the view to have applied it.
        if self.view.offset < end - 1 and not await self.wait_beyond(end - 2, SYNC_TIMEOUT):
            raise Unavailable(
                f"the view of {self.topic} did not catch up within {SYNC_TIMEOUT:.0f} s; try again"
            )

    async def stop(self) -> None:
        ends, self._ends = self._ends, None
        if ends is not None:
            await ends.stop()
        await super().stop()


class OfferStore(_SyncedStore[OfferView, Offer]):
    """The offers on Kafka."""

    spec = OFFERS_TOPIC


class AgreementStore(_SyncedStore[AgreementView, Agreement]):
    """The agreements on Kafka."""

    spec = AGREEMENTS_TOPIC


class _InMemorySyncedStore(InMemorySpecStore[V, R]):
    """A ``_SyncedStore``'s double for tests."""

    async def sync(self) -> None:
        """Nothing to wait for: an in-memory view applies every write at once."""


class InMemoryOfferStore(_InMemorySyncedStore[OfferView, Offer]):
    """An ``OfferRecordStore`` without Kafka, for tests of the service and the API."""

    spec = OFFERS_TOPIC


class InMemoryAgreementStore(_InMemorySyncedStore[AgreementView, Agreement]):
    """An ``AgreementRecordStore`` without Kafka, for tests of the service and the API."""

    spec = AGREEMENTS_TOPIC


__all__ = [
    "AgreementRecordStore",
    "AgreementStore",
    "InMemoryAgreementStore",
    "InMemoryOfferStore",
    "OfferRecordStore",
    "OfferStore",
]
