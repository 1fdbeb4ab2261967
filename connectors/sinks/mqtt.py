"""The MQTT republish sink: publishes deliveries to cityhub's own MQTT broker.

Contract with the delivery task (``cityhub.streams.delivery``), which owns batching, queues,
retries, dead letters and metrics::

    sink = MqttSink(settings.mqtt, client_id=f"cityhub-delivery-{worker_id}")
    await sink.start()                                # connects; raises DeliveryFailed
    await sink.publish(topic, payload, qos=1)         # returns once the broker's PUBACK came
    await sink.stop()                                 # DISCONNECT: the broker forgets the session

``publish`` makes one attempt. With QoS 1 it returns when the broker acknowledged the message
with a successful PUBACK; with QoS 0 when the message was handed to the connection. Otherwise it
raises :class:`~cityhub.connectors.sinks.errors.DeliveryFailed`:

=======================================================  ==========================  ============
outcome                                                  retriable                   kind
=======================================================  ==========================  ============
cannot connect; connection lost before the PUBACK        yes                         connection
no PUBACK within ``timeout`` (the connection is dropped) yes                         timeout
CONNACK or PUBACK reason code >= 0x80                    only 0x80, 0x83, 0x88,      refused
                                                         0x89, 0x97, 0x9F
topic with wildcards/NUL/empty, packet over the broker's no                          invalid
Maximum Packet Size
=======================================================  ==========================  ============

After a lost connection the next ``publish`` connects again (nothing reconnects in the
background). Several ``publish`` calls may wait at once on the one connection; up to
``max_inflight`` QoS 1 messages (never more than the broker's Receive Maximum) are on the wire,
the others wait for room within their ``timeout``. Callers bound how many they start.

Sessions: every connection starts clean (Clean Start) with Session Expiry Interval 0, so the
broker keeps nothing for this client id once the connection ends, whether by ``stop`` or by a
failure: no persistent session collects messages (the README's warning about Mosquitto
queueing for stale sessions). A client id is one connection at a time on the broker: two
sinks with the same id take the connection from each other; give each process its own.

Built on aiomqtt 2.x (paho underneath). aiomqtt's ``publish`` does wait for the PUBACK, but
it drops the PUBACK's reason code (a broker that refuses a message, e.g. 0x87 Not authorized for
a topic its ACL denies, would look like success), a lost connection leaves it waiting for its
whole timeout, and paho honours neither the broker's Receive Maximum nor its Maximum Packet Size
(exceeding either makes the broker drop the connection, failing every message in flight). The
small subclass :class:`_Client` adds what is missing; it relies on aiomqtt 2.x internals (the
paho client ``_client`` and the callbacks ``_on_connect``/``_on_publish``), which the
dependency range ``aiomqtt>=2.5,<3`` pins and ``tests/unit/test_mqtt_sink.py`` exercises
against a scripted broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cityhub.connectors.mqtt.codec import reason_name
from cityhub.connectors.mqtt.session import tls_context
from cityhub.connectors.sinks.errors import DeliveryFailed, FailureKind, excerpt
from cityhub.schemas.settings import MqttSettings

log = logging.getLogger("cityhub.sinks.mqtt")

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_INFLIGHT = 100
TRANSIENT_REASONS = frozenset({0x80, 0x83, 0x88, 0x89, 0x97, 0x9F})
"""CONNACK/PUBACK reason codes worth another attempt: Unspecified error, Implementation
specific error, Server unavailable, Server busy, Quota exceeded, Connection rate exceeded."""
MAX_TOPIC_BYTES = 65535

_LOST = -1
"""The result an acknowledgement future gets when the connection ended before the PUBACK."""


class _Client(aiomqtt.Client):
    """aiomqtt's client plus: PUBACK reason codes (per packet id, as futures), the CONNACK's
    properties, and a publish that does not wait (the sink waits on the returned future)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acks: dict[int, asyncio.Future[int]] = {}
        self.connack_properties: Properties | None = None

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        self.connack_properties = properties
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        # Runs on the event loop (aiomqtt reads the socket in a loop reader callback).
        ack = self.acks.pop(mid, None)
        if ack is not None and not ack.done():
            ack.set_result(int(reason_code.value))
        super()._on_publish(client, userdata, mid, reason_code, properties)

    def broker_limits(self) -> tuple[int | None, int | None]:
        """The CONNACK's Receive Maximum and Maximum Packet Size (None when not sent)."""
        props = self.connack_properties
        return (
            getattr(props, "ReceiveMaximum", None) if props is not None else None,
            getattr(props, "MaximumPacketSize", None) if props is not None else None,
        )

    def publish_nowait(
        self, topic: str, payload: bytes, qos: int
    ) -> tuple[int, asyncio.Future[int] | None]:
        """Hand one message to paho; return its packet id and, for QoS 1, the future of its
        PUBACK reason code. Raises ``aiomqtt.MqttCodeError`` when paho cannot take it (no
        connection)."""
        info = self._client.publish(topic, payload, qos)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "could not publish")
        if qos == 0:
            return info.mid, None
        # A PUBACK is read by a later loop callback, never inside publish(): registering now
        # cannot miss it.
        ack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.acks[info.mid] = ack
        return info.mid, ack

    def fail_pending(self) -> None:
        acks, self.acks = self.acks, {}
        for ack in acks.values():
            if not ack.done():
                ack.set_result(_LOST)


