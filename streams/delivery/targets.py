"""The sinks behind delivery tasks, adapted to ``Target``: webhook batches and MQTT republish.

A target makes one attempt per ``send`` and raises ``DeliveryFailed`` (retriable or not); the
task owns retries, dead letters and metrics."""

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
from cityhub.streams.delivery.queue import Item
from cityhub.streams.delivery.task import Target


class WebhookTarget:
    """POSTs each batch as one signed JSON body (``batch.webhook_body``)."""

    def __init__(self, record: Subscription, settings: Settings) -> None:
        delivery = record.delivery
        secret = record.signing_secret
        if not isinstance(delivery, WebhookDelivery) or secret is None:
            raise ValueError("a webhook target needs a webhook subscription with its secret")
        self._record = record
        d = settings.delivery
        self._sink = WebhookSink(
            delivery.url,
            secret,
            allowed_hosts=settings.subscriptions.webhook_allowed_hosts,
            timeout=d.webhook_timeout_seconds,
            max_response_bytes=d.webhook_max_response_bytes,
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
