"""The sinks behind delivery tasks, from the sinks registry (``cityhub.connectors.sinks``).

A subscription's delivery kind says how it is served; for a kind a delivery task serves
(webhook, MQTT, a plugin's), the kind builds the subscription's sink, which makes one attempt
per ``send`` and raises ``DeliveryFailed`` (retriable or not) and says how the task cuts batches
for it (``batch_limits``). The task owns retries, dead letters and metrics."""

from __future__ import annotations

from cityhub.connectors.sinks import Serving, get_sink
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import Subscription
from cityhub.streams.delivery.outputs import Target


def target_for(record: Subscription, settings: Settings) -> Target | None:
    """The sink of a subscription a delivery task serves; None for a kind served otherwise (a
    Kafka topic is its own delivery, a live stream is served per client by the API). Raises
    ``UnknownSinkKind`` for a kind no sink is registered for."""
    sink = get_sink(record.delivery.kind)
    if record.delivery.serving is not Serving.TASK:
        return None
    return sink.build(record, settings)
