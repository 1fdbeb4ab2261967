"""Which observations (and aggregates) a subscription receives: its filter and the tenant rule.

Pure and fast: the router (``router.py``) runs the predicate of every candidate subscription
its index finds for an item, so ``compile_filter`` turns a filter into sets and a short tuple
of checks once, and each call is a few set look-ups (see
``tests/unit/test_subscription_filter.py`` for the measured cost).

The tenant rule (``may_see``), applied by every compiled predicate before its filter:

- a subscription sees every observation of its own tenant's devices, whatever their
  classification (personal data included: it is the tenant's own; the consent register that
  comes later narrows it by declared purpose);
- of another tenant's devices, only those classified ``public``; never ``internal``, never
  ``personal``, and never one without a classification;
- an observation whose device's tenant is unknown (an unregistered device let through) is
  seen by no subscription: it belongs to nobody who could have agreed to share it.

- of another tenant's devices, also what an active agreement between the two tenants covers
  (issue 13): the third branch, decided by ``cityhub.streams.sharing.grants`` before the filter.
  The router asks it (``router.py``) and runs the filter compiled with ``shared=True``, which
  leaves the tenant check to it; ``may_see`` and the default predicate know only the first two
  branches.

The ``quality`` criterion reads the item's ``quality`` (the flags of docs/quality.md): an item
without it, or with an empty one, is unflagged, so aggregates and records written before the
flags existed pass it.

There is no wildcard tenant: an administrator's ``*`` is not a tenant id, so a subscription
can never see across tenants beyond ``public`` and its tenant's agreements.

Items are either ``Observation`` objects or their JSON dicts (aggregates are dicts). The
device's tenant is read from its ``tenant`` attribute or key (the normaliser writes the
registry's device tenant there); ``network.tenant``, the network server's tenant, is something
else and never used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from cityhub.schemas.observation import Observation
from cityhub.schemas.quality import UNFLAGGED, excluded_flags
from cityhub.schemas.subscription import SubscriptionFilter

PUBLIC = "public"

Item = Observation | Mapping[str, Any]
Predicate = Callable[[Item], bool]
DeviceTypeOf = Callable[[str, str], str | None]
"""``(device's tenant, device id) -> device type id``, or None when the device is unknown."""

_Check = Callable[[Any], bool]

_OBSERVATION_HAS_TENANT = "tenant" in Observation.__dataclass_fields__


def may_see(subscriber_tenant: str, device_tenant: str | None, classification: str | None) -> bool:
    """Whether a subscription of ``subscriber_tenant`` may receive data of a device owned by
    ``device_tenant`` with that classification (the rule in the module docstring)."""
    if device_tenant is None:
        return False
    return device_tenant == subscriber_tenant or classification == PUBLIC


def device_tenant(item: Item) -> str | None:
    """The tenant that owns the item's device, or None when it is not known."""
    tenant = item.tenant if isinstance(item, Observation) else item.get("tenant")
    return tenant if isinstance(tenant, str) else None


def compile_filter(
    spec_filter: SubscriptionFilter,
    *,
    tenant: str,
    device_type_of: DeviceTypeOf | None = None,
    shared: bool = False,
) -> Predicate:
    """A predicate that is True for exactly the items a subscription of ``tenant`` with
    ``spec_filter`` receives: ``may_see`` and every active criterion of the filter.
    ``shared``: the criteria alone, for items of another tenant that an agreement already let
    the subscription's tenant see (the caller decided the tenant rule).

    ``device_types`` needs the device's type: a ``device_type`` attribute or key of the item
    when it carries one, else ``device_type_of(device tenant, device id)`` (the registry view);
    without either, a ``device_types`` criterion matches nothing. Items missing the field that a
    criterion looks at do not match it; a location with NaN coordinates is inside no box.
    ``tenant`` is required so that no caller can forget the tenant rule.
    """
    # Each criterion is None when inactive, so one call does everything: a closure per
    # criterion costs a Python call each, which was half the time of a check.
    quantities = frozenset(spec_filter.quantities) or None
    device_ids = frozenset(spec_filter.device_ids) or None
    areas = frozenset(spec_filter.areas) or None
    tags = frozenset(spec_filter.tags) or None
    box = spec_filter.bbox
    boxed = box is not None
    min_lat, max_lat, min_lon, max_lon = (
        (box.min_lat, box.max_lat, box.min_lon, box.max_lon) if box is not None else (0.0,) * 4
    )
    of_type = (
        _device_type(frozenset(spec_filter.device_types), device_type_of)
        if spec_filter.device_types
        else None
    )
    has_tenant_field = _OBSERVATION_HAS_TENANT
    unflagged = spec_filter.quality == UNFLAGGED
    excluded = None if unflagged else excluded_flags(spec_filter.quality)

    def matches_observation(obs: Observation) -> bool:
        # getattr with a default on a missing slot raises and catches inside: decided once.
        owner = getattr(obs, "tenant", None) if has_tenant_field else obs.extra.get("tenant")
        if (
            owner != tenant
            and not shared
            and not (type(owner) is str and obs.classification == PUBLIC)
        ):
            return False
        # Cheap and selective first: set look-ups, then tags, the box, the type look-up.
        if quantities is not None and obs.quantity not in quantities:
            return False
        if device_ids is not None and obs.device_id not in device_ids:
            return False
        if areas is not None and obs.area not in areas:
            return False
        if tags is not None and tags.isdisjoint(obs.tags):
            return False
        if obs.quality and (
            unflagged or (excluded is not None and not excluded.isdisjoint(obs.quality))
        ):
            return False
        if boxed:
            location = obs.location
            # Chained comparisons are False for NaN: a NaN coordinate is outside every box.
            if location is None or not (
                min_lat <= location.latitude <= max_lat and min_lon <= location.longitude <= max_lon
            ):
                return False
        return of_type is None or of_type(obs)

    def matches_dict(doc: Mapping[str, Any]) -> bool:
        get = doc.get
        owner = get("tenant")
        if (
            owner != tenant
            and not shared
            and not (type(owner) is str and get("classification") == PUBLIC)
        ):
            return False
        if quantities is not None and not _member(get("quantity"), quantities):
            return False
        if device_ids is not None and not _member(get("device_id"), device_ids):
            return False
        if areas is not None and not _member(get("area"), areas):
            return False
        if tags is not None:
            carried = get("tags")
            if type(carried) is not list and not isinstance(carried, tuple):
                return False
            for tag in carried:  # a loop: any() over a generator costs more than the look-ups
                if type(tag) is str and tag in tags:
                    break
            else:
                return False
        if (unflagged or excluded is not None) and not _quality_passes(
            get("quality"), unflagged, excluded
        ):
            return False
        if boxed:
            location = get("location")
            if type(location) is not dict and not isinstance(location, Mapping):
                return False
            lat, lon = location.get("latitude"), location.get("longitude")
            if not (_is_number(lat) and _is_number(lon)):
                return False
            if not (min_lat <= lat <= max_lat and min_lon <= lon <= max_lon):
                return False
        return of_type is None or of_type(doc)

    def matches(item: Item) -> bool:
        # type() first: isinstance against the Mapping ABC costs a good part of a check.
        if type(item) is dict or not isinstance(item, Observation):
            return matches_dict(item)
        return matches_observation(item)

    return matches


def _quality_passes(flags: object, unflagged: bool, excluded: frozenset[str] | None) -> bool:
    """Whether a JSON item's ``quality`` passes the criterion: absent, null or empty always;
    with ``unflagged`` nothing else (not even a value of another shape: it is not unflagged);
    else when it names none of ``excluded``."""
    if not flags:
        return True
    if unflagged or (type(flags) is not list and not isinstance(flags, tuple)):
        return False
    return all(not (type(flag) is str and flag in excluded) for flag in flags)  # type: ignore[operator]


def _member(value: object, allowed: frozenset[str]) -> bool:
    # Unhashable values (a list where a string belongs) would raise in a set look-up.
    return type(value) is str and value in allowed


def _is_number(value: object) -> TypeGuard[float]:
    kind = type(value)
    return kind is float or kind is int


def _device_type(wanted: frozenset[str], device_type_of: DeviceTypeOf | None) -> _Check:
    def check(item: Item) -> bool:
        carried: object
        device_id: object
        if isinstance(item, Observation):
            carried = getattr(item, "device_type", None)
            device_id = item.device_id
        else:
            carried = item.get("device_type")
            device_id = item.get("device_id")
        if carried is None and device_type_of is not None:
            owner = device_tenant(item)
            if owner is not None and isinstance(device_id, str):
                carried = device_type_of(owner, device_id)
        return isinstance(carried, str) and carried in wanted

    return check
