"""Device health as the API and the console answer it: the registry's devices joined with the
device-health view, judged at the time of asking.

A device's state (``ok``, ``silent``, ``never_seen``) is computed here, from its last-seen time,
its expected interval (``cityhub.schemas.expected_interval``) and ``health.silent_grace``:
nothing writes "silent", so a device goes silent in every answer at the same moment, without a
timer. Tenant isolation as the registry's: another tenant's device, or another tenant, is
``NotFound``. The counts for alerting (``silent_counts``) are made the same way.

Pure: no I/O (the clock is passed in).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict

from cityhub.schemas import base64url
from cityhub.schemas.device_health import (
    DEAD_LETTER_WINDOW_SECONDS,
    DeviceActivity,
    HealthState,
    ReasonCount,
    Trend,
    device_state,
)
from cityhub.schemas.expected_interval import expected_interval
from cityhub.schemas.health_settings import HealthSettings
from cityhub.schemas.registry import ID_PATTERN, Classification
from cityhub.schemas.timefmt import rfc3339
from cityhub.streams.health.view import DeviceHealthView
from cityhub.streams.registry.paging import DEFAULT_PAGE_SIZE, Page, page_limit
from cityhub.streams.registry.principals import Principal, require_tenant_access
from cityhub.streams.registry.view import DeviceEntry, RegistryView
from cityhub.streams.service_errors import FieldError, Invalid, NotFound

SCAN_CHUNK = 500
"""Devices read from the registry at a time while a filtered listing fills its page."""

_DEVICE_ID = re.compile(ID_PATTERN)
_MAX_CURSOR = 84
"""The longest cursor: a device id of 63 characters (the most there is) in base64url."""


def encode_cursor(device_id: str) -> str:
    """The cursor of a page that ended with ``device_id``: opaque (the id in base64url), so that
    a made-up one is refused (``decode_cursor``) instead of quietly paging after it."""
    return base64url.encode(device_id.encode())


def decode_cursor(cursor: str) -> str:
    """The device id a cursor of ``encode_cursor`` names; ``Invalid`` (400 on ``cursor``), as
    the other listings answer, for anything else."""
    device_id = ""
    if len(cursor) <= _MAX_CURSOR:
        with contextlib.suppress(ValueError):
            device_id = base64url.decode(cursor).decode("ascii")
    if _DEVICE_ID.fullmatch(device_id) is None:
        raise Invalid(
            "cursor is not a cursor of this listing",
            errors=[FieldError("cursor", "pass the next_cursor of the previous page")],
        )
    return device_id


class DeviceHealthOut(BaseModel):
    """One device's health, as the API answers it."""

    model_config = ConfigDict(extra="forbid")

    tenant: str
    device: str
    name: str
    type: str
    area: str | None
    active: bool
    state: HealthState
    expected_interval_seconds: int
    """The interval that applies: the device's own, its type's, or the hub's default."""
    silent_after_seconds: float
    """Quiet for longer than this (grace times the interval), the device is silent."""
    silent_since: str | None
    """When the device was last seen, if it is silent now."""
    first_seen: str | None
    last_seen: str | None
    last_observed: str | None
    readings: int
    readings_24h: int
    flagged_24h: int
    flagged_share_24h: float | None
    flags_24h: dict[str, int]
    battery: Trend | None
    rssi: Trend | None
    snr: Trend | None
    dead_letters: list[ReasonCount]
    """Its dead-letter reasons of the last 24 hours: count and last time, by reason."""


class DeviceHealthList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[DeviceHealthOut]
    next_cursor: str | None = None


