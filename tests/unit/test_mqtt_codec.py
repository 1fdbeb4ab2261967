"""The MQTT 5 codec against packets built by hand from the spec (OASIS MQTT 5.0, section 3)."""

from __future__ import annotations

import contextlib
import random
import struct

import pytest

from cityhub.connectors.mqtt.codec import (
    CONTENT_TYPE,
    MAX_REMAINING_LENGTH,
    MESSAGE_EXPIRY_INTERVAL,
    PAYLOAD_FORMAT_INDICATOR,
    USER_PROPERTY,
    ConnAck,
    Disconnect,
    MqttDecoder,
    PingResp,
    ProtocolError,
    Publish,
    PubRel,
    SubAck,
    encode_connect,
    encode_disconnect,
    encode_pingreq,
    encode_puback,
    encode_pubcomp,
    encode_pubrec,
    encode_subscribe,
    reason_name,
)
from cityhub.schemas.errors import CityhubError

# --- helpers building broker packets by hand ---------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack(">H", len(raw)) + raw


def packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def props(raw: bytes) -> bytes:
    return varint(len(raw)) + raw


def publish(
    topic: str | bytes,
    payload: bytes,
    *,
    qos: int = 1,
    mid: int = 7,
    retain: bool = False,
    dup: bool = False,
    properties: bytes = b"",
) -> bytes:
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    body = string(topic) + (struct.pack(">H", mid) if qos else b"") + props(properties) + payload
    return packet(first, body)


def one(data: bytes, **kwargs: int) -> object:
    packets = MqttDecoder(**kwargs).feed(data)
    assert len(packets) == 1
    return packets[0]


# --- encoders ----------------------------------------------------------------------------------


def test_connect_persistent_session_with_receive_maximum() -> None:
    data = encode_connect(
        "bridge-1",
        clean_start=False,
        keepalive=30,
        session_expiry_interval=604800,
        receive_maximum=1000,
    )
    properties = b"\x11" + struct.pack(">I", 604800) + b"\x21" + struct.pack(">H", 1000)
    body = b"\x00\x04MQTT\x05" + b"\x00" + struct.pack(">H", 30) + props(properties)
    assert data == packet(0x10, body + string("bridge-1"))


def test_connect_clean_start_with_credentials_and_limits() -> None:
    data = encode_connect(
        "c",
        clean_start=True,
        keepalive=0,
        username="ü",
        password=b"\x00pw",
        maximum_packet_size=4096,
        topic_alias_maximum=16,
    )
    properties = b"\x27" + struct.pack(">I", 4096) + b"\x22" + struct.pack(">H", 16)
    body = b"\x00\x04MQTT\x05" + bytes((0x80 | 0x40 | 0x02,)) + b"\x00\x00" + props(properties)
    assert data == packet(0x10, body + string("c") + string("ü") + string(b"\x00pw"))


def test_connect_refuses_receive_maximum_zero() -> None:
    with pytest.raises(ValueError, match="receive maximum"):
        encode_connect("c", clean_start=True, keepalive=5, receive_maximum=0)


def test_subscribe_several_filters() -> None:
    data = encode_subscribe(10, [("$share/g/a/+/up", 1), ("b/#", 2)])
    body = b"\x00\x0a" + b"\x00" + string("$share/g/a/+/up") + b"\x01" + string("b/#") + b"\x02"
    assert data == packet(0x82, body)  # SUBSCRIBE's fixed-header flags are 0b0010


def test_subscribe_checks_its_arguments() -> None:
    with pytest.raises(ValueError):
        encode_subscribe(0, [("a", 1)])
    with pytest.raises(ValueError):
        encode_subscribe(1, [("a", 3)])
    with pytest.raises(ValueError):
        encode_subscribe(1, [])


def test_acks_ping_and_disconnect() -> None:
    assert encode_puback(0x1234) == b"\x40\x02\x12\x34"
    assert encode_pubrec(1) == b"\x50\x02\x00\x01"
    assert encode_pubcomp(65535) == b"\x70\x02\xff\xff"
    assert encode_pingreq() == b"\xc0\x00"
    assert encode_disconnect() == b"\xe0\x00"
    assert encode_disconnect(0x04) == b"\xe0\x01\x04"
    with pytest.raises(ValueError):
        encode_puback(0)
    with pytest.raises(ValueError):
        encode_puback(65536)


# --- decoder: packets --------------------------------------------------------------------------


def test_publish_qos1_without_properties() -> None:
    payload = bytes(range(256)) * 6
    got = one(publish("v3/app/devices/d1/up", payload, mid=513))
    assert got == Publish("v3/app/devices/d1/up", payload, 1, 513, False, False)
    assert isinstance(got, Publish)
    assert type(got.payload) is bytes
    assert type(got.topic) is str
    assert not got.properties


def test_publish_qos0_has_no_packet_id_and_flags_decode() -> None:
    got = one(publish("t", b"x", qos=0, retain=True))
    assert got == Publish("t", b"x", 0, 0, True, False)
    got = one(publish("t", b"", qos=2, mid=9, dup=True))
    assert got == Publish("t", b"", 2, 9, False, True)


