"""What active agreements let a tenant see of another tenant's data: the third branch of the
tenant rule (own items, ``public`` items, and items under an active agreement).

Pure: built from the offers' and agreements' records and a clock, no I/O. Every place that
decides what a tenant sees (routing, delivery, the API's reads, history, SensorThings, NGSI-LD)
asks the same ``Grants``: ``grant_for(consumer, facts, when)`` gives the agreement that covers
an item, or None. An agreement covers an item when all of these hold:

- it is active at ``when`` (approved, started, not ended: ``Agreement.active_at``);
- the item's tenant is the provider and the asking tenant the consumer;
- the item's kind (observation, aggregate) is one of the agreed offer's ``kinds``;
- the item's classification is covered by the offer's (``classification_covered``): an item
  without a classification never is;
- every criterion of the offer's selection matches (``Selection``): device-level criteria
  (device types, tags, device ids) need a device, so an area's aggregate is covered only by a
  selection without them.

The terms are those copied into the agreement (``Agreement.offer_spec``), not the offer's
current ones: a provider cannot widen an agreement by editing its offer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cityhub.schemas.observation import Observation
from cityhub.schemas.sharing import (
    Agreement,
    AgreementState,
    ItemKind,
    OfferSpec,
    classification_covered,
)
from cityhub.schemas.timefmt import parse_rfc3339

DeviceFacts = Callable[[str, str], tuple[str | None, tuple[str, ...]] | None]
"""``(tenant, device id) -> (device type id, tags)``, or None for a device the registry does not
know (the registry view's answer)."""


@dataclass(frozen=True, slots=True)
class ItemFacts:
    """What the rule needs to know of one item."""

    tenant: str | None
    kind: ItemKind
    quantity: str | None
    classification: str | None
    device_id: str | None = None
    """None for an area's aggregate."""
    device_type: str | None = None
    area: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Grant:
    """One agreement's terms, compiled for fast checks."""

    agreement_id: str
    provider: str
    consumer: str
    kinds: frozenset[ItemKind]
    classification: str
    device_types: frozenset[str] | None
    areas: frozenset[str] | None
    tags: frozenset[str] | None
    device_ids: frozenset[str] | None
    quantities: frozenset[str] | None
    processing_activity: str | None
    """The provider's activity for personal items (the offer's), else None."""
    purpose: str
    starts_at: datetime | None
    ends_at: datetime

    @classmethod
    def of(cls, agreement: Agreement) -> Grant:
        spec: OfferSpec = agreement.offer_spec
        selection = spec.selection
        start = agreement.starts_at or agreement.approved_at
        return cls(
            agreement_id=agreement.id,
            provider=agreement.provider,
            consumer=agreement.consumer,
            kinds=frozenset(spec.kinds),
            classification=spec.classification.value,
            device_types=frozenset(selection.device_types) or None,
            areas=frozenset(selection.areas) or None,
            tags=frozenset(selection.tags) or None,
            device_ids=frozenset(selection.device_ids) or None,
            quantities=frozenset(selection.quantities) or None,
            processing_activity=spec.processing_activity,
            purpose=agreement.purpose,
            starts_at=parse_rfc3339(start) if start is not None else None,
            ends_at=parse_rfc3339(agreement.ends_at),
        )

    def active_at(self, when: datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= when) and when < self.ends_at

    def covers(self, facts: ItemFacts) -> bool:
        """Whether the terms cover the item (the clock aside: see ``active_at``)."""
        if facts.tenant != self.provider or facts.kind not in self.kinds:
            return False
        if not classification_covered(self.classification, facts.classification):
            return False
        if self.quantities is not None and facts.quantity not in self.quantities:
            return False
        if self.areas is not None and facts.area not in self.areas:
            return False
        if self.device_types is None and self.tags is None and self.device_ids is None:
            return True
        if facts.device_id is None:
            return False
        if self.device_ids is not None and facts.device_id not in self.device_ids:
            return False
        if self.device_types is not None and facts.device_type not in self.device_types:
            return False
        return self.tags is None or not self.tags.isdisjoint(facts.tags)


class Grants:
    """The approved agreements, by consumer and provider. Immutable: a view builds a new one
    when an offer or agreement record changes; the clock is a parameter of every question, so
    an agreement stops counting the moment it ends, whenever its ``Grants`` was built."""

    __slots__ = ("_by_id", "_by_pair", "_consumers_of", "_providers_of")

    def __init__(self, grants: Iterable[Grant] = ()) -> None:
        by_pair: dict[tuple[str, str], list[Grant]] = {}
        for grant in grants:
            by_pair.setdefault((grant.consumer, grant.provider), []).append(grant)
        self._by_pair = {pair: tuple(found) for pair, found in by_pair.items()}
        self._by_id = {g.agreement_id: g for found in self._by_pair.values() for g in found}
        providers: dict[str, set[str]] = {}
        consumers: dict[str, set[str]] = {}
        for consumer, provider in self._by_pair:
            providers.setdefault(consumer, set()).add(provider)
            consumers.setdefault(provider, set()).add(consumer)
        self._providers_of = {k: frozenset(v) for k, v in providers.items()}
        self._consumers_of = {k: frozenset(v) for k, v in consumers.items()}

    @classmethod
    def from_agreements(cls, agreements: Iterable[Agreement]) -> Grants:
        """The grants of the approved agreements among ``agreements`` (others are ignored;
        expiry is decided per question)."""
        return cls(Grant.of(a) for a in agreements if a.state is AgreementState.APPROVED)

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, agreement_id: str) -> Grant | None:
        return self._by_id.get(agreement_id)

    def providers_of(self, consumer: str) -> frozenset[str]:
        """The tenants whose data ``consumer`` may see some of under an approved agreement
        (active or not: check the clock with ``between`` or ``grant_for``)."""
        return self._providers_of.get(consumer, frozenset())

    def consumers_of(self, provider: str) -> frozenset[str]:
        """The tenants that hold an approved agreement with ``provider``."""
        return self._consumers_of.get(provider, frozenset())

    def between(self, consumer: str, provider: str, when: datetime) -> tuple[Grant, ...]:
        """The grants active at ``when`` that ``provider`` gave ``consumer``."""
        return tuple(g for g in self._by_pair.get((consumer, provider), ()) if g.active_at(when))

    def active_for(self, consumer: str, when: datetime) -> tuple[Grant, ...]:
        """Every grant ``consumer`` holds at ``when`` (for reads that build a query from them)."""
        return tuple(
            g
            for provider in self.providers_of(consumer)
            for g in self._by_pair[(consumer, provider)]
            if g.active_at(when)
        )

    def grant_for(self, consumer: str, facts: ItemFacts, when: datetime) -> Grant | None:
        """The first grant active at ``when`` that lets ``consumer`` see the item, or None
        (always None for the consumer's own items: those need no agreement)."""
        if facts.tenant is None or facts.tenant == consumer:
            return None
        for grant in self._by_pair.get((consumer, facts.tenant), ()):
            if grant.active_at(when) and grant.covers(facts):
                return grant
        return None


