"""cityhub's MQTT 5 client session: the bridge subscribes with it and acknowledges each message
itself, the MQTT delivery sink publishes with it and checks each PUBACK's reason code.

Why our own: the bridge acknowledges each message only after Kafka confirmed it, so it needs
manual acks; aiomqtt acknowledges on arrival, and paho 2 (which can leave the ack to us) spends
about 19 µs decoding each MQTT 5 PUBLISH and aiomqtt another task and queue hop per message. That
was a third of the bridge's time. Here an ``asyncio.Protocol`` feeds each read to the sans-I/O
:class:`~cityhub.connectors.mqtt.codec.MqttDecoder` (about 2 µs per PUBLISH) and appends the
PUBLISH packets to a deque; :meth:`MqttSession.messages` drains the deque and waits (on one
future) only when it is empty. Measured: 106 700 against 16 900 messages/s received and acked
(``bench/mqtt_receive.py``). Publishing goes through the same session (:meth:`MqttSession.
publish`): QoS 0 or 1, at most the broker's Receive Maximum unacknowledged at once, nothing
larger than its Maximum Packet Size, the PUBACK's reason code returned to the caller; no private
API of another library. aiomqtt stays as a third-party publisher for the simulator and tests.

Errors, so the bridge's reconnect loop (which catches ``OSError``) handles them all:
:class:`MqttConnectionLost` is a ``ConnectionResetError``, :class:`MqttConnectRefused` a
``ConnectionRefusedError``, and timeouts are ``TimeoutError``. Only :class:`MqttSubscribeFailed`
is not an ``OSError``: a refused subscription is configuration (not authorized, invalid filter),
which a reconnect does not fix, so it stops the bridge with the broker's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from types import TracebackType

from cityhub.connectors.mqtt.connection import BrokerConnection, MqttConnectionLost
from cityhub.connectors.mqtt.decoding import MqttDecoder
from cityhub.connectors.mqtt.encoding import (
    PINGREQ,
    encode_connect,
    encode_disconnect,
    encode_puback,
    encode_publish,
    encode_pubrec,
    encode_subscribe,
    publish_packet_size,
)
from cityhub.connectors.mqtt.packets import (
    TRANSIENT_REASONS,
    ConnAck,
    PubAck,
    Publish,
    SubAck,
    reason_name,
)
from cityhub.schemas.errors import CityhubError
from cityhub.schemas.settings import MqttSettings, MqttSubscription

__all__ = [
    "MqttConnectRefused",
    "MqttConnectionLost",
    "MqttPacketTooLarge",
    "MqttSession",
    "MqttSubscribeFailed",
    "end_session",
    "login_password",
    "tls_context",
]

log = logging.getLogger("cityhub.mqtt")

CONNECT_TIMEOUT = 10.0
"""Seconds for the TCP connection plus the CONNACK, and for each SUBACK."""
DEFAULT_QUEUED = 256
"""Received messages queued before reading pauses, for a session that sends no Receive Maximum
(a publisher: it receives nothing but acknowledgements)."""


class MqttConnectRefused(ConnectionRefusedError, CityhubError):
    """The broker answered CONNECT with a failure reason code (``reason_code``)."""

    def __init__(self, reason_code: int, detail: str) -> None:
        super().__init__(detail)
        self.reason_code = reason_code
        # Worth retrying: the broker's state, not our settings, is what failed.
        self.retriable = reason_code in TRANSIENT_REASONS


class MqttSubscribeFailed(CityhubError):
    """The broker refused a subscription (SUBACK reason code ≥ 0x80, in ``reason_code``)."""

    _TRANSIENT = frozenset({0x80, 0x83, 0x91, 0x97})

    def __init__(self, reason_code: int, detail: str) -> None:
        super().__init__(detail)
        self.reason_code = reason_code
        self.retriable = reason_code in self._TRANSIENT


class MqttPacketTooLarge(CityhubError, ValueError):
    """A PUBLISH larger than the broker's Maximum Packet Size; nothing was sent (the broker
    would have dropped the connection, failing every message in flight)."""

    retriable = False

    def __init__(self, size: int, limit: int, detail: str) -> None:
        super().__init__(detail)
        self.size = size
        self.limit = limit


class MqttSession:
    """An MQTT 5 session: by default persistent (``clean_start`` off, session expiry from the
    settings), whose received messages the application acknowledges with :meth:`ack`, and which
    may :meth:`publish`.

    ``receive_maximum``, when given, is sent in CONNECT, so the broker never has more
    unacknowledged QoS 1/2 messages out to this client (a publisher that subscribes to nothing
    leaves it out). The client id is ``client_id``, else ``settings.client_id``. A session
    object connects once; make a new one to reconnect.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        receive_maximum: int | None = None,
        maximum_packet_size: int | None = None,
        client_id: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        clean_start: bool = False,
        session_expiry_seconds: int | None = None,
    ) -> None:
        """``maximum_packet_size``, when set, is sent to the broker, which then DROPS bigger
        messages (MQTT 5 3.1.2.11.4) instead of sending them; unset, any size is accepted, so
        the bridge can dead-letter oversize payloads itself."""
        self._settings = settings
        self._receive_maximum = receive_maximum
        self._maximum_packet_size = maximum_packet_size
        self._connect_timeout = connect_timeout
        self._clean_start = clean_start
        self._session_expiry = (
            settings.session_expiry_seconds
            if session_expiry_seconds is None
            else session_expiry_seconds
        )
        self._client_id = settings.client_id if client_id is None else client_id
        self._conn: BrokerConnection | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._next_packet_id = 0
        self._send_quota: asyncio.Semaphore | None = None
        self._label = f"mqtt://{settings.host}:{settings.port} as {self._client_id!r}"
        self.connack: ConnAck | None = None
        """The broker's CONNACK, once connected (``session_present`` tells a resumed session)."""

    async def __aenter__(self) -> MqttSession:
        settings = self._settings
        loop = asyncio.get_running_loop()
        decoder = MqttDecoder(
            maximum_packet_size=self._maximum_packet_size or MqttDecoder().maximum_packet_size,
            publishes=True,
        )
        high_water = 4 * (self._receive_maximum or DEFAULT_QUEUED)
        conn = BrokerConnection(decoder, high_water=high_water, label=self._label)
        async with asyncio.timeout(self._connect_timeout):
            await loop.create_connection(
                lambda: conn,
                settings.host,
                settings.port,
                ssl=tls_context(settings),
                server_hostname=settings.host if settings.tls else None,
            )
            self._conn = conn
            password = login_password(settings)
            conn.write(
                encode_connect(
                    self._client_id,
                    clean_start=self._clean_start,
                    keepalive=settings.keepalive,
                    username=settings.username,
                    password=password,
                    session_expiry_interval=self._session_expiry,
                    receive_maximum=self._receive_maximum,
                    maximum_packet_size=self._maximum_packet_size,
                )
            )
            try:
                connack = await conn.connack
            except BaseException:
                conn.lose("no CONNACK")
                raise
        if connack.reason_code >= 0x80:
            conn.lose("connection refused")
            await conn.closed
            raise MqttConnectRefused(
                connack.reason_code,
                f"{self._label}: the broker refused the connection: "
                f"{reason_name(connack.reason_code)}",
            )
        self.connack = connack
        # What the broker takes from us unacknowledged (3.3.4): more would be a Protocol Error.
        self._send_quota = asyncio.Semaphore(connack.receive_maximum)
        # The broker may impose its own keepalive (3.2.2.3.14).
        keepalive = connack.server_keep_alive
        if keepalive is None:
            keepalive = settings.keepalive
        if keepalive:
            self._keepalive_task = asyncio.create_task(self._keepalive(conn, keepalive))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive_task
        conn = self._conn
        if conn is None:
            return
        if conn.transport is not None:
            # Normal disconnection: the broker keeps the session for its expiry interval.
            conn.write(encode_disconnect(0))
            conn.flush()  # before close(), which only flushes what the transport holds
            conn.transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._connect_timeout):
                await conn.closed

    async def _keepalive(self, conn: BrokerConnection, keepalive: int) -> None:
        """PINGREQ every keepalive/2 unless the connection saw traffic both ways; no PINGRESP
        within a keepalive interval means the connection is dead."""
        interval = keepalive / 2
        reads, writes = conn.reads, conn.writes
        due_for = 0.0
        while conn.transport is not None:
            await asyncio.sleep(interval)
            if conn.pingresp_due:
                due_for += interval
                if due_for >= keepalive:
                    conn.lose(f"no PINGRESP within the keepalive of {keepalive} s")
                    return
                continue
            if conn.reads == reads or conn.writes == writes:
                due_for = 0.0
                conn.pingresp_due = True
                conn.write(PINGREQ)
            reads, writes = conn.reads, conn.writes

    def _packet_id(self) -> int:
        """The next packet id not in use by a SUBSCRIBE or PUBLISH awaiting its answer."""
        conn = self._conn
        for _ in range(0xFFFF):
            self._next_packet_id = self._next_packet_id % 0xFFFF + 1
            if conn is None or (
                self._next_packet_id not in conn.pubacks
                and self._next_packet_id not in conn.subacks
            ):
                break
        return self._next_packet_id

    def _connection(self) -> BrokerConnection:
        conn = self._conn
        if conn is None:
            raise MqttConnectionLost(f"{self._label}: the session is not connected")
        if conn.error is not None:
            raise conn.error
        return conn

    async def subscribe(self, subscription: MqttSubscription) -> None:
        """Subscribe (shared, when a share group is set) to one configured filter and wait for
        the SUBACK; raises :class:`MqttSubscribeFailed` when the broker refuses it.

        A resumed session's broker sends what it queued for us before it answers, and
        Mosquitto 2.0.11 sends more than our Receive Maximum: the SUBACK comes after all that,
        so take :meth:`messages` while this waits (reading stops at the high water mark, and
        the SUBACK with it). The wait gives up after ``connect_timeout`` seconds only when no
        PUBLISH came in them either and reading was not paused: a broker busy sending, or a
        reader behind, is not a broker that does not answer."""
        topic_filter = subscription.filter
        if self._settings.share_group:
            topic_filter = f"$share/{self._settings.share_group}/{topic_filter}"
        conn = self._connection()
        packet_id = self._packet_id()
        future: asyncio.Future[SubAck] = asyncio.get_running_loop().create_future()
        conn.subacks[packet_id] = future
        conn.write(encode_subscribe(packet_id, [(topic_filter, subscription.qos)]))
        try:
            while True:
                received = conn.received
                try:
                    async with asyncio.timeout(self._connect_timeout):
                        suback = await asyncio.shield(future)
                    break
                except TimeoutError:
                    if conn.error is not None:
                        raise conn.error from None
                    if conn.received == received and not conn.reading_paused:
                        raise
        finally:
            conn.subacks.pop(packet_id, None)
        code = suback.reason_codes[0]
        if code >= 0x80:
            raise MqttSubscribeFailed(
                code, f"{self._label}: the broker refused {topic_filter!r}: {reason_name(code)}"
            )

    async def messages(self) -> AsyncIterator[Publish]:
        """The PUBLISH packets as they arrive, each once (also a QoS 2 one); raises
        :class:`MqttConnectionLost` when the connection is lost. Messages still queued then are
        not yielded: they could not be acknowledged, and the broker redelivers them."""
        conn = self._connection()
        queue = conn.queue
        loop = asyncio.get_running_loop()
        while True:
            while queue and conn.error is None:
                yield queue.popleft()
                if conn.reading_paused and len(queue) <= conn.low_water and conn.transport:
                    conn.reading_paused = False
                    conn.transport.resume_reading()
            if conn.error is not None:
                raise conn.error
            waiter = conn.waiter = loop.create_future()
            try:
                await waiter
            finally:
                conn.waiter = None

    @property
    def connected(self) -> bool:
        """Whether the connection is up: connected, and not lost or closed since."""
        conn = self._conn
        return (
            self.connack is not None
            and conn is not None
            and conn.error is None
            and conn.transport is not None
        )

    @property
    def queued(self) -> int:
        """Messages received from the socket that the application has not taken yet."""
        conn = self._conn
        return len(conn.queue) if conn is not None else 0

    def ack(self, mid: int, qos: int) -> bool:
        """Send the PUBACK (QoS 1) or PUBREC (QoS 2); False when the connection is gone, in
        which case the broker redelivers the message to the resumed session."""
        if qos == 0:
            return True
        conn = self._conn
        if conn is None:
            return False
        if qos == 1:
            return conn.write(encode_puback(mid))
        if conn.write(encode_pubrec(mid)):
            conn.awaiting_pubrel.add(mid)
            return True
        return False

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 0,
        retain: bool = False,
        properties: bytes = b"",
    ) -> int:
        """Publish one message and return its outcome: for QoS 1 the PUBACK's reason code (below
        0x80 is success; the caller decides what a refusal means), for QoS 0 0 once the message
        is handed to the connection.

        A QoS 1 publish first waits for room among the messages the broker takes unacknowledged
        (its Receive Maximum); its slot is freed by the PUBACK or the end of the connection, not
        by the caller giving up, so the count stays true. Raises :class:`MqttConnectionLost` when
        the connection ends first (the message may or may not have arrived),
        :class:`MqttPacketTooLarge` above the broker's Maximum Packet Size (nothing sent), and
        ValueError for a QoS other than 0 or 1 or a topic no PUBLISH may name. ``properties``
        are the PUBLISH's (``codec.publish_properties``; none by default).
        """
        if qos not in (0, 1):
            raise ValueError(f"the session publishes with QoS 0 or 1, not {qos}")
        conn = self._connection()
        assert self.connack is not None  # connected
        assert self._send_quota is not None
        limit = self.connack.maximum_packet_size
        if limit is not None:
            size = publish_packet_size(topic, len(payload), qos, len(properties))
            if size > limit:
                raise MqttPacketTooLarge(
                    size,
                    limit,
                    f"{self._label}: a {size}-byte PUBLISH exceeds the broker's Maximum Packet "
                    f"Size of {limit} bytes",
                )
        if qos == 0:
            data = encode_publish(topic, payload, qos=0, retain=retain, properties=properties)
            await conn.drain()
            if not conn.write(data):
                raise conn.error or MqttConnectionLost(f"{self._label}: not connected")
            conn.published += 1
            return 0
        quota = self._send_quota
        await quota.acquire()
        try:
            conn = self._connection()
            packet_id = self._packet_id()
            data = encode_publish(
                topic, payload, qos=1, packet_id=packet_id, retain=retain, properties=properties
            )
        except BaseException:
            quota.release()
            raise
        future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda _: quota.release())
        conn.pubacks[packet_id] = future
        if not conn.write(data):
            conn.pubacks.pop(packet_id, None)
            future.cancel()
            raise conn.error or MqttConnectionLost(f"{self._label}: not connected")
        conn.published += 1
        # shield: a caller that gives up leaves the future to the PUBACK (or the connection's
        # end), which frees the slot the broker still counts.
        puback = await asyncio.shield(future)
        return puback.reason_code

    def abort(self) -> None:
        """Drop the connection at once, without DISCONNECT (for tests of session resumption)."""
        if self._conn is not None:
            self._conn.lose("aborted by the application")


