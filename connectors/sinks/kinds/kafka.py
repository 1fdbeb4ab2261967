"""The ``kafka`` delivery kind: the subscription's own Kafka topic is the delivery.

The worker routes every matching item to ``<prefix>.sub.<tenant>.<id>``
(``subscription_topic``), named by cityhub and never by the subscriber (a subscriber that chose
the name could write into ``cityhub.devices`` or another tenant's topic); the subscriber
consumes it. Nothing runs per subscription, and the topic is the buffer: no delivery queue.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel

from cityhub.connectors.sinks.base import (
    DeliverySpec,
    InvalidDeliverySpec,
    Serving,
    Sink,
    SpecContext,
)
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import Subscription, subscription_topic


class KafkaDelivery(DeliverySpec):
    """Into a Kafka topic of the subscription's own, named by cityhub
    (``<prefix>.sub.<tenant>.<id>``); there is nothing to configure."""

    serving: ClassVar[Serving] = Serving.TOPIC
    kind: Literal["kafka"] = "kafka"


class KafkaKind:
    """The ``kafka`` kind."""

    kind = "kafka"
    spec_model: type[DeliverySpec] = KafkaDelivery
    public_model: type[BaseModel] = KafkaDelivery

    def __repr__(self) -> str:
        return "KafkaKind()"

    async def check(self, spec: DeliverySpec, context: SpecContext) -> None:
        """Refuse an id that makes the tenant's topic name longer than Kafka allows."""
        try:
            subscription_topic(
                context.settings.kafka.topic_prefix, context.tenant, context.subscription_id
            )
        except ValueError as exc:
            raise InvalidDeliverySpec(
                f"the subscription's Kafka topic would be too long: {exc}",
                errors=[("id", "too long for this tenant's Kafka topic name")],
            ) from None

    def build(self, record: Subscription, settings: Settings) -> Sink:
        raise TypeError("a kafka subscription is delivered by its topic; no task builds a sink")
