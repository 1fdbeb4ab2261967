"""A device's page: its registration (and the form that edits it), its health, a chart of its
recent windows, and its live observations (Server-Sent Events from
``cityhub.streams.console.live``)."""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from cityhub.schemas.plain_text import shown
from cityhub.schemas.registry import Device, DeviceSpec, Role
from cityhub.streams.aggregation.query import (
    AggregateQuery,
    AggregatesUnavailable,
    QueryRejected,
    device_group,
)
from cityhub.streams.api.aggregates import AGGREGATES_KEY
from cityhub.streams.console.app import redirect, session_principal
from cityhub.streams.console.chart import build_chart, quantities
from cityhub.streams.console.health import health_of
from cityhub.streams.console.live import LiveRefused, Watcher
from cityhub.streams.console.pages import ConsolePage, Ctx
from cityhub.streams.console.signouts import current
from cityhub.streams.delivery.guarded_stream import StreamEnded, guarded
from cityhub.streams.registry.paging import MAX_PAGE_SIZE
from cityhub.streams.service_errors import (
    Conflict,
    FieldError,
    Invalid,
    ServiceError,
    Unavailable,
)

CHART_HOURS = (1, 6, 24)
LIVE_SHOWN = 20
PERSONAL = "personal"
FORM_FIELDS = ("name", "type", "area", "tags", "active", "dev_eui", "latitude", "longitude")


def _device_id(ctx: Ctx) -> str:
    return ctx.request.match_info["device_id"][:200]


def _form_of(device: Device) -> dict[str, str]:
    location = device.location
    return {
        "name": device.name,
        "type": device.type,
        "area": device.area or "",
        "tags": ", ".join(device.tags),
        "active": "on" if device.active else "",
        "dev_eui": device.dev_eui or "",
        "latitude": "" if location is None else f"{location.latitude}",
        "longitude": "" if location is None else f"{location.longitude}",
    }


async def _windows(ctx: Ctx, device_id: str, hours: int) -> tuple[list[dict[str, Any]], str]:
    """The device's windows of the last ``hours`` (personal ones left out), and a note."""
    source = ctx.request.config_dict.get(AGGREGATES_KEY)
    if source is None:
        return [], "device.chart_unavailable"
    to_ms = int(time.time() * 1000)
    query = AggregateQuery(
        group=device_group(device_id), from_ms=to_ms - hours * 3600_000, to_ms=to_ms
    )
    try:
        result = await source.read(query)
    except (QueryRejected, AggregatesUnavailable):
        return [], "device.chart_unavailable"
    items = [item for item in result.items if item.get("classification") != PERSONAL]
    note = "device.chart_personal" if len(items) < len(result.items) else ""
    return items, note


