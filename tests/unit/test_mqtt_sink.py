"""MqttSink against a scripted fake broker on loopback: what a real Mosquitto will not do on
demand (refuse a message in its PUBACK, drop the connection before the PUBACK, never answer,
announce small limits). The sink publishes over cityhub's own MQTT session and codec."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from cityhub.connectors.sinks.errors import DeliveryFailed, FailureKind
from cityhub.connectors.sinks.mqtt import MqttSink
from cityhub.schemas.settings import MqttSettings

pytestmark = pytest.mark.timeout(30)


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    for _ in range(4):
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    return first, await reader.readexactly(length)


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def connack(reason: int = 0, properties: bytes = b"") -> bytes:
    return packet(0x20, bytes([0, reason]) + varint(len(properties)) + properties)


def puback(packet_id: int, reason: int = 0) -> bytes:
    return packet(0x40, packet_id.to_bytes(2, "big") + bytes([reason, 0]))


@dataclass
class Connect:
    client_id: str
    clean_start: bool
    properties: bytes


@dataclass
class Published:
    topic: str
    payload: bytes
    qos: int
    packet_id: int


# What the broker does with a PUBLISH: a PUBACK reason code, "drop" (close the connection),
# or "ignore" (never answer).
OnPublish = Callable[[Published], "int | str"]


@dataclass
class FakeBroker:
    on_publish: OnPublish = lambda _p: 0
    connack_reason: int = 0
    connack_properties: bytes = b""
    connects: list[Connect] = field(default_factory=list)
    published: list[Published] = field(default_factory=list)
    disconnects: int = 0
    unacked: int = 0
    most_unacked: int = 0
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending: list[asyncio.TimerHandle] = []
        try:
            first, body = await read_packet(reader)
            assert first == 0x10, "CONNECT first"
            self.connects.append(parse_connect(body))
            writer.write(connack(self.connack_reason, self.connack_properties))
            if self.connack_reason >= 0x80:
                await writer.drain()
                return
            for _ in range(10_000):  # bounded: no test sends this many packets
                first, body = await read_packet(reader)
                kind = first >> 4
                if kind == 14:  # DISCONNECT
                    self.disconnects += 1
                    return
                if kind == 12:  # PINGREQ
                    writer.write(b"\xd0\x00")
                    continue
                assert kind == 3, f"unexpected packet type {kind}"
                message = parse_publish(first, body)
                self.published.append(message)
                action = self.on_publish(message)
                if action == "drop":
                    return
                if action == "ignore" or message.qos == 0:
                    continue
                assert isinstance(action, int)
                # Ack a little later, so that several publishes are on the wire at once.
                self.unacked += 1
                self.most_unacked = max(self.most_unacked, self.unacked)
                pending.append(
                    asyncio.get_running_loop().call_later(
                        0.01, self._ack, writer, message.packet_id, action
                    )
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            for handle in pending:
                handle.cancel()
            writer.close()

    def _ack(self, writer: asyncio.StreamWriter, packet_id: int, reason: int) -> None:
        self.unacked -= 1
        if not writer.is_closing():
            writer.write(puback(packet_id, reason))


def parse_connect(body: bytes) -> Connect:
    name_len = int.from_bytes(body[0:2], "big")
    pos = 2 + name_len
    assert body[pos] == 5, "MQTT 5"
    flags = body[pos + 1]
    pos += 4  # level, flags, keepalive
    props_len, props_start = _read_varint(body, pos)
    properties = body[props_start : props_start + props_len]
    pos = props_start + props_len
    id_len = int.from_bytes(body[pos : pos + 2], "big")
    client_id = body[pos + 2 : pos + 2 + id_len].decode()
    return Connect(client_id, bool(flags & 0x02), properties)


def parse_publish(first: int, body: bytes) -> Published:
    qos = (first >> 1) & 0x03
    topic_len = int.from_bytes(body[0:2], "big")
    topic = body[2 : 2 + topic_len].decode()
    pos = 2 + topic_len
    packet_id = 0
    if qos:
        packet_id = int.from_bytes(body[pos : pos + 2], "big")
        pos += 2
    props_len, props_start = _read_varint(body, pos)
    return Published(topic, body[props_start + props_len :], qos, packet_id)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    for _ in range(4):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    return value, pos


@contextlib.asynccontextmanager
async def serving(broker: FakeBroker) -> AsyncIterator[MqttSettings]:
    server = await asyncio.start_server(broker.serve, "127.0.0.1", 0)
    broker.port = server.sockets[0].getsockname()[1]
    try:
        yield MqttSettings(host="127.0.0.1", port=broker.port, keepalive=5)
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def sink_for(
    broker: FakeBroker, **kwargs: float
) -> AsyncIterator[tuple[MqttSink, FakeBroker]]:
    async with serving(broker) as settings:
        sink = MqttSink(settings, client_id="cityhub-sink-test", **kwargs)  # type: ignore[arg-type]
        try:
            yield sink, broker
        finally:
            await sink.stop()


async def publish_fails(
    sink: MqttSink, topic: str = "out/t", payload: bytes = b"{}"
) -> DeliveryFailed:
    with pytest.raises(DeliveryFailed) as caught:
        await sink.publish(topic, payload)
    return caught.value


async def test_qos1_returns_after_the_puback_and_connects_clean() -> None:
    async with sink_for(FakeBroker()) as (sink, broker):
        await sink.start()
        await sink.publish("out/a", b'{"v":1}')
        await sink.publish("out/b", b"x", qos=0)
        await sink.publish("out/c", b"")  # the broker handles a connection's packets in order
        assert [(p.topic, p.payload, p.qos) for p in broker.published] == [
            ("out/a", b'{"v":1}', 1),
            ("out/b", b"x", 0),
            ("out/c", b"", 1),
        ]
        [connect] = broker.connects
        assert connect.client_id == "cityhub-sink-test"
        assert connect.clean_start
        assert connect.properties == b""  # no Session Expiry Interval: MQTT 5 reads it as 0
    await asyncio.sleep(0.05)
    assert broker.disconnects == 1  # stop() sent a normal DISCONNECT


async def test_a_failed_puback_is_a_refusal() -> None:
    async with sink_for(FakeBroker(on_publish=lambda _p: 0x87)) as (sink, _):
        err = await publish_fails(sink)
    assert not err.retriable
    assert err.kind is FailureKind.REFUSED
    assert "Not authorized (0x87)" in str(err)


async def test_quota_exceeded_in_the_puback_is_retriable() -> None:
    async with sink_for(FakeBroker(on_publish=lambda _p: 0x97)) as (sink, _):
        err = await publish_fails(sink)
    assert err.retriable
    assert err.kind is FailureKind.REFUSED


async def test_no_matching_subscribers_is_success() -> None:
    async with sink_for(FakeBroker(on_publish=lambda _p: 0x10)) as (sink, _):
        await sink.publish("out/nobody", b"{}")


async def test_a_connection_lost_before_the_puback_fails_fast_and_the_next_publish_reconnects() -> (
    None
):
    calls = 0

    def first_dropped(_p: Published) -> int | str:
        nonlocal calls
        calls += 1
        return "drop" if calls == 1 else 0

    async with sink_for(FakeBroker(on_publish=first_dropped), timeout=10) as (sink, broker):
        started = time.monotonic()
        err = await publish_fails(sink)
        assert time.monotonic() - started < 2  # not the 10 s timeout
        assert err.retriable
        assert err.kind is FailureKind.CONNECTION

        await sink.publish("out/t", b"again")
        assert len(broker.connects) == 2
        assert all(c.clean_start for c in broker.connects)
        assert broker.published[-1].payload == b"again"


async def test_every_waiting_publish_fails_when_the_connection_drops() -> None:
    async with sink_for(
        FakeBroker(on_publish=lambda p: "drop" if p.payload == b"3" else "ignore"), timeout=10
    ) as (sink, _):
        results = await asyncio.gather(
            *(sink.publish("out/t", str(i).encode()) for i in range(5)), return_exceptions=True
        )
    assert all(isinstance(r, DeliveryFailed) and r.retriable for r in results)


async def test_a_missing_puback_times_out_and_the_connection_is_replaced() -> None:
    calls = 0

    def first_ignored(_p: Published) -> int | str:
        nonlocal calls
        calls += 1
        return "ignore" if calls == 1 else 0

    async with sink_for(FakeBroker(on_publish=first_ignored), timeout=0.3) as (sink, broker):
        started = time.monotonic()
        err = await publish_fails(sink)
        assert 0.25 <= time.monotonic() - started < 1.5
        assert err.retriable
        assert err.kind is FailureKind.TIMEOUT
        await sink.publish("out/t", b"again")
        assert len(broker.connects) == 2


async def test_a_refused_connection_says_why() -> None:
    async with sink_for(FakeBroker(connack_reason=0x86)) as (sink, _):
        with pytest.raises(DeliveryFailed) as caught:
            await sink.start()
    assert not caught.value.retriable
    assert caught.value.kind is FailureKind.REFUSED
    assert "Bad User Name or Password (0x86)" in str(caught.value)


async def test_server_unavailable_is_retriable() -> None:
    async with sink_for(FakeBroker(connack_reason=0x88)) as (sink, _):
        with pytest.raises(DeliveryFailed) as caught:
            await sink.start()
    assert caught.value.retriable


async def test_no_broker_is_a_retriable_connection_failure() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    sink = MqttSink(MqttSettings(host="127.0.0.1", port=port), client_id="cityhub-sink-test")
    try:
        err = await publish_fails(sink)
    finally:
        await sink.stop()
    assert err.retriable
    assert err.kind is FailureKind.CONNECTION


async def test_the_brokers_receive_maximum_bounds_the_messages_in_flight() -> None:
    receive_maximum = b"\x21" + (2).to_bytes(2, "big")
    async with sink_for(FakeBroker(connack_properties=receive_maximum)) as (sink, broker):
        await asyncio.gather(*(sink.publish("out/t", str(i).encode()) for i in range(20)))
    assert len(broker.published) == 20
    assert broker.most_unacked <= 2


async def test_a_message_over_the_brokers_maximum_packet_size_is_refused_unsent() -> None:
    maximum_packet_size = b"\x27" + (200).to_bytes(4, "big")
    async with sink_for(FakeBroker(connack_properties=maximum_packet_size)) as (sink, broker):
        err = await publish_fails(sink, payload=b"x" * 200)
        assert not err.retriable
        assert err.kind is FailureKind.INVALID
        await sink.publish("out/t", b"x" * 100)  # fits, and the connection is still up
        assert [len(p.payload) for p in broker.published] == [100]
        assert len(broker.connects) == 1


@pytest.mark.parametrize("topic", ["", "out/+", "out/#", "out/\x00", "x" * 70_000])
async def test_a_topic_the_broker_would_refuse_is_not_sent(topic: str) -> None:
    async with sink_for(FakeBroker()) as (sink, broker):
        err = await publish_fails(sink, topic=topic)
    assert not err.retriable
    assert err.kind is FailureKind.INVALID
    assert broker.published == []


async def test_qos2_is_a_bug_and_publish_after_stop_too() -> None:
    async with sink_for(FakeBroker()) as (sink, _):
        with pytest.raises(ValueError):
            await sink.publish("out/t", b"", qos=2)
        await sink.stop()
        with pytest.raises(RuntimeError):
            await sink.publish("out/t", b"")
        await sink.stop()  # idempotent


def test_the_password_is_not_in_the_repr() -> None:
    settings = MqttSettings.model_validate({"username": "hub", "password": "s3cret-pw"})
    sink = MqttSink(settings, client_id="cityhub-sink-test")
    assert "s3cret-pw" not in repr(sink)
    assert repr(sink) == "MqttSink('mqtt://127.0.0.1:1883', client_id='cityhub-sink-test')"