class DeviceHealthQueries:
    """Reads of device health over the registry's view and the device-health view."""

    def __init__(
        self,
        registry: RegistryView,
        health: DeviceHealthView,
        settings: HealthSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._health = health
        self._default = settings.default_expected_interval_seconds
        self._grace = settings.silent_grace
        self._clock = clock

    def interval_of(self, entry: DeviceEntry) -> int:
        """The device's expected interval in seconds (its own, its type's, the default)."""
        device_type = self._registry.device_type(entry.tenant, entry.type)
        return expected_interval(entry, device_type, self._default)

    def state_of(self, entry: DeviceEntry, now: float) -> HealthState:
        """The device's state at ``now``."""
        last = self._health.last_seen(entry.tenant, entry.id)
        return device_state(last, now, self.interval_of(entry), self._grace)

    def get(self, who: Principal, tenant: str, device_id: str) -> DeviceHealthOut:
        """The tenant's device's health; NotFound if it is not the tenant's (or no tenant)."""
        require_tenant_access(self._registry, who, tenant, write=False)
        entry = self._registry.device_by_id(device_id)
        if entry is None or entry.tenant != tenant:
            raise NotFound(f"device {device_id!r} not found in tenant {tenant!r}")
        return self._answer(entry, self._clock())

    def many(
        self, who: Principal, tenant: str, device_ids: Sequence[str]
    ) -> dict[str, DeviceHealthOut]:
        """The health of each of ``device_ids`` that is the tenant's (others are left out, as
        if they did not exist), all judged at one moment: for a page that shows a few devices
        (the console's device list and map)."""
        require_tenant_access(self._registry, who, tenant, write=False)
        now = self._clock()
        found = {}
        for device_id in dict.fromkeys(device_ids):
            entry = self._registry.device_by_id(device_id)
            if entry is not None and entry.tenant == tenant:
                found[device_id] = self._answer(entry, now)
        return found

    def page(
        self,
        who: Principal,
        tenant: str,
        *,
        state: HealthState | None = None,
        type_id: str | None = None,
        area: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Page[DeviceHealthOut]:
        """The health of the tenant's devices that match every filter, in id order after
        ``cursor`` (the registry's order; the cursor is ``encode_cursor`` of the last id shown,
        ``Invalid`` when it is not one); ``limit`` capped as every listing."""
        require_tenant_access(self._registry, who, tenant, write=False)
        limit = page_limit(limit)
        after = None if cursor is None else decode_cursor(cursor)
        now = self._clock()
        chosen: list[DeviceEntry] = []
        while len(chosen) < limit:
            chunk, more = self._registry.devices_page(
                tenant, limit=SCAN_CHUNK, cursor=after, type_id=type_id, area=area
            )
            for entry in chunk:
                if state is None or self.state_of(entry, now) is state:
                    chosen.append(entry)
                    if len(chosen) == limit:
                        break
            if more is None or not chunk:
                break
            after = chunk[-1].id
        if len(chosen) == limit and self._more_after(tenant, chosen[-1].id, state, type_id, area):
            next_cursor: str | None = encode_cursor(chosen[-1].id)
        else:
            next_cursor = None
        return Page(items=[self._answer(e, now) for e in chosen], next_cursor=next_cursor)

    def _more_after(
        self,
        tenant: str,
        last: str,
        state: HealthState | None,
        type_id: str | None,
        area: str | None,
    ) -> bool:
        after: str | None = last
        now = self._clock()
        while True:
            chunk, more = self._registry.devices_page(
                tenant, limit=SCAN_CHUNK, cursor=after, type_id=type_id, area=area
            )
            if any(state is None or self.state_of(e, now) is state for e in chunk):
                return True
            if more is None or not chunk:
                return False
            after = chunk[-1].id

    def _answer(self, entry: DeviceEntry, now: float) -> DeviceHealthOut:
        device_type = self._registry.device_type(entry.tenant, entry.type)
        interval = expected_interval(entry, device_type, self._default)
        activity = self._health.activity(entry.tenant, entry.id)
        if activity is not None and (
            device_type is None or device_type.classification is Classification.PERSONAL
        ):
            activity = _without_hours(activity)
        last = self._health.last_seen(entry.tenant, entry.id)
        state = device_state(last, now, interval, self._grace)
        since = rfc3339(now - DEAD_LETTER_WINDOW_SECONDS)
        return DeviceHealthOut(
            tenant=entry.tenant,
            device=entry.id,
            name=entry.name,
            type=entry.type,
            area=entry.area,
            active=entry.active,
            state=state,
            expected_interval_seconds=interval,
            silent_after_seconds=interval * self._grace,
            silent_since=activity.last_seen
            if activity is not None and state is HealthState.SILENT
            else None,
            first_seen=None if activity is None else activity.first_seen,
            last_seen=None if activity is None else activity.last_seen,
            last_observed=None if activity is None else activity.last_observed,
            readings=0 if activity is None else activity.readings,
            readings_24h=0 if activity is None else activity.readings_24h,
            flagged_24h=0 if activity is None else activity.flagged_24h,
            flagged_share_24h=None if activity is None else activity.flagged_share_24h,
            flags_24h={} if activity is None else activity.flags_24h,
            battery=None if activity is None else activity.battery,
            rssi=None if activity is None else activity.rssi,
            snr=None if activity is None else activity.snr,
            dead_letters=self._health.dead_letters(entry.tenant, entry.id, since),
        )

    def state_counts(self) -> dict[tuple[str, str, HealthState], int]:
        """Active registered devices per (tenant, type, state) now: what the alerting metrics
        report. One pass over the registry (about a microsecond per device)."""
        now = self._clock()
        counts: Counter[tuple[str, str, HealthState]] = Counter()
        for tenant in self._registry.tenants():
            cursor: str | None = None
            while True:
                chunk, cursor = self._registry.devices_page(
                    tenant.id, limit=SCAN_CHUNK, cursor=cursor, active=True
                )
                for entry in chunk:
                    counts[(entry.tenant, entry.type, self.state_of(entry, now))] += 1
                if cursor is None:
                    break
        return dict(counts)


def _without_hours(activity: DeviceActivity) -> DeviceActivity:
    """A personal device's activity without its hourly series: which hours a device spoke can
    tell when someone was at home. Its last values and slopes stay (a low battery, a weak link
    are what its operator needs); so does when it was last seen (silence needs it)."""
    bare = {
        name: None if trend is None else trend.model_copy(update={"hours_from": None, "hourly": []})
        for name, trend in (
            ("battery", activity.battery),
            ("rssi", activity.rssi),
            ("snr", activity.snr),
        )
    }
    return activity.model_copy(update=bare)