class _Link:
    """One connection: its client, the task that notices when it ends, and why it ended."""

    def __init__(self, client: _Client, window: int, max_packet_size: int | None) -> None:
        self.client = client
        self.window = asyncio.Semaphore(window)
        """QoS 1 messages on the wire: paho honours no Receive Maximum (and cannot change its
        own limit once connected), so the sink keeps count."""
        self.max_packet_size = max_packet_size
        self.ended: str | None = None
        self.watcher = asyncio.create_task(self._watch(), name="cityhub-mqtt-sink-watch")

    async def _watch(self) -> None:
        # Nothing is subscribed, so the iterator yields nothing: it ends only when the
        # connection does, raising MqttError with the reason (aiomqtt's public signal).
        try:
            async for _ in self.client.messages:
                pass
        except aiomqtt.MqttError as exc:
            cause = exc.__cause__
            self.end(excerpt(str(cause or exc) or type(cause or exc).__name__))
        except asyncio.CancelledError:
            self.end("closed")
            raise
        else:
            self.end("closed")

    def end(self, why: str) -> None:
        if self.ended is None:
            self.ended = why
        self.client.fail_pending()

    async def close(self) -> None:
        """Disconnect (normal DISCONNECT if still connected) and stop the watcher."""
        self.end("closed by the sink")
        with contextlib.suppress(aiomqtt.MqttError, OSError):
            await self.client.__aexit__(None, None, None)
        self.watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.watcher


