"""Decoding what an MQTT 5 broker sends a client: a byte stream, cut at any read boundary,
into :mod:`~cityhub.connectors.mqtt.packets` (section numbers refer to OASIS MQTT Version 5.0).

It exists because paho-mqtt's PUBLISH decoding is a third of the bridge's CPU time: paho builds a
``Properties`` object per message and copies the payload several times. Here a PUBLISH without
properties costs a topic decode, one payload copy and one small object; the property block is
only walked when it is not empty. Malformed input always raises
:class:`~cityhub.connectors.mqtt.packets.ProtocolError`, never an ``IndexError`` or
``struct.error``, so that the driver can drop the connection and reconnect.
"""

from __future__ import annotations

from typing import Any, Final

from cityhub.connectors.mqtt.packets import (
    ASSIGNED_CLIENT_IDENTIFIER,
    EMPTY_PROPERTIES,
    MAX_REMAINING_LENGTH,
    MAXIMUM_PACKET_SIZE,
    RECEIVE_MAXIMUM,
    SERVER_KEEP_ALIVE,
    SUBSCRIPTION_IDENTIFIER,
    TOPIC_ALIAS,
    TOPIC_ALIAS_MAXIMUM,
    USER_PROPERTY,
    ConnAck,
    Disconnect,
    Packet,
    PingResp,
    ProtocolError,
    PubAck,
    Publish,
    PubRel,
    SubAck,
)

_BYTE, _U16, _U32, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES: Final[dict[int, int]] = {
    0x01: _BYTE,  # Payload Format Indicator
    0x02: _U32,  # Message Expiry Interval
    0x03: _UTF8,  # Content Type
    0x08: _UTF8,  # Response Topic
    0x09: _BINARY,  # Correlation Data
    0x0B: _VARINT,  # Subscription Identifier
    0x11: _U32,  # Session Expiry Interval
    0x12: _UTF8,  # Assigned Client Identifier
    0x13: _U16,  # Server Keep Alive
    0x15: _UTF8,  # Authentication Method
    0x16: _BINARY,  # Authentication Data
    0x17: _BYTE,  # Request Problem Information
    0x18: _U32,  # Will Delay Interval
    0x19: _BYTE,  # Request Response Information
    0x1A: _UTF8,  # Response Information
    0x1C: _UTF8,  # Server Reference
    0x1F: _UTF8,  # Reason String
    0x21: _U16,  # Receive Maximum
    0x22: _U16,  # Topic Alias Maximum
    0x23: _U16,  # Topic Alias
    0x24: _BYTE,  # Maximum QoS
    0x25: _BYTE,  # Retain Available
    0x26: _PAIR,  # User Property
    0x27: _U32,  # Maximum Packet Size
    0x28: _BYTE,  # Wildcard Subscription Available
    0x29: _BYTE,  # Subscription Identifier Available
    0x2A: _BYTE,  # Shared Subscription Available
}
# Only these may appear more than once in one packet (2.2.2.2); they decode to lists.
_REPEATABLE: Final = frozenset({USER_PROPERTY, SUBSCRIPTION_IDENTIFIER})

_PINGRESP: Final = PingResp()


def _truncated(what: str) -> ProtocolError:
    return ProtocolError(f"malformed packet: {what} runs past the end of the packet")


def _read_varint(data: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    value = 0
    shift = 0
    for _ in range(4):
        if pos >= end:
            raise _truncated(what)
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ProtocolError(f"malformed packet: {what} is a Variable Byte Integer of over 4 bytes")


def _read_utf8(data: bytes, pos: int, end: int, what: str) -> tuple[str, int]:
    if pos + 2 > end:
        raise _truncated(what)
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise _truncated(what)
    try:
        text = data[pos + 2 : stop].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"malformed packet: {what} is not valid UTF-8 ({exc})") from None
    if "\x00" in text:
        # U+0000 is forbidden in every MQTT string (1.5.4).
        raise ProtocolError(f"malformed packet: {what} contains U+0000")
    return text, stop