def login_password(settings: MqttSettings) -> bytes | None:
    """The password to send in CONNECT: ``password``, else the first line of
    ``password_file`` (read at each connection, so a rotated secret is picked up), else none.
    An unreadable file raises ``OSError`` naming the setting (never the file's content)."""
    if settings.password is not None:
        return settings.password.get_secret_value().encode()
    if settings.password_file is None:
        return None
    try:
        lines = settings.password_file.read_text().splitlines()
    except OSError as exc:
        raise OSError(f"mqtt.password_file {settings.password_file}: {exc.strerror}") from None
    return lines[0].encode() if lines else b""


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """The TLS context for the broker connection, or None for plain TCP. Verifies the broker's
    certificate and host name, against ``tls_ca_file`` when given, else the system's CAs."""
    if not settings.tls:
        return None
    ca_file = str(settings.tls_ca_file) if settings.tls_ca_file else None
    return ssl.create_default_context(cafile=ca_file)


async def end_session(settings: MqttSettings) -> bool:
    """Make the broker forget the session of ``settings.client_id`` (and the messages it queues
    for it), and say whether it had one. For decommissioning a bridge, and for tests and
    benchmarks, whose sessions would otherwise collect a copy of every message for a week.

    It takes the session up (no clean start, so the CONNACK tells whether one was there) with a
    session expiry of 0, which replaces the session's own: the broker ends it when this
    connection closes (MQTT 5, 3.1.2.11.2)."""
    session = MqttSession(settings, receive_maximum=1, session_expiry_seconds=0)
    async with session:
        return session.connack is not None and session.connack.session_present
