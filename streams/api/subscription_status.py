"""A subscription's delivery status through the API (docs/console.md, "Delivery figures"):

* ``GET /api/v1/tenants/{tenant}/subscriptions/{id}/status``: its state, lag in messages and
  seconds, delivered, failures and delivery rate, as the delivery process that delivers it last
  wrote them to the ``subscription-status`` topic, with their age.

Whoever may read the subscription reads its status (the subscriptions service decides: a
subscriber or admin key of the tenant; another tenant's key gets 404). The figures come from the
API process's view of the status topic (the console's, ``cityhub.streams.console.ops``); a
process without it answers 503. A Kafka-topic or live-stream subscription is read by its
subscriber's own client: its answer says so (``delivered_by: client``) and carries no figures.
"""

from __future__ import annotations

import time

from aiohttp import web
from pydantic import BaseModel

from cityhub.schemas.subscription import SUBSCRIPTION_ID_PATTERN
from cityhub.schemas.subscription_status import SubscriptionStatus
from cityhub.streams.api.handlers import Call, json_response
from cityhub.streams.api.problems import ApiProblem
from cityhub.streams.api.route_model import TENANT_PARAM, Param, Route
from cityhub.streams.delivery.status_view import SubscriptionStatusView, subscription_row

SUBSCRIPTION_STATUS_KEY = web.AppKey("subscription_status", SubscriptionStatusView)


class SubscriptionStatusOut(BaseModel):
    """A subscription's delivery status."""

    tenant: str
    id: str
    state: str
    """``active``, ``paused`` (the subscription's record) or ``failing`` (its sink keeps failing,
    as the delivery process reported)."""
    delivered_by: str
    """``task``: a delivery process delivers it and reports its figures; ``client``: a
    Kafka-topic or live-stream subscription, read by the subscriber's own client."""
    reported: bool
    """Whether a delivery process has reported it (``figures`` then holds what it said)."""
    age_seconds: int | None = None
    """How old the figures are."""
    figures: SubscriptionStatus | None = None


async def get_subscription_status(call: Call) -> web.Response:
    record = call.subscriptions.get(
        call.principal, call.path_param("tenant"), call.path_param("id")
    )
    view = call.request.app.get(SUBSCRIPTION_STATUS_KEY)
    if view is None:
        raise ApiProblem(503, "Delivery statuses are not served by this instance of the API.")
    row = subscription_row(record, view.of(record.tenant, record.id), time.time())
    answer = SubscriptionStatusOut(
        tenant=row.tenant,
        id=row.id,
        state=row.state,
        delivered_by="client" if row.by_client else "task",
        reported=row.status is not None,
        age_seconds=row.age_seconds,
        figures=row.status,
    )
    return json_response(answer.model_dump(mode="json"))


SUBSCRIPTION_STATUS_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/tenants/{tenant}/subscriptions/{id}/status",
        "getSubscriptionStatus",
        "A subscription's delivery status: state, lag, delivered, failures, delivery rate",
        "subscriptions",
        get_subscription_status,
        response=SubscriptionStatusOut,
        params=(
            TENANT_PARAM,
            Param(
                "id",
                "path",
                {"type": "string", "pattern": SUBSCRIPTION_ID_PATTERN},
                "The subscription's id.",
                required=True,
            ),
        ),
        problems=(403, 404, 503),
    ),
)

__all__ = ["SUBSCRIPTION_STATUS_KEY", "SUBSCRIPTION_STATUS_ROUTES", "SubscriptionStatusOut"]
