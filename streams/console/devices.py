"""The device list: search (id or name) and filters (type, area, tag, active), over the
registry's own paging, so that it shows exactly what the API would list for the key."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from cityhub.schemas.registry import Device
from cityhub.streams.console.health import HEALTH_STATES, HealthView, health_of
from cityhub.streams.console.pages import ConsolePage, Ctx
from cityhub.streams.registry.paging import MAX_PAGE_SIZE

PAGE_SIZE = 50
SCAN_LIMIT = 20_000
"""A search reads at most this many of the tenant's devices per page shown (then offers the
next page), so one request stays cheap however large the tenant is."""
_ACTIVE = {"yes": True, "no": False}


@dataclass(frozen=True, slots=True)
class Filters:
    q: str
    type: str
    area: str
    tag: str
    active: str
    health: str

    @classmethod
    def of(cls, ctx: Ctx) -> Filters:
        return cls(
            q=ctx.query("q", 100),
            type=ctx.query("type", 64),
            area=ctx.query("area", 64),
            tag=ctx.query("tag", 64),
            active=ctx.query("active", 3) if ctx.query("active", 3) in _ACTIVE else "",
            health=ctx.query("health", 16),
        )

    def matches(self, device: Device, health: HealthView) -> bool:
        needle = self.q.casefold()
        if needle and needle not in device.id.casefold() and needle not in device.name.casefold():
            return False
        return not self.health or health.state == self.health


@dataclass(frozen=True, slots=True)
class Listing:
    devices: list[tuple[Device, HealthView]]
    next_cursor: str | None


def find_devices(ctx: Ctx, filters: Filters, cursor: str | None) -> Listing:
    """One page of the tenant's devices that match ``filters``, after ``cursor``."""
    found: list[tuple[Device, HealthView]] = []
    scanned = 0
    plain = not filters.q and not filters.health
    while True:
        page = ctx.services.registry.list_devices(
            ctx.who,
            ctx.tenant,
            type_id=filters.type or None,
            area=filters.area or None,
            tag=filters.tag or None,
            active=_ACTIVE.get(filters.active),
            limit=PAGE_SIZE if plain else MAX_PAGE_SIZE,
            cursor=cursor,
        )
        healths = health_of(ctx, [device.id for device in page.items])
        for device in page.items:
            scanned += 1
            health = healths[device.id]
            if filters.matches(device, health):
                found.append((device, health))
                if len(found) == PAGE_SIZE:
                    # The next page starts after this device (the registry's cursor is its id).
                    more = device is not page.items[-1] or page.next_cursor is not None
                    return Listing(found, device.id if more else None)
        cursor = page.next_cursor
        if cursor is None:
            return Listing(found, None)
        if scanned >= SCAN_LIMIT:
            return Listing(found, cursor)


async def device_list(ctx: Ctx) -> web.StreamResponse:
    filters = Filters.of(ctx)
    listing = find_devices(ctx, filters, ctx.query("cursor", 200) or None)
    types = ctx.services.registry.list_types(ctx.who, ctx.tenant, limit=MAX_PAGE_SIZE).items
    return ctx.render(
        "devices.html",
        filters=filters,
        listing=listing,
        types=[(t.id, t.name) for t in types],
        health_states=HEALTH_STATES,
    )


PAGES = (ConsolePage("GET", "/devices", device_list, "consoleDevices", nav="nav.devices"),)
