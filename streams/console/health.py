"""Device health as the console shows it: a state word and the facts behind it, from the hub's
device-health queries (``cityhub.streams.health.queries``, at ``DEVICE_HEALTH_KEY`` of the API
app) with the signed-in principal, so tenant isolation is the API's.

States: ``ok``, ``silent`` and ``never_seen`` are the health API's own; the console adds
``degraded`` for a device that is ``ok`` but had at least ``DEGRADED_FLAGGED_SHARE`` of its
readings of the last 24 hours flagged, or any dead letter in them (so the map shows a device
that talks but cannot be trusted); ``unknown`` where this process serves no device health."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cityhub.streams.api.device_health import DEVICE_HEALTH_KEY

if TYPE_CHECKING:
    from cityhub.streams.console.pages import Ctx
    from cityhub.streams.health.queries import DeviceHealthOut

HEALTH_STATES = ("ok", "degraded", "silent", "never_seen", "unknown")
DEGRADED_FLAGGED_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class HealthView:
    state: str
    last_seen: str | None = None
    silent_since: str | None = None
    expected_interval_seconds: int | None = None
    flagged_share: float | None = None
    facts: tuple[tuple[str, str], ...] = ()
    """Further facts (catalogue key of the label, value as text), shown on the device page."""


UNKNOWN = HealthView("unknown")


def health_of(ctx: Ctx, device_ids: Sequence[str]) -> dict[str, HealthView]:
    """The health of each of the tenant's ``device_ids`` (``UNKNOWN`` where none is known)."""
    queries = ctx.request.config_dict.get(DEVICE_HEALTH_KEY)
    if queries is None or not device_ids:
        return dict.fromkeys(device_ids, UNKNOWN)
    found = queries.many(ctx.who, ctx.tenant, device_ids)
    return {
        device_id: view_of(found[device_id]) if device_id in found else UNKNOWN
        for device_id in device_ids
    }


def view_of(health: DeviceHealthOut) -> HealthView:
    """The console's view of one device's health answer."""
    state = str(health.state)
    share = health.flagged_share_24h
    if state == "ok" and (
        (share is not None and share >= DEGRADED_FLAGGED_SHARE) or health.dead_letters
    ):
        state = "degraded"
    facts: list[tuple[str, str]] = [("health.readings_24h", str(health.readings_24h))]
    if health.flags_24h:
        flags = ", ".join(f"{name} ({count})" for name, count in sorted(health.flags_24h.items()))
        facts.append(("health.flags_24h", flags))
    for label, trend in (
        ("health.battery", health.battery),
        ("health.rssi", health.rssi),
        ("health.snr", health.snr),
    ):
        if trend is not None:
            text = f"{trend.last:g} {trend.unit or ''}".strip()
            if trend.slope_per_day is not None:
                text += f" ({trend.slope_per_day:+.3g}/d)"
            facts.append((label, text))
    for reason in health.dead_letters[:10]:
        facts.append(("health.dead_letter", f"{reason.reason}: {reason.count} ({reason.last_at})"))
    return HealthView(
        state=state,
        last_seen=health.last_seen,
        silent_since=health.silent_since,
        expected_interval_seconds=health.expected_interval_seconds,
        flagged_share=share,
        facts=tuple(facts),
    )