def decode_properties(data: bytes, pos: int, end: int) -> dict[int, Any]:
    """The properties in ``data[pos:end]`` (a property block without its length), by identifier.

    Each property is read by its type from the spec's table, so properties this client does not
    use are skipped correctly; an identifier not in the table cannot be skipped (its length is
    unknown) and, like a duplicate of a non-repeatable property, raises :class:`ProtocolError`.
    """
    props: dict[int, Any] = {}
    while pos < end:
        pid = data[pos]
        pos += 1
        kind = _PROPERTY_TYPES.get(pid)
        if kind is None:
            raise ProtocolError(f"malformed packet: unknown property identifier 0x{pid:02X}")
        value: Any
        if kind == _BYTE:
            if pos + 1 > end:
                raise _truncated(f"property 0x{pid:02X}")
            value = data[pos]
            pos += 1
        elif kind == _U16:
            if pos + 2 > end:
                raise _truncated(f"property 0x{pid:02X}")
            value = (data[pos] << 8) | data[pos + 1]
            pos += 2
        elif kind == _U32:
            if pos + 4 > end:
                raise _truncated(f"property 0x{pid:02X}")
            value = int.from_bytes(data[pos : pos + 4], "big")
            pos += 4
        elif kind == _VARINT:
            value, pos = _read_varint(data, pos, end, f"property 0x{pid:02X}")
        elif kind == _UTF8:
            value, pos = _read_utf8(data, pos, end, f"property 0x{pid:02X}")
        elif kind == _BINARY:
            if pos + 2 > end:
                raise _truncated(f"property 0x{pid:02X}")
            stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
            if stop > end:
                raise _truncated(f"property 0x{pid:02X}")
            value = data[pos + 2 : stop]
            pos = stop
        else:  # _PAIR
            name, pos = _read_utf8(data, pos, end, "user property name")
            text, pos = _read_utf8(data, pos, end, "user property value")
            value = (name, text)
        if pid in _REPEATABLE:
            props.setdefault(pid, []).append(value)
        elif pid in props:
            raise ProtocolError(f"protocol error: property 0x{pid:02X} appears twice")
        else:
            props[pid] = value
    return props


def _property_block(data: bytes, pos: int, end: int, what: str) -> tuple[dict[int, Any], int]:
    length, pos = _read_varint(data, pos, end, f"{what} property length")
    stop = pos + length
    if stop > end:
        raise _truncated(f"{what} properties")
    if not length:
        return {}, stop
    return decode_properties(data, pos, stop), stop


