"""One TCP (or TLS) connection to an MQTT 5 broker, as an ``asyncio.Protocol`` around the
sans-I/O decoder: what :class:`~cityhub.connectors.mqtt.session.MqttSession` drives.

It decodes every read, answers what needs no application decision (PUBREL, a duplicate QoS 2
PUBLISH), queues received PUBLISH packets for the session's ``messages()``, and settles the
futures the session waits on (CONNACK, SUBACK by packet id, PUBACK by packet id). When the
connection ends, every future still open fails with :class:`MqttConnectionLost`, so nothing waits
for an answer that cannot come.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from cityhub.connectors.mqtt.decoding import MqttDecoder
from cityhub.connectors.mqtt.encoding import encode_pubcomp, encode_pubrec
from cityhub.connectors.mqtt.packets import (
    ConnAck,
    Disconnect,
    Packet,
    PingResp,
    ProtocolError,
    PubAck,
    Publish,
    PubRel,
    SubAck,
    reason_name,
)
from cityhub.schemas.errors import CityhubError

log = logging.getLogger("cityhub.mqtt")


class MqttConnectionLost(ConnectionResetError, CityhubError):
    """The connection to the broker is gone (closed, reset, keepalive timeout, protocol error).
    Reconnecting with the same client id resumes a persistent session; the broker redelivers
    what was not acknowledged."""

    retriable = True


class BrokerConnection(asyncio.Protocol):
    """One connection: decodes reads, keeps the futures of the answers the session waits for,
    and batches writes made in one event-loop iteration into one ``send``."""

    def __init__(self, decoder: MqttDecoder, high_water: int, label: str) -> None:
        self.decoder = decoder
        self.label = label
        self.transport: asyncio.Transport | None = None
        self.queue: collections.deque[Publish] = collections.deque()
        self.high_water = high_water
        self.low_water = high_water // 2
        self.reading_paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[ConnAck] = self.loop.create_future()
        self.subacks: dict[int, asyncio.Future[SubAck]] = {}
        self.pubacks: dict[int, asyncio.Future[PubAck]] = {}
        """QoS 1 PUBLISH packets of ours awaiting their PUBACK, by packet id."""
        self.published = 0
        """PUBLISH packets this client wrote (a publisher's full buffer is no alarm)."""
        self.pingresp_due = False
        self.received = 0
        """PUBLISH packets received (a broker that sends them is alive, whatever else waits)."""
        self.reads = 0
        self.writes = 0
        self.error: MqttConnectionLost | None = None
        self.closed: asyncio.Future[None] = self.loop.create_future()
        # QoS 2 packet ids we sent PUBREC for and whose PUBREL has not come yet: a PUBLISH with
        # one of these ids is a duplicate we must acknowledge again but not deliver (4.3.3).
        self.awaiting_pubrel: set[int] = set()
        self.write_paused = False
        self.writable: asyncio.Future[None] | None = None
        """Set while writing is paused; done when the transport takes writes again."""
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
                self.received += 1
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
        if isinstance(packet, PubAck):
            # An id we no longer wait for belongs to a publish that was abandoned (its caller
            # timed out): nothing is left to settle.
            future = self.pubacks.pop(packet.packet_id, None)
            if future is not None and not future.done():
                future.set_result(packet)
        elif isinstance(packet, PubRel):
            self.awaiting_pubrel.discard(packet.packet_id)
            self.write(encode_pubcomp(packet.packet_id))
        elif isinstance(packet, PingResp):
            self.pingresp_due = False
        elif isinstance(packet, SubAck):
            suback = self.subacks.pop(packet.packet_id, None)
            if suback is not None and not suback.done():
                suback.set_result(packet)
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
        futures: list[asyncio.Future[Any]] = [
            self.connack,
            *self.subacks.values(),
            *self.pubacks.values(),
        ]
        for future in futures:
            if not future.done():
                future.set_exception(error)
                # Nobody may be waiting (a waiter that timed out): mark it retrieved.
                future.exception()
        self.subacks.clear()
        self.pubacks.clear()
        for waiter in (self.waiter, self.writable):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        # The bridge writes only acks, pings and the odd SUBSCRIBE, so for it a full socket
        # buffer means the broker stopped reading (the transport keeps buffering, the keepalive
        # decides). A publisher waits in drain() instead.
        self.write_paused = True
        self.writable = self.loop.create_future()
        if not self.published:
            log.warning("%s: the broker is not reading; acknowledgements are buffered", self.label)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    # -- used by the session ------------------------------------------------------------------

    def write(self, data: bytes) -> bool:
        """Queue ``data`` for the socket; False when the connection is gone.

        Writes made in one event-loop iteration go out in one ``send``: the bridge acks in
        bursts (one Kafka batch confirms many messages) and a delivery publishes a batch at a
        time, and a syscall per packet would cost more than encoding or decoding it did.
        """
        if self.transport is None or self.error is not None:
            return False
        self.outgoing.append(data)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)
        return True

    async def drain(self) -> None:
        """Return once the transport takes writes (at once unless its buffer is full)."""
        writable = self.writable
        if writable is not None:
            await asyncio.shield(writable)

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
        """Drop the connection now, remembering why for whoever waits on it."""
        if self.error is None:
            self.error = MqttConnectionLost(f"{self.label}: {detail}")
        if self.transport is not None:
            self.transport.abort()
