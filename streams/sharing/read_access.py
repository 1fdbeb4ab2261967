"""What every read path (the aggregates API, history, SensorThings, NGSI-LD) needs of the
agreements: the grants the reading tenant holds now, which one covers an item, and where to
count what a read returned under each (``Channel.READ``).

A read path gets one ``ReadAccess`` the way it gets its registry view (a constructor or
``build_api`` argument); ``NO_SHARING`` (no grants, nothing counted) where sharing is not
wired. The grants are asked at every read, so an agreement that ends or is revoked stops
counting at the next read after the view has the record (the view follows the agreements
topic within a second or so).

Pure: a grants source, a clock and a counter; no I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from cityhub.schemas.registry import Classification
from cityhub.schemas.sharing import ItemKind
from cityhub.streams.registry.view import DeviceEntry, RegistryView
from cityhub.streams.sharing.grants import (
    EMPTY,
    DeviceFacts,
    Grant,
    Grants,
    GrantsSource,
    ItemFacts,
)
from cityhub.streams.sharing.usage import Channel, UsageCounts


def _now() -> datetime:
    return datetime.now(UTC)


def _no_grants() -> Grants:
    return EMPTY


@dataclass(frozen=True, slots=True)
class ReadAccess:
    """The agreements as a read path sees them."""

    grants: GrantsSource = field(default=_no_grants)
    usage: UsageCounts | None = None
    """Where reads are counted (the process's usage publisher drains it); None: not counted."""
    clock: Callable[[], datetime] = field(default=_now)

    def active_for(self, consumer: str | None) -> tuple[Grant, ...]:
        """The grants ``consumer`` holds now (none for None, an admin's view of every tenant,
        which needs none)."""
        if consumer is None:
            return ()
        return self.grants().active_for(consumer, self.clock())

    def count(self, tally: Mapping[str, int]) -> None:
        """Count items returned under each agreement (agreement id -> items)."""
        if self.usage is None:
            return
        for agreement_id, n in tally.items():
            self.usage.count(agreement_id, Channel.READ, n)


NO_SHARING = ReadAccess()
"""No agreements: own and ``public`` items only, nothing counted."""


def covering(grants: Iterable[Grant], facts: ItemFacts) -> Grant | None:
    """The first of ``grants`` (active ones: ``ReadAccess.active_for``) that covers the item."""
    for grant in grants:
        if grant.covers(facts):
            return grant
    return None


@functools.lru_cache(maxsize=4096)
def _any_quantity(grant: Grant) -> Grant:
    return replace(grant, quantities=None)


def device_grants(grants: Iterable[Grant], facts: ItemFacts) -> tuple[Grant, ...]:
    """Those of ``grants`` that cover some quantity of the device ``facts`` describes (its
    ``quantity`` is ignored), in order."""
    return tuple(
        grant
        for grant in grants
        if grant.provider == facts.tenant and _any_quantity(grant).covers(facts)
    )


def covering_device(grants: Iterable[Grant], facts: ItemFacts) -> Grant | None:
    """The first of ``grants`` that covers some quantity of the device ``facts`` describes
    (its ``quantity`` is ignored): whether the device itself (a Thing, an entity, a device's
    aggregates) may be shown. Which of its quantities show is then a question per item."""
    for grant in grants:
        if grant.provider == facts.tenant and _any_quantity(grant).covers(facts):
            return grant
    return None


def covering_quantity(of_device: Iterable[Grant], quantity: str) -> Grant | None:
    """The first of a device's grants (``device_grants``) that shares ``quantity`` of it."""
    for grant in of_device:
        if grant.quantities is None or quantity in grant.quantities:
            return grant
    return None


def covering_area(grants: Iterable[Grant], tenant: str, area: str) -> Grant | None:
    """The first of ``grants`` under which ``tenant``'s aggregates of ``area`` may be read
    (their classification is a question per window)."""
    for grant in grants:
        if (
            grant.provider == tenant
            and ItemKind.AGGREGATES in grant.kinds
            and grant.device_types is None
            and grant.tags is None
            and grant.device_ids is None
            and (grant.areas is None or area in grant.areas)
        ):
            return grant
    return None


def registry_device_facts(view: RegistryView) -> DeviceFacts:
    """``facts_of``'s ``device_of`` over the registry: a device's type and tags."""

    def known(tenant: str, device_id: str) -> tuple[str | None, tuple[str, ...]] | None:
        entry = view.device_by_id(device_id)
        if entry is None or entry.tenant != tenant:
            return None
        return entry.type, tuple(entry.tags)

    return known


def device_item(
    view: RegistryView, entry: DeviceEntry, kind: ItemKind, *, personal: bool = False
) -> ItemFacts | None:
    """A registered device as an item of ``kind`` (its type's classification, no quantity), or
    None for a device no agreement can share in a read: of an unknown type, of a ``personal``
    one (unless ``personal``: the aggregates API checks personal windows against the
    provider's activity), or linked to a data subject."""
    device_type = view.device_type(entry.tenant, entry.type)
    if device_type is None:
        return None
    if device_type.classification is Classification.PERSONAL and not personal:
        return None
    if entry.data_subject is not None:
        return None
    return ItemFacts(
        tenant=entry.tenant,
        kind=kind,
        quantity=None,
        classification=device_type.classification.value,
        device_id=entry.id,
        device_type=entry.type,
        area=entry.area,
        tags=tuple(entry.tags),
    )


class Tally(dict[str, int]):
    """Items returned per agreement id, for ``ReadAccess.count``."""

    def add(self, grant: Grant | None, n: int = 1) -> None:
        if grant is not None and n > 0:
            self[grant.agreement_id] = self.get(grant.agreement_id, 0) + n
