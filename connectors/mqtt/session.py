"""The bridge's MQTT 5 subscriber session, with acknowledgements sent by the application.

Why our own: the bridge acknowledges each message only after Kafka confirmed it, so it needs
manual acks; aiomqtt acknowledges on arrival, and paho 2 (which can leave the ack to us) spends
about 19 µs decoding each MQTT 5 PUBLISH and aiomqtt another task and queue hop per message. That
was a third of the bridge's time. Here an ``asyncio.Protocol`` feeds each read to the sans-I/O
:class:`~cityhub.connectors.mqtt.codec.MqttDecoder` (about 2 µs per PUBLISH) and appends the
PUBLISH packets to a deque; :meth:`MqttSession.messages` drains the deque and waits (on one
future) only when it is empty. Measured: 106 700 against 16 900 messages/s received and acked
(``bench/mqtt_receive.py``). aiomqtt stays for publishing (simulator, tests).

Errors, so the bridge's reconnect loop (which catches ``OSError``) handles them all:
:class:`MqttConnectionLost` is a ``ConnectionResetError``, :class:`MqttConnectRefused` a
``ConnectionRefusedError``, and timeouts are ``TimeoutError``. Only :class:`MqttSubscribeFailed`
is not an ``OSError``: a refused subscription is configuration (not authorized, invalid filter),
which a reconnect does not fix, so it stops the bridge with the broker's reason.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from cityhub.connectors.mqtt.codec import (
    PINGREQ,
    ConnAck,
    Disconnect,
    MqttDecoder,
    Packet,
    PingResp,
    ProtocolError,
    Publish,
    PubRel,
    SubAck,
    encode_connect,
    encode_disconnect,
    encode_puback,
    encode_pubcomp,
    encode_pubrec,
    encode_subscribe,
    reason_name,
)
from cityhub.schemas.errors import CityhubError
from cityhub.schemas.settings import MqttSettings, MqttSubscription

log = logging.getLogger("cityhub.mqtt")

CONNECT_TIMEOUT = 10.0
"""Seconds for the TCP connection plus the CONNACK, and for each SUBACK."""


class MqttConnectionLost(ConnectionResetError, CityhubError):
    """The connection to the broker is gone (closed, reset, keepalive timeout, protocol error).
    Reconnecting with the same client id resumes the session; the broker redelivers what was not
    acknowledged."""

    retriable = True


class MqttConnectRefused(ConnectionRefusedError, CityhubError):
    """The broker answered CONNECT with a failure reason code (``reason_code``)."""

    # Worth retrying: the broker's state, not our settings, is what failed.
    _TRANSIENT = frozenset({0x80, 0x83, 0x88, 0x89, 0x97, 0x9F})

    def __init__(self, reason_code: int, detail: str) -> None:
        super().__init__(detail)
        self.reason_code = reason_code
        self.retriable = reason_code in self._TRANSIENT


class MqttSubscribeFailed(CityhubError):
    """The broker refused a subscription (SUBACK reason code ≥ 0x80, in ``reason_code``)."""

    _TRANSIENT = frozenset({0x80, 0x83, 0x91, 0x97})

    def __init__(self, reason_code: int, detail: str) -> None:
        super().__init__(detail)
        self.reason_code = reason_code
        self.retriable = reason_code in self._TRANSIENT


class _Connection(asyncio.Protocol):
    """One TCP connection: decodes reads, answers what needs no application decision (PUBREL,
    duplicate QoS 2 PUBLISH), and queues the PUBLISH packets for :meth:`MqttSession.messages`."""

    def __init__(self, decoder: MqttDecoder, high_water: int, label: str) -> None:
        self.decoder = decoder
        self.label = label
        self.transport: asyncio.Transport | None = None
        self.queue: collections.deque[Publish] = collections.deque()
        self.high_water = high_water
        self.low_water = high_water // 2
        self.reading_paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.connack: asyncio.Future[ConnAck] = asyncio.get_running_loop().create_future()
        self.subacks: dict[int, asyncio.Future[SubAck]] = {}
        self.pingresp_due = False
        self.reads = 0
        self.writes = 0
        self.error: MqttConnectionLost | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # QoS 2 packet ids we sent PUBREC for and whose PUBREL has not come yet: a PUBLISH with
        # one of these ids is a duplicate we must acknowledge again but not deliver (4.3.3).
        self.awaiting_pubrel: set[int] = set()
        self.write_paused = False
        self.loop = asyncio.get_running_loop()
        self.outgoing: list[bytes] = []
        self.flush_scheduled = False

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        try:
            packets = self.decoder.feed(data)
        except ProtocolError as exc:
            self.lose(f"broker sent a malformed stream: {exc}")
            return
        queue = self.queue
        for packet in packets:
            if type(packet) is Publish:
                if packet.qos == 2 and packet.mid in self.awaiting_pubrel:
                    self.write(encode_pubrec(packet.mid))
                    continue
                queue.append(packet)
            else:
                self._control(packet)
        if queue:
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            # Receive Maximum bounds QoS 1/2; only a QoS 0 flood can get here.
            if len(queue) > self.high_water and not self.reading_paused and self.transport:
                self.reading_paused = True
                self.transport.pause_reading()

    def _control(self, packet: Packet) -> None:
        if isinstance(packet, PubRel):
            self.awaiting_pubrel.discard(packet.packet_id)
            self.write(encode_pubcomp(packet.packet_id))
        elif isinstance(packet, PingResp):
            self.pingresp_due = False
        elif isinstance(packet, SubAck):
            future = self.subacks.pop(packet.packet_id, None)
            if future is not None and not future.done():
                future.set_result(packet)
        elif isinstance(packet, ConnAck):
            if self.connack.done():
                self.lose("broker sent a second CONNACK")
            else:
                self.connack.set_result(packet)
        elif isinstance(packet, Disconnect):
            self.lose(f"broker disconnected: {reason_name(packet.reason_code)}")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None:
            detail = f"connection closed ({exc})" if exc else "connection closed by the broker"
            self.error = MqttConnectionLost(f"{self.label}: {detail}")
        self.transport = None
        error = self.error
        futures: list[asyncio.Future[Any]] = [self.connack, *self.subacks.values()]
        for future in futures:
            if not future.done():
                future.set_exception(error)
                # Nobody may be waiting (a SUBACK's waiter timed out): mark it retrieved.
                future.exception()
        self.subacks.clear()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        # Only acks, pings and the odd SUBSCRIBE are written, so a full socket buffer means the
        # broker stopped reading; the transport keeps buffering and the keepalive decides.
        self.write_paused = True
        log.warning("%s: the broker is not reading; acknowledgements are buffered", self.label)

    def resume_writing(self) -> None:
        self.write_paused = False

    # -- used by the session ------------------------------------------------------------------

    def write(self, data: bytes) -> bool:
        """Queue ``data`` for the socket; False when the connection is gone.

        Writes made in one event-loop iteration go out in one ``send``: the bridge acks in
        bursts (one Kafka batch confirms many messages), and a syscall per 4-byte PUBACK would
        cost more than decoding the PUBLISH did.
        """
        if self.transport is None or self.error is not None:
            return False
        self.outgoing.append(data)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)
        return True

    def flush(self) -> None:
        self.flush_scheduled = False
        if not self.outgoing:
            return
        transport = self.transport
        if transport is not None and self.error is None:
            transport.write(b"".join(self.outgoing))
            self.writes += 1
        self.outgoing.clear()

    def lose(self, detail: str) -> None:
        """Drop the connection now, remembering why for :meth:`MqttSession.messages`."""
        if self.error is None:
            self.error = MqttConnectionLost(f"{self.label}: {detail}")
        if self.transport is not None:
            self.transport.abort()


class MqttSession:
    """A persistent MQTT 5 subscriber session (``clean_start`` off, session expiry from the
    settings) whose messages are acknowledged by the application, with :meth:`ack`.

    ``receive_maximum`` is sent in CONNECT, so the broker never has more unacknowledged QoS 1/2
    messages out to this client. A session object connects once; make a new one to reconnect.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        receive_maximum: int,
        maximum_packet_size: int | None = None,
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
        self._conn: _Connection | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._next_packet_id = 0
        self._label = f"mqtt://{settings.host}:{settings.port} as {settings.client_id!r}"
        self.connack: ConnAck | None = None
        """The broker's CONNACK, once connected (``session_present`` tells a resumed session)."""

    async def __aenter__(self) -> MqttSession:
        settings = self._settings
        loop = asyncio.get_running_loop()
        decoder = MqttDecoder(
            maximum_packet_size=self._maximum_packet_size or MqttDecoder().maximum_packet_size
        )
        conn = _Connection(decoder, high_water=4 * self._receive_maximum, label=self._label)
        async with asyncio.timeout(self._connect_timeout):
            await loop.create_connection(
                lambda: conn,
                settings.host,
                settings.port,
                ssl=tls_context(settings),
                server_hostname=settings.host if settings.tls else None,
            )
            self._conn = conn
            password = settings.password.get_secret_value().encode() if settings.password else None
            conn.write(
                encode_connect(
                    settings.client_id,
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

    async def _keepalive(self, conn: _Connection, keepalive: int) -> None:
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
        self._next_packet_id = self._next_packet_id % 0xFFFF + 1
        return self._next_packet_id

    def _connection(self) -> _Connection:
        conn = self._conn
        if conn is None:
            raise MqttConnectionLost(f"{self._label}: the session is not connected")
        if conn.error is not None:
            raise conn.error
        return conn

    async def subscribe(self, subscription: MqttSubscription) -> None:
        """Subscribe (shared, when a share group is set) to one configured filter and wait for
        the SUBACK; raises :class:`MqttSubscribeFailed` when the broker refuses it."""
        topic_filter = subscription.filter
        if self._settings.share_group:
            topic_filter = f"$share/{self._settings.share_group}/{topic_filter}"
        conn = self._connection()
        packet_id = self._packet_id()
        future: asyncio.Future[SubAck] = asyncio.get_running_loop().create_future()
        conn.subacks[packet_id] = future
        conn.write(encode_subscribe(packet_id, [(topic_filter, subscription.qos)]))
        try:
            async with asyncio.timeout(self._connect_timeout):
                suback = await future
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

    def abort(self) -> None:
        """Drop the connection at once, without DISCONNECT (for tests of session resumption)."""
        if self._conn is not None:
            self._conn.lose("aborted by the application")


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """The TLS context for the broker connection, or None for plain TCP. Verifies the broker's
    certificate and host name, against ``tls_ca_file`` when given, else the system's CAs."""
    if not settings.tls:
        return None
    ca_file = str(settings.tls_ca_file) if settings.tls_ca_file else None
    return ssl.create_default_context(cafile=ca_file)


async def end_session(settings: MqttSettings) -> None:
    """Make the broker forget the session of ``settings.client_id`` (and the messages it queues
    for it): connect once with a clean start and no session expiry. For decommissioning a
    bridge, and for tests and benchmarks, whose sessions would otherwise collect a copy of every
    message for a week."""
    async with MqttSession(settings, receive_maximum=1, clean_start=True, session_expiry_seconds=0):
        pass
