"""The live stream route: ``GET .../subscriptions/{id}/events`` as Server-Sent Events.

Authorised like every subscription route (the subscriptions service's ``get``); served by
``cityhub.streams.delivery.sse.LiveStreams``, which the API process attaches to the app. A
subscription that is not an ``sse`` one, or paused, is a 409; a connection past the
subscription's or the tenant's live stream quota a 429 with ``Retry-After`` (``LiveStreams``
raises it, the quota middleware answers it). The stream's guard (:func:`stream_guard`) asks the
same questions again while the stream is open, so that a revoked key or a deleted or paused
subscription ends it.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from cityhub.connectors.sinks import Serving
from cityhub.schemas.subscription import Subscription, SubscriptionState
from cityhub.streams.api.auth import presented_secret
from cityhub.streams.api.bodies import query_time
from cityhub.streams.api.handlers import Call
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.delivery.batch import parse_event_id
from cityhub.streams.delivery.guarded_stream import StreamGuard
from cityhub.streams.delivery.sse import LiveStreams
from cityhub.streams.registry.principals import Principal, require_own_tenant
from cityhub.streams.registry.service import Registry
from cityhub.streams.service_errors import FieldError, ServiceError
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.topics import SUBSCRIPTION_PARTITIONS

LIVE_KEY = web.AppKey("live", LiveStreams)


def _from_time(call: Call) -> datetime | None:
    return query_time(call.request, "fromTime")


def _last_event_id(call: Call) -> str | None:
    raw = call.request.headers.get("Last-Event-ID")
    if raw is None or raw.strip() == "":
        return None
    parsed = parse_event_id(raw)
    if parsed is None or parsed[0] >= SUBSCRIPTION_PARTITIONS:
        raise ApiProblem(
            400,
            "Last-Event-ID must be the id of an event of this stream, <partition>:<offset> "
            "(ASCII digits), as the stream sent it.",
            errors=[FieldError("Last-Event-ID", "expected <partition>:<offset>, e.g. 0:42")],
        )
    return raw


def readable_stream(
    subscriptions: Subscriptions, who: Principal, tenant: str, subscription_id: str
) -> Subscription:
    """The subscription whose live stream ``who`` may read; the service's NotFound (also for
    another tenant's personal stream), or a 409 when it is no live stream or is paused."""
    record = subscriptions.get(who, tenant, subscription_id)
    if record.delivery.serving is not Serving.LIVE:
        raise ApiProblem(
            409,
            f"subscription {record.id!r} delivers by {record.delivery.kind}, not by a live "
            "stream (sse)",
        )
    if record.processing_activity is not None:
        # It may carry residents' personal data: the tenant's own keys only, not another
        # tenant's admin key (which may manage the subscription otherwise).
        require_own_tenant(who, record.tenant)
    if record.state is SubscriptionState.PAUSED:
        raise ApiProblem(409, f"subscription {record.id!r} is paused; resume it first")
    return record


def stream_guard(
    registry: Registry, subscriptions: Subscriptions, secret: str, record: Subscription
) -> StreamGuard:
    """Whether the holder of ``secret`` may still read ``record``'s live stream, asked as the
    request was: the key still known and not revoked, the subscription still readable to it
    (:func:`readable_stream`). In memory only (the registry's and subscriptions' views)."""

    def why_not() -> str | None:
        try:
            readable_stream(subscriptions, registry.authenticate(secret), record.tenant, record.id)
        except (ServiceError, ApiProblem) as exc:
            return exc.detail
        return None

    return why_not


async def stream_subscription(call: Call) -> web.StreamResponse:
    record = readable_stream(
        call.subscriptions, call.principal, call.path_param("tenant"), call.path_param("id")
    )
    # The request's own faults first: they are the same whichever instance serves it.
    from_time = _from_time(call)
    last_event_id = _last_event_id(call)
    live = call.request.app.get(LIVE_KEY)
    if live is None:
        raise ApiProblem(503, "Live streams are not served by this instance of the API.")
    guard = stream_guard(
        call.registry, call.subscriptions, presented_secret(call.request.headers), record
    )
    return await live.serve(
        call.request, record, last_event_id=last_event_id, from_time=from_time, guard=guard
    )
