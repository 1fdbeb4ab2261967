"""What a process that enforces or serves agreements keeps of the sharing topics: the offers
and agreements (compacted topics followed into one ``SharingView``), the uses it counts, and
the publisher that writes them. ``cityhub.streams.wiring`` makes one per process that runs a
worker, a delivery or the API and hands it to the enforcement points:

- ``sharing.grants``: a ``GrantsSource`` (``cityhub.streams.sharing.grants``), the current
  ``Grants``; cheap per item;
- ``sharing.usage``: the process's ``UsageCounts``; ``usage.count(agreement id, Channel, n)``.

It is ready once both views have read their topics to the end and the publisher runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from cityhub.schemas.settings import Settings
from cityhub.streams.runtime.host import Part, store_part
from cityhub.streams.sharing.grants import Grants
from cityhub.streams.sharing.store import AgreementStore, OfferStore
from cityhub.streams.sharing.usage import UsageCounts
from cityhub.streams.sharing.usage_publisher import UsagePublisher
from cityhub.streams.sharing.view import SharingView


@dataclass(frozen=True, slots=True)
class SharingStores:
    """The sharing views of one process, its usage counts and their publisher."""

    settings: Settings
    offers: OfferStore
    agreements: AgreementStore
    view: SharingView
    usage: UsageCounts
    publisher: UsagePublisher

    @classmethod
    def for_settings(cls, settings: Settings) -> SharingStores:
        view = SharingView()
        offers = OfferStore(settings, view=view.offers)
        agreements = AgreementStore(settings, view=view.agreements)
        usage = UsageCounts()
        return cls(settings, offers, agreements, view, usage, UsagePublisher(usage))

    def grants(self) -> Grants:
        """The current grants (a ``GrantsSource``)."""
        return self.view.grants()

    @property
    def ready(self) -> bool:
        return self.offers.ready and self.agreements.ready and self.publisher.ready

    def parts(self) -> list[Part]:
        async def publish() -> None:
            await self.publisher.run(self.settings)

        return [
            store_part("offers", self.offers),
            store_part("agreements", self.agreements),
            Part("agreement usage publisher", publish),
        ]


__all__ = ["SharingStores"]
