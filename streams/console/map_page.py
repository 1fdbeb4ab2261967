"""The map of the tenant's devices, coloured by health (Leaflet), with the same devices in a
table beside it: colour is never the only cue (each marker also has a shape and a letter, and
its title names the device and its health), and the table serves whoever cannot use the map.
Without a tile source (``console.map_tile_url``) the points show on a plain background."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cityhub.schemas.registry import Device
from cityhub.streams.console.health import HealthView, health_of
from cityhub.streams.console.pages import BASE, ConsolePage, Ctx
from cityhub.streams.registry.paging import MAX_PAGE_SIZE

TABLE_ROWS = 200
SYMBOLS = {
    "ok": "✓",
    "degraded": "!",
    "silent": "\u00d7",
    "never_seen": "\u2013",
    "unknown": "?",
}


def located_devices(ctx: Ctx) -> tuple[list[tuple[Device, HealthView]], bool]:
    """The tenant's devices that have a location (at most ``map_max_devices``), each with its
    health, and whether there were more."""
    found: list[Device] = []
    cursor: str | None = None
    limit = ctx.settings.map_max_devices
    more = False
    while True:
        page = ctx.services.registry.list_devices(
            ctx.who, ctx.tenant, limit=MAX_PAGE_SIZE, cursor=cursor
        )
        for device in page.items:
            if device.location is not None:
                if len(found) == limit:
                    more = True
                    break
                found.append(device)
        cursor = page.next_cursor
        if more or cursor is None:
            break
    healths = health_of(ctx, [device.id for device in found])
    return [(device, healths[device.id]) for device in found], more


async def map_page(ctx: Ctx) -> web.StreamResponse:
    devices, more = located_devices(ctx)
    counts = dict.fromkeys(SYMBOLS, 0)
    for _, health in devices:
        counts[health.state] = counts.get(health.state, 0) + 1
    return ctx.render(
        "map.html",
        devices=devices[:TABLE_ROWS],
        total=len(devices),
        more=more,
        counts=counts,
        symbols=SYMBOLS,
        tile_url=ctx.settings.map_tile_url or "",
        attribution=ctx.settings.map_tile_attribution,
    )


async def map_points(ctx: Ctx) -> web.StreamResponse:
    devices, _ = located_devices(ctx)
    points: list[dict[str, Any]] = []
    for device, health in devices:
        assert device.location is not None
        points.append(
            {
                "id": device.id,
                "name": device.name,
                "lat": device.location.latitude,
                "lon": device.location.longitude,
                "state": health.state,
                "symbol": SYMBOLS.get(health.state, "?"),
                "label": ctx.t(
                    "map.marker", name=device.name, health=ctx.t(f"health.{health.state}")
                ),
                "href": f"{BASE}/devices/{device.id}",
            }
        )
    return web.json_response({"points": points})


PAGES = (
    ConsolePage("GET", "/map", map_page, "consoleMap", nav="nav.map"),
    ConsolePage("GET", "/map/points", map_points, "consoleMapPoints"),
)