async def device_page(
    ctx: Ctx,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    device_id = _device_id(ctx)
    device = ctx.services.registry.get_device(ctx.who, ctx.tenant, device_id)
    health = health_of(ctx, [device.id])[device.id]
    hours = int(ctx.query("hours", 3)) if ctx.query("hours", 3) in {"1", "6", "24"} else 24
    windows, chart_note = await _windows(ctx, device.id, hours)
    names = quantities(windows)
    chosen = ctx.query("quantity", 64)
    chosen = chosen if chosen in names else (names[0] if names else "")
    types = ctx.services.registry.list_types(ctx.who, ctx.tenant, limit=MAX_PAGE_SIZE).items
    return ctx.render(
        "device.html",
        status=status,
        device=device,
        health=health,
        chart=build_chart(windows, chosen) if chosen else None,
        chart_note=chart_note,
        quantities=names,
        quantity=chosen,
        hours=hours,
        hour_choices=CHART_HOURS,
        form=form or _form_of(device),
        editable=ctx.who.role is not Role.SUBSCRIBER,  # a subscriber key only reads
        errors=errors or {},
        saved=ctx.query("saved", 1) == "1",
        types=[(t.id, t.name) for t in types],
        live_enabled=ctx.services.live is not None,
        live_shown=LIVE_SHOWN,
    )


async def show_device(ctx: Ctx) -> web.StreamResponse:
    return await device_page(ctx)


def _spec(device: Device, form: dict[str, str]) -> DeviceSpec | dict[str, str]:
    """The replacement registration the form asks for, or an error per form field."""
    errors: dict[str, str] = {}
    doc: dict[str, Any] = {
        "id": device.id,
        "name": form["name"],
        "type": form["type"],
        "area": form["area"] or None,
        "tags": [tag.strip() for tag in form["tags"].split(",") if tag.strip()],
        "active": form["active"] == "on",
        "dev_eui": form["dev_eui"] or None,
        # What the form does not edit stays as it is (an omitted app_key and data subject too).
        "network": None if device.network is None else device.network.model_dump(mode="json"),
    }
    latitude, longitude = form["latitude"], form["longitude"]
    if latitude or longitude:
        try:
            doc["location"] = {"latitude": float(latitude), "longitude": float(longitude)}
        except ValueError:
            errors["latitude" if not _is_number(latitude) else "longitude"] = "device.not_a_number"
    if errors:
        return errors
    try:
        return DeviceSpec.model_validate(doc)
    except ValidationError as exc:
        for error in exc.errors():
            where = [str(part) for part in error["loc"]]
            name = where[0] if where else "name"
            if name == "location":
                name = (
                    where[1]
                    if len(where) > 1 and where[1] in {"latitude", "longitude"}
                    else "latitude"
                )
            errors.setdefault(name if name in FORM_FIELDS else "name", str(error["msg"])[:200])
        return errors


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


async def edit_device(ctx: Ctx) -> web.StreamResponse:
    device = ctx.services.registry.get_device(ctx.who, ctx.tenant, _device_id(ctx))
    form = {name: ctx.form_text(name, 300) for name in FORM_FIELDS}
    spec = _spec(device, form)
    if isinstance(spec, dict):
        return await device_page(ctx, form=form, errors=_translated(ctx, spec), status=400)
    try:
        await ctx.services.registry.replace_device(ctx.who, ctx.tenant, device.id, spec)
    except (Invalid, Conflict) as exc:
        errors = _field_errors(exc.errors) or {"name": exc.detail[:300]}
        return await device_page(ctx, form=form, errors=errors, status=400)
    return redirect(f"/devices/{device.id}?saved=1")


def _translated(ctx: Ctx, errors: dict[str, str]) -> dict[str, str]:
    return {
        name: ctx.t(text) if text.startswith("device.") else text for name, text in errors.items()
    }


def _field_errors(errors: tuple[FieldError, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for error in errors:
        name = error.field.split(".")[0].split("[")[0]
        found.setdefault(name if name in FORM_FIELDS else "name", error.message[:300])
    return found


def observation_line(ctx: Ctx, doc: dict[str, Any]) -> str:
    """One observation as the live list shows it (plain text, in the page's language; a
    character that would not read as itself, which a device's payload may carry, as its
    escape)."""
    when = str(doc.get("observed_at", ""))[:40]
    quantity = str(doc.get("quantity", "?"))[:64]
    if doc.get("sealed") or doc.get("classification") == PERSONAL:
        value = ctx.t("device.value_withheld")
    else:
        value = f"{doc.get('value')} {doc.get('unit') or ''}".strip()[:100]
    flags = [str(flag)[:32] for flag in (doc.get("quality") or [])][:8]
    line = f"{when} · {quantity} = {value}"
    if flags:
        line += " · " + ctx.t("device.flags", flags=", ".join(flags))
    return shown(line)


async def live_observations(ctx: Ctx) -> web.StreamResponse:
    device = ctx.services.registry.get_device(ctx.who, ctx.tenant, _device_id(ctx))
    live = ctx.services.live
    if live is None:
        raise Unavailable("live observations are not served by this process")
    try:
        async with live.watch(ctx.tenant, device.id, ctx.session.csrf) as watcher:
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
            )
            await response.prepare(ctx.request)
            await _event(response, "status", ctx.t("device.live_connected"))
            with contextlib.suppress(ConnectionError):
                await _stream(ctx, response, watcher)
            return response
    except LiveRefused:
        return ctx.render(
            "error.html", status=429, message=ctx.t("device.live_refused"), detail=None, errors=[]
        )


def _why_not_watch(ctx: Ctx, device_id: str) -> str | None:
    """Why the live page's session may no longer watch the device (a message key), or None
    while it may, asked as a page request would be: not expired, not signed out (and the
    sign-outs known), its key or OpenID Connect sign-in still good, the device still there and
    its tenant's."""
    now = time.time()
    session = ctx.session
    services = ctx.services
    if not current(services.signouts, now):
        return "device.live_unchecked"
    if now >= session.expires_at or services.signouts.view.signed_out(session.id):
        return "device.live_ended"
    who = session_principal(services, ctx.settings, session)
    if who is None:
        return "device.live_ended"
    try:
        services.registry.get_device(who, ctx.tenant, device_id)
    except ServiceError:
        return "device.live_ended"
    return None


async def _stream(ctx: Ctx, response: web.StreamResponse, watcher: Watcher) -> None:
    """Send the device's observations as they come, until the page may no longer watch them
    (checked every second and before each one is sent, ``guarded``): then an ``end`` event,
    which makes the page close its stream rather than reconnect. A page that went away gives
    its watcher slot back within that second, not at a keep-alive."""
    device_id = watcher.device_id
    dropped = 0
    docs = guarded(
        ctx.request,
        response,
        watcher.queue.get,
        functools.partial(_why_not_watch, ctx, device_id),
        keepalive=b": keep-alive\n\n",
    )
    async for doc in docs:
        if isinstance(doc, StreamEnded):
            if doc.why is not None:
                await _event(response, "end", ctx.t(doc.why))
            return
        if watcher.dropped != dropped:
            dropped = watcher.dropped
            await _event(response, "status", ctx.t("device.live_dropped", n=dropped))
        await _event(response, "observation", observation_line(ctx, doc))


async def _event(response: web.StreamResponse, name: str, text: str) -> None:
    data = text.replace("\r", " ").replace("\n", " ")
    await response.write(f"event: {name}\ndata: {data}\n\n".encode())


PAGES = (
    ConsolePage("GET", "/devices/{device_id}", show_device, "consoleDevice"),
    ConsolePage("POST", "/devices/{device_id}", edit_device, "consoleEditDevice"),
    ConsolePage("GET", "/devices/{device_id}/live", live_observations, "consoleDeviceLive"),
)
