"""A sans-I/O MQTT 5 codec for the subscriber side of a session with manual acknowledgements.

It encodes what a subscriber sends (CONNECT, SUBSCRIBE, PUBACK, PUBREC, PUBCOMP, PINGREQ,
DISCONNECT) and decodes what a broker sends it (CONNACK, SUBACK, PUBLISH, PUBREL, PINGRESP,
DISCONNECT). No sockets, no asyncio: :mod:`cityhub.connectors.mqtt.session` moves the bytes.

It exists because paho-mqtt's PUBLISH decoding is a third of the bridge's CPU time: paho builds a
``Properties`` object per message and copies the payload several times. Here a PUBLISH without
properties costs a topic decode, one payload copy and one small object; the property block is
only walked when it is not empty. Malformed input always raises :class:`ProtocolError`, never an
``IndexError`` or ``struct.error``, so that the driver can drop the connection and reconnect.

Packet layouts follow OASIS MQTT Version 5.0 (2019), section 3; section numbers below refer to it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from cityhub.schemas.errors import CityhubError

MAX_REMAINING_LENGTH: Final = 268_435_455
"""The largest Remaining Length a four-byte Variable Byte Integer can carry (1.5.5)."""

# Property identifiers (2.2.2.2); the ones a subscriber reads are named.
PAYLOAD_FORMAT_INDICATOR: Final = 0x01
MESSAGE_EXPIRY_INTERVAL: Final = 0x02
CONTENT_TYPE: Final = 0x03
RESPONSE_TOPIC: Final = 0x08
CORRELATION_DATA: Final = 0x09
SUBSCRIPTION_IDENTIFIER: Final = 0x0B
SESSION_EXPIRY_INTERVAL: Final = 0x11
ASSIGNED_CLIENT_IDENTIFIER: Final = 0x12
SERVER_KEEP_ALIVE: Final = 0x13
REASON_STRING: Final = 0x1F
RECEIVE_MAXIMUM: Final = 0x21
TOPIC_ALIAS_MAXIMUM: Final = 0x22
TOPIC_ALIAS: Final = 0x23
MAXIMUM_QOS: Final = 0x24
USER_PROPERTY: Final = 0x26
MAXIMUM_PACKET_SIZE: Final = 0x27

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

REASON_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        0x00: "Success",
        0x01: "Granted QoS 1",
        0x02: "Granted QoS 2",
        0x04: "Disconnect with Will Message",
        0x80: "Unspecified error",
        0x81: "Malformed Packet",
        0x82: "Protocol Error",
        0x83: "Implementation specific error",
        0x84: "Unsupported Protocol Version",
        0x85: "Client Identifier not valid",
        0x86: "Bad User Name or Password",
        0x87: "Not authorized",
        0x88: "Server unavailable",
        0x89: "Server busy",
        0x8A: "Banned",
        0x8B: "Server shutting down",
        0x8C: "Bad authentication method",
        0x8D: "Keep Alive timeout",
        0x8E: "Session taken over",
        0x8F: "Topic Filter invalid",
        0x90: "Topic Name invalid",
        0x91: "Packet Identifier in use",
        0x92: "Packet Identifier not found",
        0x93: "Receive Maximum exceeded",
        0x94: "Topic Alias invalid",
        0x95: "Packet too large",
        0x96: "Message rate too high",
        0x97: "Quota exceeded",
        0x98: "Administrative action",
        0x99: "Payload format invalid",
        0x9A: "Retain not supported",
        0x9B: "QoS not supported",
        0x9C: "Use another server",
        0x9D: "Server moved",
        0x9E: "Shared Subscriptions not supported",
        0x9F: "Connection rate exceeded",
        0xA0: "Maximum connect time",
        0xA1: "Subscription Identifiers not supported",
        0xA2: "Wildcard Subscriptions not supported",
    }
)


def reason_name(code: int) -> str:
    """The spec's name of a reason code, e.g. ``"Not authorized (0x87)"``.

    0x00 is "Success" here; in a SUBACK it means "Granted QoS 0", in a DISCONNECT "Normal
    disconnection", which the callers that care spell out themselves.
    """
    return f"{REASON_NAMES.get(code, 'Unknown reason code')} (0x{code:02X})"


class ProtocolError(CityhubError):
    """The broker sent bytes that are not a well-formed MQTT 5 packet a subscriber expects.

    Retriable: the stream is unusable from here on, but a new connection starts a new one.
    """

    retriable = True


_EMPTY_PROPERTIES: Final[Mapping[int, Any]] = MappingProxyType({})


@dataclass(slots=True)
class Publish:
    """A received PUBLISH. ``mid`` is the packet identifier (0 for QoS 0), as ``ack`` wants it.

    ``properties`` maps property identifiers (the constants of this module) to values; User
    Property and Subscription Identifier map to lists. It is an empty mapping when the packet had
    none, and never holds Topic Alias: ``topic`` is always the resolved topic name.
    """

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    dup: bool
    properties: Mapping[int, Any] = field(default_factory=lambda: _EMPTY_PROPERTIES)


@dataclass(frozen=True, slots=True)
class ConnAck:
    """A CONNACK (3.2). ``reason_code`` ≥ 0x80 means the broker refused the connection.

    The fields are the properties a subscriber acts on, with the spec's defaults when absent;
    ``properties`` holds everything the packet carried.
    """

    session_present: bool
    reason_code: int
    receive_maximum: int = 65535
    maximum_packet_size: int | None = None
    assigned_client_identifier: str | None = None
    topic_alias_maximum: int = 0
    server_keep_alive: int | None = None
    properties: Mapping[int, Any] = field(default_factory=lambda: _EMPTY_PROPERTIES)


@dataclass(frozen=True, slots=True)
class SubAck:
    """A SUBACK (3.9): one reason code per filter of the SUBSCRIBE, in its order. A code below
    0x80 is the granted QoS; 0x80 and above is a failure."""

    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Mapping[int, Any] = field(default_factory=lambda: _EMPTY_PROPERTIES)


@dataclass(frozen=True, slots=True)
class PubRel:
    """A PUBREL (3.6), the broker's second step of a QoS 2 delivery; answer it with PUBCOMP."""

    packet_id: int
    reason_code: int = 0