EMPTY = Grants()


def facts_of(
    item: Observation | Mapping[str, Any],
    kind: ItemKind,
    device_of: DeviceFacts | None = None,
) -> ItemFacts:
    """The facts of an observation (object or JSON) or an aggregate (JSON). A field the item
    does not carry (an aggregate's device type and tags) comes from ``device_of(tenant, device
    id)`` when given: ``(device type, tags)`` or None for a device the registry does not know."""
    if isinstance(item, Observation):
        return ItemFacts(
            tenant=item.tenant,
            kind=kind,
            quantity=item.quantity,
            classification=item.classification,
            device_id=item.device_id,
            device_type=item.device_type,
            area=item.area,
            tags=tuple(item.tags),
        )
    get = item.get
    tenant, device_id = _text(get("tenant")), _text(get("device_id"))
    device_type, tags = _text(get("device_type")), _tags(get("tags"))
    incomplete = device_type is None or "tags" not in item
    if incomplete and device_id is not None and tenant is not None and device_of is not None:
        known = device_of(tenant, device_id)
        if known is not None:
            device_type = device_type or known[0]
            tags = tags or known[1]
    return ItemFacts(
        tenant=tenant,
        kind=kind,
        quantity=_text(get("quantity")),
        classification=_text(get("classification")),
        device_id=device_id,
        device_type=device_type,
        area=_text(get("area")),
        tags=tags,
    )


def _text(value: object) -> str | None:
    return value if type(value) is str else None


def _tags(value: object) -> tuple[str, ...]:
    if type(value) is not list and not isinstance(value, tuple):
        return ()
    return tuple(tag for tag in value if type(tag) is str)


GrantsSource = Callable[[], Grants]
"""Where an enforcement point gets the current grants: the sharing view's ``grants`` in a
process that follows the topics, ``lambda: grants`` in a test, ``lambda: EMPTY`` without
sharing."""
