"""The publishing side of cityhub's MQTT stack: PUBLISH encoding and PUBACK decoding against the
spec's layouts (OASIS MQTT 5.0, 3.3 and 3.4), and the MQTT sink's reconnection backoff against
loopback servers that refuse it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import struct
from collections.abc import AsyncIterator

import pytest

from cityhub.connectors.mqtt.codec import (
    MqttDecoder,
    ProtocolError,
    PubAck,
    encode_publish,
    publish_packet_size,
)
from cityhub.connectors.sinks.errors import DeliveryFailed, FailureKind
from cityhub.connectors.sinks.mqtt import RECONNECT_BASE_S, MqttSink
from cityhub.schemas.settings import MqttSettings

pytestmark = pytest.mark.timeout(20)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_publish_qos1_layout() -> None:
    data = encode_publish("city/air", b'{"v":1}', qos=1, packet_id=0x0102)
    body = b"\x00\x08city/air" + b"\x01\x02" + b"\x00" + b'{"v":1}'
    assert data == b"\x32" + varint(len(body)) + body


def test_publish_qos0_has_no_packet_id_and_retain_sets_bit_0() -> None:
    data = encode_publish("t", b"x", qos=0, retain=True)
    assert data == b"\x31\x05\x00\x01t\x00x"


@pytest.mark.parametrize("payload_bytes", [0, 100, 117, 118, 16_000, 16_384, 2_100_000])
@pytest.mark.parametrize("qos", [0, 1])
def test_the_predicted_size_is_the_encoded_size(payload_bytes: int, qos: int) -> None:
    topic = "cityhub/sub/acme/ü"
    data = encode_publish(topic, b"x" * payload_bytes, qos=qos, packet_id=qos)
    assert publish_packet_size(topic, payload_bytes, qos) == len(data)


@pytest.mark.parametrize(
    ("topic", "qos", "packet_id"),
    [
        ("", 1, 1),
        ("a/+", 1, 1),
        ("a/#", 0, 0),
        ("a\x00b", 0, 0),
        ("x" * 65536, 0, 0),
        ("\ud800", 0, 0),  # a lone surrogate is no UTF-8
        ("t", 1, 0),  # QoS 1 needs a packet id
        ("t", 0, 5),  # QoS 0 has none
        ("t", 1, 65536),
        ("t", 3, 1),
    ],
)
def test_publish_refuses_what_the_spec_forbids(topic: str, qos: int, packet_id: int) -> None:
    with pytest.raises(ValueError):
        encode_publish(topic, b"", qos=qos, packet_id=packet_id)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\x40\x02\x00\x07", PubAck(7, 0)),  # reason and properties left out: Success
        (b"\x40\x03\x00\x07\x87", PubAck(7, 0x87)),
        (b"\x40\x04\x00\x07\x10\x00", PubAck(7, 0x10)),
    ],
)
def test_puback_forms(raw: bytes, expected: PubAck) -> None:
    assert MqttDecoder(publishes=True).feed(raw) == [expected]


def test_puback_with_a_reason_string() -> None:
    reason = b"\x1f" + struct.pack(">H", 6) + b"denied"
    raw = b"\x40" + varint(4 + len(reason)) + b"\x00\x09\x87" + varint(len(reason)) + reason
    [ack] = MqttDecoder(publishes=True).feed(raw)
    assert isinstance(ack, PubAck)
    assert (ack.packet_id, ack.reason_code, ack.properties[0x1F]) == (9, 0x87, "denied")


@pytest.mark.parametrize(
    "raw",
    [
        b"\x40\x01\x00",  # no room for the packet id
        b"\x40\x02\x00\x00",  # packet id 0
        b"\x41\x02\x00\x01",  # flags
        b"\x40\x05\x00\x01\x00\x00\x00",  # stray bytes after the properties
    ],
)
def test_malformed_pubacks_are_protocol_errors(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        MqttDecoder(publishes=True).feed(raw)


def test_a_subscriber_that_never_publishes_refuses_a_puback() -> None:
    with pytest.raises(ProtocolError, match="PUBACK"):
        MqttDecoder().feed(b"\x40\x02\x00\x01")


def test_garbage_to_a_publisher_raises_nothing_but_protocol_error() -> None:
    rng = random.Random(9)
    good = b"".join(
        [b"\x20\x03\x00\x00\x00", b"\x40\x02\x00\x01", b"\x40\x03\x00\x02\x87", b"\xd0\x00"]
    )
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        with contextlib.suppress(ProtocolError):
            MqttDecoder(publishes=True).feed(bytes(data[: rng.randrange(len(data) + 1)]))


# --- reconnection backoff -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def hanging_up(accepted: list[float]) -> AsyncIterator[MqttSettings]:
    """A server that accepts every connection and closes it at once: every attempt fails."""

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(asyncio.get_running_loop().time())
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield MqttSettings(host="127.0.0.1", port=server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def test_publishes_queued_behind_a_failed_attempt_share_it() -> None:
    accepted: list[float] = []
    async with hanging_up(accepted) as settings:
        sink = MqttSink(settings, client_id="backoff-test", timeout=2, rng=random.Random(1))
        try:
            results = await asyncio.gather(
                *(sink.publish("t", b"x") for _ in range(5)), return_exceptions=True
            )
        finally:
            await sink.stop()
    assert len(accepted) == 1  # one attempt, not one per waiting publish
    assert all(
        isinstance(r, DeliveryFailed) and r.retriable and r.kind is FailureKind.CONNECTION
        for r in results
    )


async def test_attempts_after_a_failure_wait_a_growing_jittered_backoff() -> None:
    accepted: list[float] = []
    rng = random.Random(3)
    expected = random.Random(3)
    async with hanging_up(accepted) as settings:
        sink = MqttSink(settings, client_id="backoff-test", timeout=5, rng=rng)
        try:
            for _ in range(4):
                with pytest.raises(DeliveryFailed):
                    await sink.publish("t", b"x")
        finally:
            await sink.stop()
    assert len(accepted) == 4
    for n, (before, after) in enumerate(itertools.pairwise(accepted)):
        ceiling = RECONNECT_BASE_S * 2**n
        drawn = expected.uniform(0.0, ceiling)
        # Never earlier than the drawn wait; the connection itself adds a little.
        assert drawn - 0.01 <= after - before <= drawn + 0.5