class MqttSink:
    """Publishes to cityhub's MQTT broker; see the module docstring."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
    ) -> None:
        """Nothing connects until :meth:`start` (or the first :meth:`publish`).

        Args:
            settings: the broker (host, port, username, password, TLS, keepalive); its
                ``client_id`` and session expiry are not used.
            client_id: this sink's MQTT client id; unique among the broker's clients.
            timeout: seconds to connect (CONNACK) and, per message, to wait for the PUBACK.
            max_inflight: QoS 1 messages on the wire at once (lowered to the broker's Receive
                Maximum).
        """
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be at least 1, got {max_inflight}")
        self._settings = settings
        self._client_id = client_id
        self._timeout = timeout
        self._max_inflight = max_inflight
        self._broker = f"mqtt://{settings.host}:{settings.port}"
        self._link: _Link | None = None
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self._stopped = False

    def __repr__(self) -> str:
        return f"MqttSink({self._broker!r}, client_id={self._client_id!r})"

    @property
    def connected(self) -> bool:
        """Whether a connection is up (a publish now would not have to connect first)."""
        return self._link is not None and self._link.ended is None

    async def start(self) -> None:
        """Connect now rather than on the first publish. Raises :class:`DeliveryFailed`
        (``connection`` or ``refused``) when the broker cannot be reached or refuses."""
        await self._connected()

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> None:
        """Publish once; with QoS 1 return after a successful PUBACK. Raises
        :class:`DeliveryFailed` as the module docstring says, ValueError for a QoS other than 0
        or 1, RuntimeError after :meth:`stop`."""
        if qos not in (0, 1):
            raise ValueError(f"the MQTT sink publishes with QoS 0 or 1, got {qos}")
        _check_topic(topic)
        link = await self._connected()
        if link.max_packet_size is not None:
            size = _publish_packet_size(topic, len(payload), qos)
            if size > link.max_packet_size:
                raise DeliveryFailed(
                    f"{self._broker}: a {size}-byte PUBLISH exceeds the broker's Maximum Packet "
                    f"Size of {link.max_packet_size} bytes",
                    retriable=False,
                    kind=FailureKind.INVALID,
                )
        if qos == 0:
            self._hand_over(link, topic, payload, qos)
            return
        mid: int | None = None
        try:
            async with asyncio.timeout(self._timeout), link.window:
                mid, ack = self._hand_over(link, topic, payload, qos)
                assert ack is not None
                code = await ack
        except TimeoutError:
            if mid is None:  # still waiting for room in the window: nothing was sent
                raise DeliveryFailed(
                    f"{self._broker}: no room among the messages in flight for "
                    f"{self._timeout:g} s; this one was not sent",
                    retriable=True,
                    kind=FailureKind.TIMEOUT,
                ) from None
            # A connection that leaves a PUBACK out this long is not healthy; the next publish
            # starts a new one. The message may still arrive (at least once).
            self._drop(link, f"no PUBACK within {self._timeout:g} s")
            raise DeliveryFailed(
                f"{self._broker}: no PUBACK within {self._timeout:g} s",
                retriable=True,
                kind=FailureKind.TIMEOUT,
            ) from None
        finally:
            if mid is not None:
                link.client.acks.pop(mid, None)
        if code == _LOST:
            self._drop(link, link.ended or "lost")
            raise self._lost(link)
        if code >= 0x80:
            raise DeliveryFailed(
                f"{self._broker} refused the message to {excerpt(topic, 80)!r}: "
                f"{reason_name(code)}",
                retriable=code in TRANSIENT_REASONS,
                kind=FailureKind.REFUSED,
            )

    async def stop(self) -> None:
        """Disconnect normally (the broker discards the session) and fail publishes still
        waiting (retriable). Idempotent; ``publish`` raises RuntimeError afterwards."""
        self._stopped = True
        async with self._lock:
            link, self._link = self._link, None
        if link is not None:
            await link.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _hand_over(
        self, link: _Link, topic: str, payload: bytes, qos: int
    ) -> tuple[int, asyncio.Future[int] | None]:
        if link.ended is None:
            try:
                return link.client.publish_nowait(topic, payload, qos)
            except aiomqtt.MqttError:
                self._drop(link, "the connection was not accepting messages")
        raise self._lost(link)

    def _lost(self, link: _Link) -> DeliveryFailed:
        return DeliveryFailed(
            f"{self._broker}: connection lost ({link.ended or 'closed'}); the message may not "
            "have arrived",
            retriable=True,
            kind=FailureKind.CONNECTION,
        )

    def _drop(self, link: _Link, why: str) -> None:
        """Forget ``link`` (the next publish connects anew) and close it in the background."""
        if link.ended is None:
            link.end(why)
        if self._link is link:
            self._link = None
            task = asyncio.create_task(link.close(), name="cityhub-mqtt-sink-close")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _connected(self) -> _Link:
        if self._stopped:
            raise RuntimeError("the MQTT sink is stopped")
        link = self._link
        if link is not None and link.ended is None:
            return link
        async with self._lock:
            if self._stopped:
                raise RuntimeError("the MQTT sink is stopped")
            link = self._link
            if link is not None and link.ended is None:
                return link
            if link is not None:
                self._link = None
                await link.close()
            self._link = await self._connect()
            return self._link

    async def _connect(self) -> _Link:
        settings = self._settings
        client = _Client(
            settings.host,
            settings.port,
            identifier=self._client_id,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            protocol=aiomqtt.ProtocolVersion.V5,
            # Clean Start and no Session Expiry Interval property, which MQTT 5 reads as 0
            # (3.1.2.11.2): the broker ends the session with the connection.
            clean_start=True,
            keepalive=settings.keepalive,
            timeout=self._timeout,
            tls_context=tls_context(settings),
            max_inflight_messages=self._max_inflight,
            logger=log,
        )
        # Waiting publishes are the design (the caller bounds them), not worth a warning each.
        client.pending_calls_threshold = 1 << 30
        try:
            await client.__aenter__()
        except MqttConnectError as exc:
            code = exc.rc.value if isinstance(exc.rc, ReasonCode) else None
            raise DeliveryFailed(
                f"{self._broker} refused the connection of {self._client_id!r}: "
                + (reason_name(code) if code is not None else excerpt(str(exc))),
                retriable=code is None or code in TRANSIENT_REASONS,
                kind=FailureKind.REFUSED,
            ) from None
        except aiomqtt.MqttError as exc:
            raise DeliveryFailed(
                f"{self._broker}: cannot connect: {excerpt(str(exc))}",
                retriable=True,
                kind=FailureKind.CONNECTION,
            ) from None
        receive_maximum, max_packet_size = client.broker_limits()
        window = min(self._max_inflight, receive_maximum or self._max_inflight)
        link = _Link(client, window, max_packet_size)
        log.debug("connected to %s as %r", self._broker, self._client_id)
        return link


def _check_topic(topic: str) -> None:
    """Refuse (not retriable) what the broker would answer by dropping the connection."""
    why = None
    if not topic:
        why = "is empty"
    elif "+" in topic or "#" in topic:
        why = "has wildcards (+ or #); a PUBLISH names one topic"
    elif "\x00" in topic:
        why = "contains NUL"
    elif len(topic.encode("utf-8", errors="surrogatepass")) > MAX_TOPIC_BYTES:
        why = f"is longer than {MAX_TOPIC_BYTES} bytes"
    else:
        try:
            topic.encode("utf-8")
        except UnicodeEncodeError:
            why = "is not valid UTF-8"
    if why is not None:
        raise DeliveryFailed(
            f"MQTT topic {excerpt(topic, 80)!r} {why}", retriable=False, kind=FailureKind.INVALID
        )


def _publish_packet_size(topic: str, payload_bytes: int, qos: int) -> int:
    """The size of the PUBLISH paho sends: fixed header, topic, packet id (QoS > 0), an empty
    property block, payload."""
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + 1 + payload_bytes
    length_bytes = 1
    while remaining >= 128**length_bytes and length_bytes < 4:
        length_bytes += 1
    return 1 + length_bytes + remaining