class MqttDecoder:
    """Turns the byte stream from a broker into packets, whatever the read boundaries are.

    :meth:`feed` takes each read as it comes and returns the packets it completed: none while a
    packet is still partial, many when a read holds many. One decoder belongs to one connection:
    it keeps that connection's topic aliases.

    ``maximum_packet_size`` bounds a whole packet (fixed header included), as the MQTT 5 property
    of that name does; a bigger one raises :class:`ProtocolError` as soon as its header is read,
    before its body is buffered. ``topic_alias_maximum`` is what the client sent in CONNECT: an
    alias above it (or 0) is a Protocol Error (3.3.2.3.4). ``publishes`` says whether the client
    sends QoS 1 messages: only then is a PUBACK something a broker may send it.
    """

    __slots__ = (
        "_aliases",
        "_chunks",
        "_have",
        "_need",
        "maximum_packet_size",
        "publishes",
        "topic_alias_max",
    )

    def __init__(
        self,
        *,
        maximum_packet_size: int = MAX_REMAINING_LENGTH + 5,
        topic_alias_maximum: int = 0,
        publishes: bool = False,
    ) -> None:
        self.maximum_packet_size = maximum_packet_size
        self.topic_alias_max = topic_alias_maximum
        self.publishes = publishes
        self._aliases: dict[int, str] = {}
        # A partial packet waits as a list of reads and is joined once complete, so a large
        # packet arriving in many reads is copied once, not once per read.
        self._chunks: list[bytes] = []
        self._have = 0
        self._need = 0  # the partial packet's full size once its header is known, else 0

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet make a whole packet."""
        return self._have

    def feed(self, data: bytes) -> list[Packet]:
        """The packets completed by ``data``, in order; raises :class:`ProtocolError` on
        malformed input, after which the decoder (and the connection) must not be used."""
        if type(data) is not bytes:
            data = bytes(data)
        if self._chunks:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._have = self._need = 0
        out: list[Packet] = []
        n = len(data)
        pos = 0
        max_size = self.maximum_packet_size
        try:
            while pos < n:
                # Fixed header (2.1.1): type and flags, then the Remaining Length.
                if pos + 1 >= n:
                    break
                first = data[pos]
                length = data[pos + 1]
                body = pos + 2
                if length >= 0x80:
                    length, body = self._remaining_length(data, pos + 1, n)
                    if body < 0:
                        break
                end = body + length
                if end - pos > max_size:
                    raise ProtocolError(
                        f"packet of {end - pos} bytes exceeds the maximum packet size of "
                        f"{max_size} bytes"
                    )
                if end > n:
                    self._need = end - pos
                    break
                if first >> 4 == 3:
                    out.append(self._publish(first, data, body, end))
                else:
                    out.append(self._other(first, data, body, end))
                pos = end
        except IndexError:  # pragma: no cover - every read is bounds-checked; belt and braces
            raise ProtocolError(
                "malformed packet: a field runs past the end of the packet"
            ) from None
        if pos < n:
            rest = data[pos:] if pos else data
            self._chunks.append(rest)
            self._have = len(rest)
        return out

    @staticmethod
    def _remaining_length(data: bytes, pos: int, n: int) -> tuple[int, int]:
        """(Remaining Length, where the body starts), or (0, -1) when the header is incomplete."""
        value = 0
        shift = 0
        for _ in range(4):
            if pos >= n:
                return 0, -1
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos
            shift += 7
        raise ProtocolError(
            f"malformed packet: Remaining Length over 4 bytes (the limit is {MAX_REMAINING_LENGTH})"
        )

    def _publish(self, first: int, data: bytes, pos: int, end: int) -> Publish:
        # 3.3: flags DUP (bit 3), QoS (bits 2-1), RETAIN (bit 0); topic; packet id if QoS > 0;
        # properties; the rest is the payload.
        qos = (first >> 1) & 3
        if qos == 3:
            raise ProtocolError("malformed packet: PUBLISH with QoS 3")
        if pos + 2 > end:
            raise _truncated("PUBLISH topic")
        topic_end = pos + 2 + ((data[pos] << 8) | data[pos + 1])
        if qos:
            props_at = topic_end + 2
            if props_at >= end:
                raise _truncated("PUBLISH packet id and properties")
            mid = (data[topic_end] << 8) | data[topic_end + 1]
            if not mid:
                raise ProtocolError("protocol error: PUBLISH with QoS > 0 and packet id 0")
        else:
            if first & 0x08:
                raise ProtocolError("malformed packet: PUBLISH with QoS 0 and DUP set")
            props_at = topic_end
            mid = 0
            if props_at >= end:
                raise _truncated("PUBLISH topic and properties")
        try:
            topic = data[pos + 2 : topic_end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"malformed packet: PUBLISH topic is not UTF-8 ({exc})") from None
        prop_length = data[props_at]
        if prop_length == 0:
            # The common case: nothing to walk, and no alias, so the topic must be there.
            if not topic or "\x00" in topic:
                raise ProtocolError(f"malformed packet: PUBLISH topic {topic!r} is not valid")
            return Publish(
                topic,
                data[props_at + 1 : end],
                qos,
                mid,
                bool(first & 1),
                bool(first & 8),
                EMPTY_PROPERTIES,
            )
        if prop_length >= 0x80:
            prop_length, props_start = _read_varint(data, props_at, end, "PUBLISH property length")
        else:
            props_start = props_at + 1
        payload_at = props_start + prop_length
        if payload_at > end:
            raise _truncated("PUBLISH properties")
        props = decode_properties(data, props_start, payload_at)
        alias = props.pop(TOPIC_ALIAS, None)
        if alias is not None:
            topic = self._resolve_alias(alias, topic)
        elif not topic:
            raise ProtocolError("protocol error: PUBLISH with an empty topic and no topic alias")
        if "\x00" in topic:
            raise ProtocolError("malformed packet: PUBLISH topic contains U+0000")
        return Publish(
            topic, data[payload_at:end], qos, mid, bool(first & 1), bool(first & 8), props
        )

    def _resolve_alias(self, alias: int, topic: str) -> str:
        # 3.3.2.3.4: a topic with an alias (re)binds it; an empty topic uses the binding.
        if not 0 < alias <= self.topic_alias_max:
            raise ProtocolError(
                f"protocol error: topic alias {alias} outside 1..{self.topic_alias_max} "
                "(the Topic Alias Maximum sent in CONNECT)"
            )
        if topic:
            self._aliases[alias] = topic
            return topic
        try:
            return self._aliases[alias]
        except KeyError:
            raise ProtocolError(f"protocol error: topic alias {alias} was never bound") from None

    def _other(self, first: int, data: bytes, pos: int, end: int) -> Packet:
        kind = first >> 4
        flags = first & 0x0F
        if kind == 6:  # PUBREL (3.6); its fixed-header flags are 0b0010.
            if flags != 0x02:
                raise ProtocolError(f"malformed packet: PUBREL with flags 0x{flags:X}")
            if end - pos < 2:
                raise _truncated("PUBREL packet id")
            packet_id = (data[pos] << 8) | data[pos + 1]
            reason = data[pos + 2] if end - pos > 2 else 0
            if end - pos > 3:
                _, stop = _property_block(data, pos + 3, end, "PUBREL")
                self._expect_end(stop, end, "PUBREL")
            return PubRel(packet_id, reason)
        if flags:
            raise ProtocolError(f"malformed packet: packet type {kind} with flags 0x{flags:X}")
        if kind == 13:  # PINGRESP (3.13)
            self._expect_end(pos, end, "PINGRESP")
            return _PINGRESP
        if kind == 2:
            return self._connack(data, pos, end)
        if kind == 9:  # SUBACK (3.9)
            if end - pos < 3:
                raise _truncated("SUBACK")
            packet_id = (data[pos] << 8) | data[pos + 1]
            props, stop = _property_block(data, pos + 2, end, "SUBACK")
            if stop == end:
                raise ProtocolError("protocol error: SUBACK without reason codes")
            return SubAck(packet_id, tuple(data[stop:end]), props or EMPTY_PROPERTIES)
        if kind == 4 and self.publishes:
            return self._puback(data, pos, end)
        if kind == 14:  # DISCONNECT (3.14); Remaining Length 0 means Normal disconnection.
            if pos == end:
                return Disconnect()
            reason = data[pos]
            props = {}
            if end - pos > 1:
                props, stop = _property_block(data, pos + 1, end, "DISCONNECT")
                self._expect_end(stop, end, "DISCONNECT")
            return Disconnect(reason, props or EMPTY_PROPERTIES)
        names = {4: "PUBACK", 5: "PUBREC", 7: "PUBCOMP", 11: "UNSUBACK", 15: "AUTH"}
        if kind in names:
            raise ProtocolError(
                f"protocol error: unexpected {names[kind]} (this client does not publish with "
                "that QoS, unsubscribe or authenticate)"
            )
        raise ProtocolError(f"malformed packet: packet type {kind} is not one a broker sends")

    @staticmethod
    def _puback(data: bytes, pos: int, end: int) -> PubAck:
        # 3.4: packet id; then a reason code and properties, each left out when it is the
        # default (Remaining Length 2: Success, 3: no properties).
        if end - pos < 2:
            raise _truncated("PUBACK packet id")
        packet_id = (data[pos] << 8) | data[pos + 1]
        if not packet_id:
            raise ProtocolError("protocol error: PUBACK with packet id 0")
        reason = data[pos + 2] if end - pos > 2 else 0
        props: dict[int, Any] = {}
        if end - pos > 3:
            props, stop = _property_block(data, pos + 3, end, "PUBACK")
            MqttDecoder._expect_end(stop, end, "PUBACK")
        return PubAck(packet_id, reason, props or EMPTY_PROPERTIES)

    @staticmethod
    def _expect_end(pos: int, end: int, what: str) -> None:
        if pos != end:
            raise ProtocolError(f"malformed packet: {end - pos} stray bytes at the end of {what}")

    @staticmethod
    def _connack(data: bytes, pos: int, end: int) -> ConnAck:
        # 3.2: acknowledge flags (only bit 0, Session Present, may be set), reason code,
        # properties.
        if end - pos < 2:
            raise _truncated("CONNACK")
        ack_flags = data[pos]
        if ack_flags & 0xFE:
            raise ProtocolError(f"malformed packet: CONNACK flags 0x{ack_flags:02X}")
        reason = data[pos + 1]
        props: dict[int, Any] = {}
        if end - pos > 2:
            props, stop = _property_block(data, pos + 2, end, "CONNACK")
            MqttDecoder._expect_end(stop, end, "CONNACK")
        receive_maximum = props.get(RECEIVE_MAXIMUM, 65535)
        if receive_maximum == 0:
            raise ProtocolError("protocol error: CONNACK with Receive Maximum 0")
        return ConnAck(
            session_present=bool(ack_flags & 1),
            reason_code=reason,
            receive_maximum=receive_maximum,
            maximum_packet_size=props.get(MAXIMUM_PACKET_SIZE),
            assigned_client_identifier=props.get(ASSIGNED_CLIENT_IDENTIFIER),
            topic_alias_maximum=props.get(TOPIC_ALIAS_MAXIMUM, 0),
            server_keep_alive=props.get(SERVER_KEEP_ALIVE),
            properties=props or EMPTY_PROPERTIES,
        )
