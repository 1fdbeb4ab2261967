"""The ``mqtt`` delivery kind: every item republished as one message on cityhub's MQTT broker,
by a delivery task through :class:`~cityhub.connectors.sinks.mqtt.MqttSink`.

The spec's ``topic`` is relative: the sink publishes under a per-tenant root
(``mqtt_topic(settings.delivery.mqtt_topic_root, tenant, topic)``), so that a subscriber cannot
publish into the topics the bridge ingests from, nor into another tenant's. A batch is done when
the broker acknowledged all of it (QoS 1; QoS 0 when it was handed to the connection). Batches
follow the settings ``delivery.batch_max_items`` and ``batch_linger_seconds``. The broker's
credentials come from ``MqttSettings`` (``delivery_username`` with ``delivery_password`` or
``delivery_password_file``, else the bridge's user; its host, port and TLS) and never appear in
a message or a ``repr``. They are settings, not part of a subscription's spec, on purpose:
deliveries go to cityhub's own broker, under a root the hub chooses per tenant, so one hub user
writes them all and the broker's ACL gives each tenant's subscribers read access to their
subtree; a spec that named a broker and credentials would make the hub an MQTT client of any
host a tenant names.

Each message is written by the subscription's ``delivery.encoding``
(``cityhub.connectors.sinks.encodings``): ``cityhub`` (the default) publishes the item's JSON as
it is; ``cloudevents`` a structured CloudEvent, ``cloudevents-binary`` the item's JSON with the
event's attributes as MQTT 5 User Properties (the CloudEvents MQTT binding). Every message
carries the User Property ``traceparent``, a child span of its item's trace
(``cityhub.connectors.sinks.tracing``; in binary mode the event's own attribute of that name).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, StringConstraints, field_validator

from cityhub.connectors.sinks.base import BatchLimits, DeliverySpec, Item, Sink, SpecContext
from cityhub.connectors.sinks.encodings import EncodingContext, get_encoding
from cityhub.connectors.sinks.mqtt import MqttSink
from cityhub.connectors.sinks.tracing import item_traceparent
from cityhub.schemas.settings import MqttSettings, Settings
from cityhub.schemas.subscription import MAX_MQTT_TOPIC_BYTES, Subscription, mqtt_topic
from cityhub.schemas.trace_context import TRACEPARENT


class MqttDelivery(DeliverySpec):
    """Republished on cityhub's MQTT broker.

    ``topic`` is relative: the sink publishes under a per-tenant root
    (``mqtt_topic(root, tenant, topic)``), so that a subscriber cannot publish into the topics
    the bridge ingests from, nor into another tenant's. No wildcards, no ``$`` system topics.
    """

    kind: Literal["mqtt"] = "mqtt"
    topic: Annotated[str, StringConstraints(min_length=1)]
    qos: Literal[0, 1] = 1
    """QoS 2 costs two more round trips for what deterministic event ids already give."""

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if len(value.encode()) > MAX_MQTT_TOPIC_BYTES:
            raise ValueError(f"an MQTT topic has at most {MAX_MQTT_TOPIC_BYTES} bytes")
        if "+" in value or "#" in value:
            raise ValueError("an MQTT topic to publish to has no wildcards (+ or #)")
        if value.startswith(("$", "/")):
            raise ValueError("an MQTT topic here starts with neither '$' nor '/'")
        if not value.isprintable():
            # Control characters, and format characters such as bidirectional overrides
            # (U+202E), which would show a subscriber's topic as another in a console or log.
            raise ValueError(
                "an MQTT topic has no control characters, separators or bidirectional overrides"
            )
        if any(level in ("", ".", "..") for level in value.split("/")):
            raise ValueError("an MQTT topic has no empty, '.' or '..' levels")
        return value


class MqttTarget:
    """An MQTT subscription's sink: publishes every item as one message to
    ``<root>/<tenant>/<topic>``; a batch is done when the broker acknowledged all of it."""

    def __init__(self, record: Subscription, settings: Settings) -> None:
        delivery = record.delivery
        if not isinstance(delivery, MqttDelivery):
            raise ValueError("an MQTT target needs an MQTT subscription")
        self._topic = mqtt_topic(settings.delivery.mqtt_topic_root, record.tenant, delivery.topic)
        self._qos = delivery.qos
        self._encoding = get_encoding(delivery.encoding)
        self._context = EncodingContext(
            "mqtt", record.source.value, record.tenant, record.id, settings
        )
        d = settings.delivery
        self.batch_limits = BatchLimits(d.batch_max_items, linger_s=d.batch_linger_seconds)
        # A suffix per process: two delivery processes holding the same subscription (one
        # delivering, one standing by) must not take each other's connection.
        self._sink = MqttSink(
            delivery_broker_settings(settings.mqtt),
            client_id=f"{settings.mqtt.client_id}-sub-{record.tenant}.{record.id}-{os.getpid()}",
        )

    def __repr__(self) -> str:
        return f"MqttTarget({self._sink!r}, topic={self._topic!r})"

    async def start(self) -> None:
        await self._sink.start()

    async def send(self, items: Sequence[Item], msg_id: str) -> None:
        messages = [self._encoding.encode_message(i, self._context) for i in items]
        results = await asyncio.gather(
            *(
                self._sink.publish(
                    self._topic,
                    m.payload,
                    qos=self._qos,
                    content_type=m.content_type,
                    user_properties=_traced(m.headers, item),
                )
                for m, item in zip(messages, items, strict=True)
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def stop(self) -> None:
        await self._sink.stop()


def delivery_broker_settings(mqtt: MqttSettings) -> MqttSettings:
    """The broker settings deliveries publish with: ``mqtt``'s broker and TLS, logged in as
    ``delivery_username`` (with ``delivery_password``) when set, else as the bridge's user."""
    if mqtt.delivery_username is None:
        return mqtt
    return mqtt.model_copy(
        update={
            "username": mqtt.delivery_username,
            "password": mqtt.delivery_password,
            "password_file": mqtt.delivery_password_file,
        }
    )


def _traced(properties: tuple[tuple[str, str], ...], item: Item) -> tuple[tuple[str, str], ...]:
    """The User Properties of the message carrying ``item``: the encoding's, and a
    ``traceparent`` (a child span of the item's trace) unless the encoding set one (CloudEvents
    binary mode names the attribute so, as the item's own)."""
    if any(name == TRACEPARENT for name, _ in properties):
        return properties
    return (*properties, (TRACEPARENT, item_traceparent(item)))


class MqttKind:
    """The ``mqtt`` kind."""

    kind = "mqtt"
    spec_model: type[DeliverySpec] = MqttDelivery
    public_model: type[BaseModel] = MqttDelivery

    def __repr__(self) -> str:
        return "MqttKind()"

    async def check(self, spec: DeliverySpec, context: SpecContext) -> None:
        """Nothing beyond the model: the topic's root is the tenant's by construction."""

    def build(self, record: Subscription, settings: Settings) -> Sink:
        return MqttTarget(record, settings)
