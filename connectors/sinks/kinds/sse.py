"""The ``sse`` delivery kind: a live stream of the subscription's topic, as Server-Sent Events.

The subscriber connects to ``GET /api/v1/tenants/{tenant}/subscriptions/{id}/events``; the API
reads the topic for each connection (``cityhub.streams.delivery.sse.LiveStreams``), through a
bounded queue with the subscription's ``on_full``. Nothing is configured, nothing runs while no
client is connected, and the client resumes with ``Last-Event-ID``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel

from cityhub.connectors.sinks.base import DeliverySpec, Serving, Sink, SpecContext
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import Subscription


class SseDelivery(DeliverySpec):
    """A live stream over Server-Sent Events: the subscriber connects, nothing is configured."""

    serving: ClassVar[Serving] = Serving.LIVE
    kind: Literal["sse"] = "sse"


class SseKind:
    """The ``sse`` kind."""

    kind = "sse"
    spec_model: type[DeliverySpec] = SseDelivery
    public_model: type[BaseModel] = SseDelivery

    def __repr__(self) -> str:
        return "SseKind()"

    async def check(self, spec: DeliverySpec, context: SpecContext) -> None:
        """Nothing to check: the stream needs no more than the subscription."""

    def build(self, record: Subscription, settings: Settings) -> Sink:
        raise TypeError("an sse subscription is streamed by the API per client; no task runs")
