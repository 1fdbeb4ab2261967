"""The bridge's MQTT session as it was first built, on aiomqtt 2.x and paho's manual acks, kept
as the baseline of ``bench.mqtt_receive``. aiomqtt acknowledges on arrival; paho 2 can leave the
ack to the application (``manual_ack_set``), reached through aiomqtt's private ``_client``.
cityhub's bridge now uses ``cityhub.connectors.mqtt.session.MqttSession`` (its own MQTT 5 codec),
six times faster; see the README.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

import aiomqtt
from paho.mqtt.client import MQTT_ERR_SUCCESS
from paho.mqtt.client import Client as PahoClient
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from cityhub.schemas.settings import MqttSettings, MqttSubscription


class ManualAckSession:
    """A persistent MQTT 5 session (``clean_start`` off, session expiry set) with manual acks.

    ``receive_maximum`` is sent to the broker in CONNECT: it never has more than that many
    unacknowledged QoS 1/2 messages out to us, which is what bounds the bridge's memory.
    """

    def __init__(self, settings: MqttSettings, *, receive_maximum: int) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = settings.session_expiry_seconds
        properties.ReceiveMaximum = receive_maximum
        self._settings = settings
        self._client = aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            identifier=settings.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            keepalive=settings.keepalive,
            properties=properties,
        )
        self._paho: PahoClient = self._client._client
        self._paho.manual_ack_set(True)

    async def __aenter__(self) -> ManualAckSession:
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.__aexit__(exc_type, exc, tb)

    async def subscribe(self, subscription: MqttSubscription) -> None:
        """Subscribe (shared, when a share group is set) to one configured filter."""
        topic_filter = subscription.filter
        if self._settings.share_group:
            topic_filter = f"$share/{self._settings.share_group}/{topic_filter}"
        await self._client.subscribe(topic_filter, options=SubscribeOptions(qos=subscription.qos))

    async def messages(self) -> AsyncIterator[aiomqtt.Message]:
        """The messages as they arrive; raises ``aiomqtt.MqttError`` when the connection is lost.

        aiomqtt's own iterator starts a task and an ``asyncio.wait`` for every message, a fifth of
        the bridge's time under load; this takes whatever is already queued directly and waits
        through aiomqtt's iterator only when the queue is empty.
        """
        waiting = self._client.messages
        queue = self._client._queue
        disconnected = self._client._disconnected
        while True:
            while not queue.empty() and not disconnected.done():
                yield queue.get_nowait()
            yield await anext(waiting)

    @property
    def queued(self) -> int:
        """Messages received from the socket that the bridge has not taken yet."""
        return len(self._client.messages)

    def ack(self, mid: int, qos: int) -> bool:
        """Send the PUBACK (QoS 1) or PUBREC (QoS 2); False when the connection is gone, in
        which case the broker redelivers the message to the resumed session."""
        if qos == 0:
            return True
        return bool(self._paho.ack(mid, qos) == MQTT_ERR_SUCCESS)
