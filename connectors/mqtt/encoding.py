"""Encoding what an MQTT 5 client sends: CONNECT, SUBSCRIBE, PUBLISH, the acknowledgements,
PINGREQ and DISCONNECT (section numbers refer to OASIS MQTT Version 5.0).

Pure: each function returns the bytes of one packet and raises ValueError for arguments the spec
does not allow, before anything is written to a connection.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from cityhub.connectors.mqtt.packets import (
    CONTENT_TYPE,
    MAX_REMAINING_LENGTH,
    MAXIMUM_PACKET_SIZE,
    RECEIVE_MAXIMUM,
    SESSION_EXPIRY_INTERVAL,
    TOPIC_ALIAS_MAXIMUM,
    USER_PROPERTY,
)

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


def publish_properties(
    *, content_type: str | None = None, user_properties: Sequence[tuple[str, str]] = ()
) -> bytes:
    """The properties of a PUBLISH (3.3.2.3), without their length: Content Type (3.3.2.3.9)
    and User Properties (3.3.2.3.7, in order; a name may repeat). ValueError for a string over
    65535 bytes of UTF-8 or one with U+0000 (1.5.4)."""
    out = bytearray()
    strings = [content_type] if content_type is not None else []
    strings += [text for pair in user_properties for text in pair]
    for text in strings:
        if "\x00" in text:
            raise ValueError("an MQTT property string has no U+0000")
    if content_type is not None:
        out += bytes((CONTENT_TYPE,)) + _string(content_type)
    for name, value in user_properties:
        out += bytes((USER_PROPERTY,)) + _string(name) + _string(value)
    return bytes(out)


def encode_publish(
    topic: str,
    payload: bytes,
    *,
    qos: int,
    packet_id: int = 0,
    retain: bool = False,
    properties: bytes = b"",
) -> bytes:
    """A PUBLISH (3.3) to send (never DUP: a resent message goes out on a new connection with
    a new packet id, as a clean session wants), with ``properties`` (``publish_properties``;
    none by default).

    ``packet_id`` is required (1..65535) for QoS 1 and 2 and must be 0 for QoS 0. ValueError for
    a topic the spec forbids in a PUBLISH: empty, with a wildcard (``+`` or ``#``), with U+0000,
    or over 65535 bytes of UTF-8.
    """
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS must be 0, 1 or 2, not {qos}")
    if qos:
        _check_u16("packet id", packet_id, low=1)
    elif packet_id:
        raise ValueError("a QoS 0 PUBLISH has no packet id")
    check_topic_name(topic)
    raw_topic = topic.encode("utf-8")
    head = bytes((0x30 | (qos << 1) | (1 if retain else 0),))
    variable = _U16_S.pack(len(raw_topic)) + raw_topic
    if qos:
        variable += _U16_S.pack(packet_id)
    variable += _varint(len(properties)) + properties
    return head + _varint(len(variable) + len(payload)) + variable + payload


def publish_packet_size(topic: str, payload_bytes: int, qos: int, properties_bytes: int = 0) -> int:
    """The size in bytes of the PUBLISH :func:`encode_publish` makes, fixed header included:
    what a broker's Maximum Packet Size (3.2.2.3.6) is compared with."""
    remaining = (
        2
        + len(topic.encode("utf-8"))
        + (2 if qos else 0)
        + len(_varint(properties_bytes))
        + properties_bytes
        + payload_bytes
    )
    length_bytes = 1
    while remaining >= 128**length_bytes and length_bytes < 4:
        length_bytes += 1
    return 1 + length_bytes + remaining


def check_topic_name(topic: str) -> None:
    """ValueError, saying why, unless ``topic`` may name a PUBLISH's topic (4.7, 1.5.4): not
    empty, no wildcard, no U+0000, valid UTF-8 of at most 65535 bytes."""
    why = None
    if not topic:
        why = "is empty"
    elif "+" in topic or "#" in topic:
        why = "has wildcards (+ or #); a PUBLISH names one topic"
    elif "\x00" in topic:
        why = "contains U+0000"
    else:
        try:
            size = len(topic.encode("utf-8"))
        except UnicodeEncodeError:
            why = "is not valid UTF-8"
        else:
            if size > 0xFFFF:
                why = "is longer than 65535 bytes"
    if why is not None:
        raise ValueError(f"the topic name {why}")