def test_publish_utf8_topic() -> None:
    got = one(publish("städte/straße/温度", b"1"))
    assert isinstance(got, Publish)
    assert got.topic == "städte/straße/温度"


def test_publish_properties_are_walked_and_kept() -> None:
    raw = (
        b"\x01\x01"  # Payload Format Indicator: UTF-8
        + b"\x02"
        + struct.pack(">I", 60)  # Message Expiry Interval
        + b"\x03"
        + string("application/json")  # Content Type
        + b"\x26"
        + string("k")
        + string("v1")  # User Property
        + b"\x26"
        + string("k")
        + string("v2")
        + b"\x0b\x81\x01"  # Subscription Identifier 129 (a two-byte varint)
        + b"\x09"
        + string(b"\x00\x01")  # Correlation Data, binary: skipped by its type, kept
    )
    got = one(publish("t", b"{}", properties=raw))
    assert isinstance(got, Publish)
    assert got.payload == b"{}"
    assert got.properties[PAYLOAD_FORMAT_INDICATOR] == 1
    assert got.properties[MESSAGE_EXPIRY_INTERVAL] == 60
    assert got.properties[CONTENT_TYPE] == "application/json"
    assert got.properties[USER_PROPERTY] == [("k", "v1"), ("k", "v2")]
    assert got.properties[0x0B] == [129]
    assert got.properties[0x09] == b"\x00\x01"


def test_topic_alias_binds_then_resolves_per_decoder() -> None:
    decoder = MqttDecoder(topic_alias_maximum=4)
    bind = publish("city/a", b"1", properties=b"\x23\x00\x02")
    use = publish("", b"2", mid=8, properties=b"\x23\x00\x02")
    first, second = decoder.feed(bind + use)
    assert isinstance(first, Publish)
    assert isinstance(second, Publish)
    assert (first.topic, second.topic) == ("city/a", "city/a")
    assert second.payload == b"2"
    assert not second.properties  # the alias is resolved, not handed on
    rebind = publish("city/b", b"3", properties=b"\x23\x00\x02")
    _, fourth = decoder.feed(rebind + use)
    assert isinstance(fourth, Publish)
    assert fourth.topic == "city/b"
    # A new connection (a new decoder) knows no aliases.
    with pytest.raises(ProtocolError, match="never bound"):
        MqttDecoder(topic_alias_maximum=4).feed(use)


@pytest.mark.parametrize("alias", [0, 5])
def test_topic_alias_outside_what_we_allowed(alias: int) -> None:
    with pytest.raises(ProtocolError, match="topic alias"):
        one(publish("t", b"", properties=b"\x23" + struct.pack(">H", alias)), topic_alias_maximum=4)


def test_connack_with_properties_including_unknown_to_us_ones() -> None:
    raw = (
        b"\x21\x00\x14"  # Receive Maximum 20
        + b"\x27"
        + struct.pack(">I", 65536)  # Maximum Packet Size
        + b"\x12"
        + string("auto-1")  # Assigned Client Identifier
        + b"\x22\x00\x0a"  # Topic Alias Maximum 10
        + b"\x13\x00\x3c"  # Server Keep Alive 60
        + b"\x25\x01"  # Retain Available: not kept as a field, skipped by its type
        + b"\x1c"
        + string("elsewhere")  # Server Reference
        + b"\x26"
        + string("a")
        + string("b")
    )
    got = one(packet(0x20, b"\x01\x00" + props(raw)))
    assert isinstance(got, ConnAck)
    assert got.session_present is True
    assert got.reason_code == 0
    assert got.receive_maximum == 20
    assert got.maximum_packet_size == 65536
    assert got.assigned_client_identifier == "auto-1"
    assert got.topic_alias_maximum == 10
    assert got.server_keep_alive == 60
    assert got.properties[0x25] == 1


def test_connack_zero_length_properties_and_refusal() -> None:
    got = one(packet(0x20, b"\x00\x87\x00"))
    assert got == ConnAck(session_present=False, reason_code=0x87)
    assert reason_name(0x87) == "Not authorized (0x87)"


def test_suback_one_code_per_filter() -> None:
    got = one(packet(0x90, b"\x00\x05" + props(b"\x1f" + string("why")) + b"\x01\x02\x87"))
    assert isinstance(got, SubAck)
    assert got.packet_id == 5
    assert got.reason_codes == (1, 2, 0x87)
    assert got.properties[0x1F] == "why"


def test_pubrel_pingresp_disconnect() -> None:
    assert one(packet(0x62, b"\x00\x09")) == PubRel(9)
    assert one(packet(0x62, b"\x00\x09\x92")) == PubRel(9, 0x92)
    assert one(packet(0x62, b"\x00\x09\x00\x00")) == PubRel(9)
    assert one(b"\xd0\x00") == PingResp()
    assert one(b"\xe0\x00") == Disconnect(0)
    got = one(packet(0xE0, b"\x8e" + props(b"\x1f" + string("taken over"))))
    assert isinstance(got, Disconnect)
    assert got.reason_code == 0x8E
    assert got.properties[0x1F] == "taken over"


