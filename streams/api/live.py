"""The live stream route: ``GET .../subscriptions/{id}/events`` as Server-Sent Events.

Authorised like every subscription route (the subscriptions service's ``get``); served by
``cityhub.streams.delivery.sse.LiveStreams``, which the API process attaches to the app. A
subscription that is not an ``sse`` one, or paused, is a 409; a connection past the
subscription's or the tenant's live stream quota a 429 with ``Retry-After`` (``LiveStreams``
raises it, the quota middleware answers it).
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from cityhub.schemas.subscription import SseDelivery, SubscriptionState
from cityhub.streams.api.handlers import Call
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.delivery.sse import LiveStreams
from cityhub.streams.registry.service import FieldError

LIVE_KEY = web.AppKey("live", LiveStreams)


def _from_time(call: Call) -> datetime | None:
    raw = call.request.query.get("from_time")
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise ApiProblem(
            422,
            "from_time must be an RFC 3339 time with an offset, e.g. 2026-11-29T10:00:00Z",
            errors=[FieldError("from_time", "not an RFC 3339 time")],
        )
    return value


async def stream_subscription(call: Call) -> web.StreamResponse:
    record = call.subscriptions.get(
        call.principal, call.path_param("tenant"), call.path_param("id")
    )
    if not isinstance(record.delivery, SseDelivery):
        raise ApiProblem(
            409, f"subscription {record.id!r} delivers by {record.delivery.kind}, not sse"
        )
    if record.state is SubscriptionState.PAUSED:
        raise ApiProblem(409, f"subscription {record.id!r} is paused; resume it first")
    live = call.request.app.get(LIVE_KEY)
    if live is None:
        raise ApiProblem(503, "Live streams are not served by this instance of the API.")
    from_time = _from_time(call)
    return await live.serve(
        call.request,
        record,
        last_event_id=call.request.headers.get("Last-Event-ID"),
        from_time=from_time,
    )