@dataclass(frozen=True, slots=True)
class PingResp:
    """A PINGRESP (3.13)."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """A DISCONNECT from the broker (3.14); it closes the connection after sending it."""

    reason_code: int = 0
    properties: Mapping[int, Any] = field(default_factory=lambda: _EMPTY_PROPERTIES)


Packet = Publish | ConnAck | SubAck | PubRel | PingResp | Disconnect
"""Everything :class:`MqttDecoder` returns."""

_PINGRESP: Final = PingResp()

# --- encoding -------------------------------------------------------------------------------

_ACK: Final = struct.Struct(">BBH")
_U16_S: Final = struct.Struct(">H")
_U32_S: Final = struct.Struct(">I")


def _varint(value: int) -> bytes:
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"{value} does not fit an MQTT Variable Byte Integer")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _binary(raw)


def _binary(raw: bytes) -> bytes:
    if len(raw) > 0xFFFF:
        raise ValueError(f"a string or binary field is at most 65535 bytes, not {len(raw)}")
    return _U16_S.pack(len(raw)) + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + _varint(len(body)) + body


def _check_u16(name: str, value: int, low: int = 0) -> None:
    if not low <= value <= 0xFFFF:
        raise ValueError(f"{name} must be within {low}..65535, not {value}")


def encode_connect(
    client_id: str,
    *,
    clean_start: bool,
    keepalive: int,
    username: str | None = None,
    password: bytes | None = None,
    session_expiry_interval: int = 0,
    receive_maximum: int | None = None,
    maximum_packet_size: int | None = None,
    topic_alias_maximum: int = 0,
) -> bytes:
    """A CONNECT for MQTT 5 (3.1) without a will.

    Properties are only sent when they differ from the spec's defaults (session expiry 0, receive
    maximum 65535, no packet size limit, no topic aliases), which keeps the packet minimal.
    """
    _check_u16("keepalive", keepalive)
    if not 0 <= session_expiry_interval <= 0xFFFFFFFF:
        raise ValueError(f"session expiry must fit 32 bits, not {session_expiry_interval}")
    flags = 0x02 if clean_start else 0
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    props = bytearray()
    if session_expiry_interval:
        props += bytes((SESSION_EXPIRY_INTERVAL,)) + _U32_S.pack(session_expiry_interval)
    if receive_maximum is not None:
        _check_u16("receive maximum", receive_maximum, low=1)  # 0 is a Protocol Error
        props += bytes((RECEIVE_MAXIMUM,)) + _U16_S.pack(receive_maximum)
    if maximum_packet_size is not None:
        if not 1 <= maximum_packet_size <= MAX_REMAINING_LENGTH + 5:
            raise ValueError(f"maximum packet size out of range: {maximum_packet_size}")
        props += bytes((MAXIMUM_PACKET_SIZE,)) + _U32_S.pack(maximum_packet_size)
    if topic_alias_maximum:
        _check_u16("topic alias maximum", topic_alias_maximum)
        props += bytes((TOPIC_ALIAS_MAXIMUM,)) + _U16_S.pack(topic_alias_maximum)
    body = bytearray(b"\x00\x04MQTT\x05")
    body.append(flags)
    body += _U16_S.pack(keepalive)
    body += _varint(len(props)) + props
    body += _string(client_id)
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _binary(password)
    return _packet(0x10, bytes(body))


def encode_subscribe(packet_id: int, subscriptions: Sequence[tuple[str, int]]) -> bytes:
    """A SUBSCRIBE (3.8) of ``(topic filter, maximum QoS)`` pairs, no properties.

    The other subscription options stay 0: No Local off (it is a Protocol Error on shared
    subscriptions), Retain As Published off, retained messages sent on subscribe.
    """
    _check_u16("packet id", packet_id, low=1)
    if not subscriptions:
        raise ValueError("a SUBSCRIBE needs at least one topic filter")
    body = bytearray(_U16_S.pack(packet_id))
    body.append(0)  # property length
    for topic_filter, qos in subscriptions:
        if qos not in (0, 1, 2):
            raise ValueError(f"QoS must be 0, 1 or 2, not {qos}")
        if not topic_filter:
            raise ValueError("a topic filter must not be empty")
        body += _string(topic_filter)
        body.append(qos)
    return _packet(0x82, bytes(body))


def _ack(first_byte: int, packet_id: int) -> bytes:
    if not 0 < packet_id <= 0xFFFF:
        raise ValueError(f"packet id must be within 1..65535, not {packet_id}")
    # Reason code 0 with no properties may be left out: Remaining Length 2 (3.4.2.1).
    return _ACK.pack(first_byte, 2, packet_id)


def encode_puback(packet_id: int) -> bytes:
    """A PUBACK (3.4), success: acknowledges a QoS 1 PUBLISH."""
    return _ack(0x40, packet_id)


def encode_pubrec(packet_id: int) -> bytes:
    """A PUBREC (3.5), success: the first acknowledgement of a QoS 2 PUBLISH."""
    return _ack(0x50, packet_id)


def encode_pubcomp(packet_id: int) -> bytes:
    """A PUBCOMP (3.7), success: the answer to a PUBREL, which ends a QoS 2 delivery."""
    return _ack(0x70, packet_id)


PINGREQ: Final = b"\xc0\x00"
"""A PINGREQ (3.12); it never varies."""


def encode_pingreq() -> bytes:
    """A PINGREQ (3.12)."""
    return PINGREQ


def encode_disconnect(reason_code: int = 0) -> bytes:
    """A DISCONNECT (3.14). With 0 (Normal disconnection) the broker keeps a persistent session
    and discards any will; the short form with Remaining Length 0 means exactly that."""
    if reason_code == 0:
        return b"\xe0\x00"
    if not 0 <= reason_code <= 0xFF:
        raise ValueError(f"reason code must be one byte, not {reason_code}")
    return bytes((0xE0, 1, reason_code))


# --- decoding -------------------------------------------------------------------------------


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
    alias above it (or 0) is a Protocol Error (3.3.2.3.4).
    """

    __slots__ = ("_aliases", "_chunks", "_have", "_need", "maximum_packet_size", "topic_alias_max")

    def __init__(
        self, *, maximum_packet_size: int = MAX_REMAINING_LENGTH + 5, topic_alias_maximum: int = 0
    ) -> None:
        self.maximum_packet_size = maximum_packet_size
        self.topic_alias_max = topic_alias_maximum
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
                _EMPTY_PROPERTIES,
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
            return SubAck(packet_id, tuple(data[stop:end]), props or _EMPTY_PROPERTIES)
        if kind == 14:  # DISCONNECT (3.14); Remaining Length 0 means Normal disconnection.
            if pos == end:
                return Disconnect()
            reason = data[pos]
            props = {}
            if end - pos > 1:
                props, stop = _property_block(data, pos + 1, end, "DISCONNECT")
                self._expect_end(stop, end, "DISCONNECT")
            return Disconnect(reason, props or _EMPTY_PROPERTIES)
        names = {4: "PUBACK", 5: "PUBREC", 7: "PUBCOMP", 11: "UNSUBACK", 15: "AUTH"}
        if kind in names:
            raise ProtocolError(
                f"protocol error: unexpected {names[kind]} (this client never publishes, "
                "unsubscribes or authenticates)"
            )
        raise ProtocolError(f"malformed packet: packet type {kind} is not one a broker sends")

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
            properties=props or _EMPTY_PROPERTIES,
        )
