"""MQTT 5 packets as the codec gives and takes them: the packets a client reads from a broker,
the property identifiers and reason codes it acts on, and the one error of malformed input.

Pure data. :mod:`~cityhub.connectors.mqtt.encoding` writes what a client sends,
:mod:`~cityhub.connectors.mqtt.decoding` reads what a broker sends; section numbers refer to
OASIS MQTT Version 5.0 (2019).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from cityhub.schemas.errors import CityhubError

MAX_REMAINING_LENGTH: Final = 268_435_455
"""The largest Remaining Length a four-byte Variable Byte Integer can carry (1.5.5)."""

# Property identifiers (2.2.2.2); the ones a client reads or writes are named.
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

REASON_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        0x00: "Success",
        0x01: "Granted QoS 1",
        0x02: "Granted QoS 2",
        0x04: "Disconnect with Will Message",
        0x10: "No matching subscribers",
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

TRANSIENT_REASONS: Final = frozenset({0x80, 0x83, 0x88, 0x89, 0x97, 0x9F})
"""CONNACK and PUBACK reason codes worth another attempt later: Unspecified error,
Implementation specific error, Server unavailable, Server busy, Quota exceeded, Connection rate
exceeded. The others say the request itself is refused (credentials, authorisation, topic)."""


def reason_name(code: int) -> str:
    """The spec's name of a reason code, e.g. ``"Not authorized (0x87)"``.

    0x00 is "Success" here; in a SUBACK it means "Granted QoS 0", in a DISCONNECT "Normal
    disconnection", which the callers that care spell out themselves.
    """
    return f"{REASON_NAMES.get(code, 'Unknown reason code')} (0x{code:02X})"


class ProtocolError(CityhubError):
    """The broker sent bytes that are not a well-formed MQTT 5 packet this client expects.

    Retriable: the stream is unusable from here on, but a new connection starts a new one.
    """

    retriable = True


EMPTY_PROPERTIES: Final[Mapping[int, Any]] = MappingProxyType({})


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
    properties: Mapping[int, Any] = field(default_factory=lambda: EMPTY_PROPERTIES)


@dataclass(frozen=True, slots=True)
class ConnAck:
    """A CONNACK (3.2). ``reason_code`` ≥ 0x80 means the broker refused the connection.

    The fields are the properties a client acts on, with the spec's defaults when absent;
    ``properties`` holds everything the packet carried. ``receive_maximum`` is how many QoS 1
    and 2 PUBLISH packets the broker takes unacknowledged from this client at once;
    ``maximum_packet_size`` (None: no limit) the largest packet it accepts.
    """

    session_present: bool
    reason_code: int
    receive_maximum: int = 65535
    maximum_packet_size: int | None = None
    assigned_client_identifier: str | None = None
    topic_alias_maximum: int = 0
    server_keep_alive: int | None = None
    properties: Mapping[int, Any] = field(default_factory=lambda: EMPTY_PROPERTIES)


@dataclass(frozen=True, slots=True)
class SubAck:
    """A SUBACK (3.9): one reason code per filter of the SUBSCRIBE, in its order. A code below
    0x80 is the granted QoS; 0x80 and above is a failure."""

    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Mapping[int, Any] = field(default_factory=lambda: EMPTY_PROPERTIES)


@dataclass(frozen=True, slots=True)
class PubAck:
    """A PUBACK (3.4): the broker's answer to a QoS 1 PUBLISH of this client. A reason code
    below 0x80 is success (0x10: no subscriber matched, still accepted); 0x80 and above says
    why the broker refused the message."""

    packet_id: int
    reason_code: int = 0
    properties: Mapping[int, Any] = field(default_factory=lambda: EMPTY_PROPERTIES)


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
    properties: Mapping[int, Any] = field(default_factory=lambda: EMPTY_PROPERTIES)


Packet = Publish | ConnAck | SubAck | PubAck | PubRel | PingResp | Disconnect
"""Everything :class:`~cityhub.connectors.mqtt.decoding.MqttDecoder` returns."""