# --- decoder: framing --------------------------------------------------------------------------


def stream() -> tuple[bytes, list[object]]:
    parts = [
        packet(0x20, b"\x00\x00\x00"),
        packet(0x90, b"\x00\x01\x00\x01"),
        publish("a/b", b"x" * 300, mid=1),  # a two-byte Remaining Length
        publish("a/c", b"", qos=0),
        packet(0x62, b"\x00\x01"),
        b"\xd0\x00",
        publish("a/d", b"y" * 20000, mid=2, properties=b"\x01\x00"),  # three bytes
        b"\xe0\x00",
    ]
    return b"".join(parts), MqttDecoder().feed(b"".join(parts))


def test_many_packets_in_one_feed() -> None:
    _, packets = stream()
    assert [type(p).__name__ for p in packets] == [
        "ConnAck",
        "SubAck",
        "Publish",
        "Publish",
        "PubRel",
        "PingResp",
        "Publish",
        "Disconnect",
    ]


def test_byte_by_byte_feeds_give_the_same_packets() -> None:
    data, expected = stream()
    decoder = MqttDecoder()
    got: list[object] = []
    for i in range(len(data)):
        got += decoder.feed(data[i : i + 1])
    assert got == expected
    assert decoder.buffered == 0


@pytest.mark.parametrize("size", [2, 7, 1000, 4096])
def test_arbitrary_read_boundaries(size: int) -> None:
    data, expected = stream()
    decoder = MqttDecoder()
    got: list[object] = []
    for i in range(0, len(data), size):
        got += decoder.feed(memoryview(data)[i : i + size])  # type: ignore[arg-type]  # bytes-like is accepted too
    assert got == expected


def test_oversize_packet_is_refused_from_its_header() -> None:
    decoder = MqttDecoder(maximum_packet_size=1024)
    big = publish("t", b"z" * 1100)
    with pytest.raises(ProtocolError, match="maximum packet size of 1024"):
        decoder.feed(big[:4])  # the body has not arrived: refused before it is buffered


def test_remaining_length_over_four_bytes_is_malformed() -> None:
    assert MAX_REMAINING_LENGTH == 268_435_455
    with pytest.raises(ProtocolError, match="over 4 bytes"):
        MqttDecoder().feed(b"\x30\xff\xff\xff\xff\x01")
    # The largest legal value is accepted as a header (and then waits for its body).
    decoder = MqttDecoder()
    assert decoder.feed(b"\x30\xff\xff\xff\x7f") == []


MALFORMED = {
    "bad utf-8 topic": publish(b"a/\xff", b""),
    "NUL in topic": publish("a\x00b", b""),
    "empty topic, no alias": publish("", b"x"),
    "qos 3": packet(0x36, string("t") + b"\x00\x01\x00"),
    "qos 0 with dup": packet(0x38, string("t") + b"\x00"),
    "packet id 0": publish("t", b"", mid=0),
    "topic past the end": packet(0x32, b"\x00\x10ab"),
    "no property length": packet(0x32, string("t") + b"\x00\x01"),
    "truncated property": publish("t", b"", properties=b"\x02\x00\x00"),
    "property block past the end": packet(0x32, string("t") + b"\x00\x01\x05\x01"),
    "unknown property": publish("t", b"", properties=b"\x7e\x00"),
    "duplicate property": publish("t", b"", properties=b"\x01\x00\x01\x01"),
    "property varint too long": publish("t", b"", properties=b"\x0b\xff\xff\xff\xff\x01"),
    "bad utf-8 in a user property": publish(
        "t", b"", properties=b"\x26" + string(b"\xc3") + string("v")
    ),
    "truncated suback": packet(0x90, b"\x00"),
    "suback without codes": packet(0x90, b"\x00\x01\x00"),
    "connack flags": packet(0x20, b"\x02\x00\x00"),
    "connack receive maximum 0": packet(0x20, b"\x00\x00\x03\x21\x00\x00"),
    "connack stray bytes": packet(0x20, b"\x00\x00\x00\x01"),
    "pingresp with a body": packet(0xD0, b"\x00"),
    "pubrel flags": packet(0x60, b"\x00\x01"),
    "reserved type 0": b"\x00\x00",
    "a PUBACK to a subscriber": packet(0x40, b"\x00\x01"),
    "a CONNECT from the broker": packet(0x10, b"\x00"),
    "flags on suback": packet(0x91, b"\x00\x01\x00\x00"),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_raises_protocol_error_only(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        MqttDecoder(topic_alias_maximum=10).feed(data)


def test_protocol_error_is_a_retriable_cityhub_error() -> None:
    assert issubclass(ProtocolError, CityhubError)
    assert ProtocolError.retriable is True


def test_random_garbage_never_raises_anything_but_protocol_error() -> None:
    rng = random.Random(5)
    good, _ = stream()
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        decoder = MqttDecoder(topic_alias_maximum=10)
        with contextlib.suppress(ProtocolError):
            decoder.feed(bytes(data[: rng.randrange(len(data) + 1)]))
