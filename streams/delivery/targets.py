"""The sinks behind delivery tasks, adapted to ``Target``: webhook batches and MQTT republish.

A target makes one attempt per ``send`` and raises ``DeliveryFailed`` (retriable or not); the
task owns retries, dead letters and metrics. A target also says how the task cuts batches for
it (``batch_limits``): a webhook by its subscription's own options (``max_batch_size``,
``max_batch_bytes``, ``max_wait_ms``; its ``timeout_s`` bounds each POST), MQTT by the
settings ``delivery.batch_max_items`` and ``batch_linger_seconds``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from cityhub.connectors.sinks.mqtt import MqttSink
from cityhub.connectors.sinks.webhook import WebhookSink
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import (
    MqttDelivery,
    Subscription,
    WebhookDelivery,
    mqtt_topic,
)
from cityhub.streams.delivery.batch import webhook_body
from cityhub.streams.delivery.queue import BatchLimits, Item
from cityhub.streams.delivery.task import Target


def webhook_batch_limits(record: Subscription, delivery: WebhookDelivery) -> BatchLimits:
    """The batches of a webhook subscription: at most ``max_batch_size`` items in a body of at
    most ``max_batch_bytes`` (a single larger item alone), waiting up to ``max_wait_ms``.

    A body is the envelope around its items, joined by commas (``batch.webhook_body``): with n
    items it has ``len(empty body) - 1 + sum(len(item) + 1)`` bytes, so the items' budget is
    ``max_batch_bytes - len(empty body) + 1`` at one byte of overhead each."""
    empty = webhook_body(record.source.value, record.tenant, record.id, ())
    return BatchLimits(
        max_items=delivery.max_batch_size,
        max_bytes=delivery.max_batch_bytes - len(empty) + 1,
        item_overhead=1,
        linger_s=delivery.max_wait_ms / 1000,
    )


class WebhookTarget:
    """POSTs each batch as one signed JSON body (``batch.webhook_body``), by the subscription's
    own batch options and timeout."""

    def __init__(self, record: Subscription, settings: Settings) -> None:
        delivery = record.delivery
        secret = record.signing_secret
        if not isinstance(delivery, WebhookDelivery) or secret is None:
            raise ValueError("a webhook target needs a webhook subscription with its secret")
        self._record = record
        self.batch_limits = webhook_batch_limits(record, delivery)
        self._sink = WebhookSink(
            delivery.url,
            secret,
            allowed_hosts=settings.subscriptions.webhook_allowed_hosts,
            timeout=delivery.timeout_s,
            max_response_bytes=settings.delivery.webhook_max_response_bytes,
        )

    async def start(self) -> None:
        return None

    async def send(self, items: Sequence[Item], msg_id: str) -> None:
        r = self._record
        await self._sink.send(msg_id, webhook_body(r.source.value, r.tenant, r.id, items))

    async def stop(self) -> None:
        await self._sink.close()


class MqttTarget:
    """Publishes every item as one message to ``<root>/<tenant>/<topic>``; a batch is done
    when the broker acknowledged all of it (QoS 1)."""

    def __init__(self, record: Subscription, settings: Settings) -> None:
        delivery = record.delivery
        if not isinstance(delivery, MqttDelivery):
            raise ValueError("an MQTT target needs an MQTT subscription")
        self._topic = mqtt_topic(settings.delivery.mqtt_topic_root, record.tenant, delivery.topic)
        self._qos = delivery.qos
        d = settings.delivery
        self.batch_limits = BatchLimits(d.batch_max_items, linger_s=d.batch_linger_seconds)
        # A suffix per process: two delivery processes holding the same subscription (one
        # delivering, one standing by) must not take each other's connection.
        self._sink = MqttSink(
            settings.mqtt,
            client_id=f"{settings.mqtt.client_id}-sub-{record.tenant}.{record.id}-{os.getpid()}",
        )

    async def start(self) -> None:
        await self._sink.start()

    async def send(self, items: Sequence[Item], msg_id: str) -> None:
        results = await asyncio.gather(
            *(self._sink.publish(self._topic, i.value, qos=self._qos) for i in items),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def stop(self) -> None:
        await self._sink.stop()


def target_for(record: Subscription, settings: Settings) -> Target | None:
    """The target of a subscription a delivery task serves; None for Kafka-topic deliveries
    (the topic is the delivery) and live streams (served per client by the API)."""
    if isinstance(record.delivery, WebhookDelivery):
        return WebhookTarget(record, settings)
    if isinstance(record.delivery, MqttDelivery):
        return MqttTarget(record, settings)
    return None
