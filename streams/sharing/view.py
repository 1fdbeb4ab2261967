"""The offers and agreements in memory: what their two compacted topics say.

Pure: no I/O. A store feeds each view its topic's records in offset order with ``apply`` (as the
subscriptions' and the register's views); every process that routes, delivers or serves holds
both. ``SharingView`` is what the rest of cityhub asks:

- ``grants()``: the ``Grants`` of the approved agreements (``cityhub.streams.sharing.grants``),
  built again only when an agreement record changed, so that asking per item costs a comparison
  (expiry needs no record: every question of ``Grants`` takes the clock);
- ``offer(tenant, id)``, ``listed_offers()`` (the catalogue's), ``agreement(id)``.

Offers and agreements are few (hundreds per city), so they are kept as validated records.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from pydantic import BaseModel

from cityhub.schemas.plain_text import STORED
from cityhub.schemas.sharing import Agreement, Offer
from cityhub.streams.compacted_view import CompactedView
from cityhub.streams.sharing.grants import Grants

log = logging.getLogger("cityhub.sharing.view")

M = TypeVar("M", bound=BaseModel)


def offer_key(offer: Offer) -> str:
    """The offers topic's key: ``offer/<tenant>/<id>``."""
    return f"offer/{offer.tenant}/{offer.spec.id}"


def agreement_key(agreement: Agreement) -> str:
    """The agreements topic's key: ``agreement/<id>``."""
    return f"agreement/{agreement.id}"


class MalformedRecord(ValueError):
    """A record on an offers or agreements topic the view cannot use (logged and counted)."""


class _RecordView(CompactedView, Generic[M]):
    """Records of one kind by key. ``apply`` never raises: a bad record is logged by offset
    and key, counted in ``malformed`` and skipped. ``version`` grows with every change, so a
    reader can tell cheaply whether something it built from the view is stale."""

    def __init__(self, kind: str, model: type[M], key_of: Callable[[M], str]) -> None:
        super().__init__(log, f"{kind} record")
        self._kind = kind
        self._model = model
        self._key_of = key_of
        self.version = 0
        self._records: dict[str, M] = {}

    def _apply(self, key: str, value: bytes | None) -> None:
        """``value`` None deletes ``key``, otherwise the record's JSON, whose key must be
        ``key``."""
        if value is None:
            if not key.startswith(f"{self._kind}/"):
                raise MalformedRecord(f"tombstone of unknown key {key[:200]!r}")
            if self._records.pop(key, None) is not None:
                self.version += 1
            return
        doc = json.loads(value)
        if not isinstance(doc, dict) or doc.get("kind") != self._kind:
            raise MalformedRecord(f"not an {self._kind} record")
        record = self._model.model_validate(doc, context=STORED)
        if key != self._key_of(record):
            raise MalformedRecord(f"key does not match the record's ({self._key_of(record)})")
        self._records[key] = record
        self.version += 1

    def count(self) -> int:
        return len(self._records)

    def _get(self, key: str) -> M | None:
        return self._records.get(key)

    def _all(self) -> list[M]:
        return [self._records[key] for key in sorted(self._records)]


class OfferView(_RecordView[Offer]):
    """The offers topic's view, keyed ``offer/<tenant>/<id>``."""

    def __init__(self) -> None:
        super().__init__("offer", Offer, offer_key)

    def get(self, tenant: str, offer_id: str) -> Offer | None:
        return self._get(f"offer/{tenant}/{offer_id}")

    def of_tenant(self, tenant: str) -> list[Offer]:
        """The tenant's offers (withdrawn ones included), in id order."""
        return [o for o in self._all() if o.tenant == tenant]

    def all(self) -> list[Offer]:
        """Every offer, by tenant and id."""
        return self._all()


class AgreementView(_RecordView[Agreement]):
    """The agreements topic's view, keyed ``agreement/<id>``."""

    def __init__(self) -> None:
        super().__init__("agreement", Agreement, agreement_key)

    def get(self, agreement_id: str) -> Agreement | None:
        return self._get(f"agreement/{agreement_id}")

    def all(self) -> list[Agreement]:
        """Every agreement, in id order."""
        return self._all()

    def of_tenant(self, tenant: str, *, role: str | None = None) -> list[Agreement]:
        """The agreements ``tenant`` is a party to, as ``provider``, ``consumer`` or either
        (``role`` None), in id order."""
        return [
            a
            for a in self._all()
            if (role != "consumer" and a.provider == tenant)
            or (role != "provider" and a.consumer == tenant)
        ]


class SharingView:
    """The offers and agreements one process follows, and the grants built from them."""

    __slots__ = ("_grants", "_grants_version", "agreements", "offers")

    def __init__(
        self, offers: OfferView | None = None, agreements: AgreementView | None = None
    ) -> None:
        self.offers = offers if offers is not None else OfferView()
        self.agreements = agreements if agreements is not None else AgreementView()
        self._grants = Grants()
        self._grants_version = 0

    def grants(self) -> Grants:
        """The grants of the approved agreements (a ``GrantsSource``). The same object until an
        agreement record changes: cheap enough to ask per item."""
        version = self.agreements.version
        if version != self._grants_version:
            self._grants = Grants.from_agreements(self.agreements.all())
            self._grants_version = version
        return self._grants

    def offer(self, tenant: str, offer_id: str) -> Offer | None:
        return self.offers.get(tenant, offer_id)

    def listed_offers(self) -> list[Offer]:
        """The offers their providers chose to list in the public catalogue and have not
        withdrawn, by tenant and id."""
        return [o for o in self.offers.all() if o.spec.listed and o.withdrawn_at is None]

    def agreement(self, agreement_id: str) -> Agreement | None:
        return self.agreements.get(agreement_id)


__all__ = [
    "AgreementView",
    "MalformedRecord",
    "OfferView",
    "SharingView",
    "agreement_key",
    "offer_key",
]
