"""What the parts of a process take, made from its stores: the small adapters that
``cityhub.streams.wiring`` and the builders of the worker's parts (``wiring_worker``) and the
API's (``wiring_api``) share.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cityhub.schemas.expected_interval import expected_interval
from cityhub.streams.http import HealthCheck
from cityhub.streams.normaliser.personal import category_of as personal_category
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.sharing.stores import SharingStores

if TYPE_CHECKING:
    from cityhub.streams.delivery.agreement_screen import DeliverySharing


def type_of(registry: RegistryStore, tenant: str, device_id: str) -> str | None:
    """The type of ``tenant``'s device ``device_id``, if it has one."""
    entry = registry.view.device_by_id(device_id)
    return entry.type if entry is not None and entry.tenant == tenant else None


def category_of(registry: RegistryStore) -> Callable[[str, str], str]:
    """The personal-data category of a tenant's device (its type's), from the registry."""

    def category_of(tenant: str, device_id: str) -> str:
        return personal_category(registry.view, tenant, type_of(registry, tenant, device_id))

    return category_of


def interval_of(registry: RegistryStore, default: int) -> Callable[[str | None, str], int]:
    """A device's expected reporting interval (its own, else its type's, else ``default``), for
    the aggregator's coverage; a device not registered to ``tenant`` gets ``default``."""
    view = registry.view

    def interval_of(tenant: str | None, device_id: str) -> int:
        entry = view.device_by_id(device_id)
        if entry is None or entry.tenant != tenant:
            return default
        return expected_interval(entry, view.device_type(entry.tenant, entry.type), default)

    return interval_of


def delivery_sharing(sharing: SharingStores) -> DeliverySharing:
    """What a delivery checks items under agreements against: the current grants, held while
    the agreements' view has not been caught up for ``MAX_STALENESS_S`` (a revocation must stop
    queued items within 5 seconds), counted into the process's usage."""
    from cityhub.streams.delivery.agreement_screen import DeliverySharing
    from cityhub.streams.privacy.gate import MAX_STALENESS_S

    agreements = sharing.agreements
    return DeliverySharing(
        sharing.grants,
        sharing.usage,
        stale=lambda: time.time() - agreements.caught_up_at > MAX_STALENESS_S,
    )


def flag(owner: object, name: str) -> HealthCheck:
    """A health check that reads ``owner``'s boolean attribute ``name`` (``ready``, ``running``)."""
    return lambda: bool(getattr(owner, name))
