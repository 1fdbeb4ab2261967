"""Device health as the console shows it: a state word (``ok``, ``degraded``, ``silent``,
``unknown``) and the facts behind it. Read from the hub's device-health service when this
process has one (``ConsoleServices.health``); without it every device is ``unknown``, and the
pages say so rather than guess."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cityhub.streams.console.pages import Ctx
    from cityhub.streams.registry.principals import Principal

HEALTH_STATES = ("ok", "degraded", "silent", "unknown")


@dataclass(frozen=True, slots=True)
class HealthView:
    state: str
    last_seen: str | None = None
    silent_since: str | None = None
    expected_interval_seconds: int | None = None
    flagged_share: float | None = None
    facts: tuple[tuple[str, str], ...] = ()
    """Further facts (catalogue key of the label, value), shown on the device page."""


UNKNOWN = HealthView("unknown")

HealthSource = Callable[["Principal", str, Sequence[str]], dict[str, HealthView]]
"""(principal, tenant, device ids) -> each device's health (missing ones are unknown)."""


def health_of(ctx: Ctx, device_ids: Sequence[str]) -> dict[str, HealthView]:
    """The health of each of the tenant's ``device_ids`` (``UNKNOWN`` where none is known)."""
    source = ctx.services.health
    known = source(ctx.who, ctx.tenant, device_ids) if source is not None else {}
    return {device_id: known.get(device_id, UNKNOWN) for device_id in device_ids}
