"""MqttSession against a scripted fake broker on loopback: the failures a real Mosquitto will not
produce on demand (refusal, a broker DISCONNECT, garbage, a silent broker, a QoS 0 flood)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from cityhub.connectors.mqtt.session import (
    MqttConnectionLost,
    MqttConnectRefused,
    MqttSession,
    MqttSubscribeFailed,
)
from cityhub.schemas.settings import MqttSettings, MqttSubscription

pytestmark = pytest.mark.timeout(20)

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    return first, await reader.readexactly(length)


CONNACK_OK = b"\x20\x03\x00\x00\x00"


@contextlib.asynccontextmanager
async def fake_broker(script: Script) -> AsyncIterator[MqttSettings]:
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            first, _ = await read_packet(reader)
            assert first == 0x10
            await script(reader, writer)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield MqttSettings(port=port, client_id="fake")
    finally:
        server.close()
        if handlers:
            await asyncio.wait(handlers, timeout=5)
        await server.wait_closed()


async def test_a_refused_connect_names_its_reason() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x20\x03\x00\x87\x00")
        await reader.read()

    async with fake_broker(refuse) as settings:
        with pytest.raises(MqttConnectRefused, match=r"Not authorized \(0x87\)") as info:
            async with MqttSession(settings, receive_maximum=10):
                pass
    assert isinstance(info.value, ConnectionRefusedError)
    assert info.value.reason_code == 0x87
    assert not info.value.retriable


async def test_a_refused_subscription_raises() -> None:
    async def deny(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_OK)
        first, body = await read_packet(reader)
        assert first == 0x82
        writer.write(b"\x90\x04" + body[:2] + b"\x00\x87")
        await reader.read()

    async with fake_broker(deny) as settings, MqttSession(settings, receive_maximum=10) as s:
        with pytest.raises(MqttSubscribeFailed, match="Not authorized"):
            await s.subscribe(MqttSubscription(filter="a/#", format="cityhub-json"))


async def messages_until_lost(session: MqttSession, got: list[tuple[bytes, int]]) -> None:
    """Takes messages (acking each) into ``got`` until ``messages()`` raises."""
    async with contextlib.aclosing(session.messages()) as messages:
        async for m in messages:
            got.append((m.payload, m.qos))
            assert session.ack(m.mid, m.qos)


async def test_a_broker_disconnect_ends_messages_with_its_reason() -> None:
    async def kick(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_OK + b"\xe0\x01\x8e")
        await reader.read()

    async with fake_broker(kick) as settings, MqttSession(settings, receive_maximum=10) as s:
        with pytest.raises(MqttConnectionLost, match="Session taken over") as info:
            await messages_until_lost(s, [])
        assert isinstance(info.value, ConnectionResetError)  # the bridge catches OSError
        assert s.ack(1, 1) is False


async def test_garbage_from_the_broker_drops_the_connection() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_OK)
        await asyncio.sleep(0.1)
        writer.write(b"\x30\x05\x00\x01\xff\x00z")
        await reader.read()

    async with fake_broker(garbage) as settings, MqttSession(settings, receive_maximum=10) as s:
        with pytest.raises(MqttConnectionLost, match="UTF-8"):
            await messages_until_lost(s, [])


async def test_a_silent_broker_fails_the_keepalive() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Server Keep Alive 1 s overrides the client's; then never answer PINGREQ.
        writer.write(b"\x20\x06\x00\x00\x03\x13\x00\x01")
        await reader.read()

    async with fake_broker(silent) as settings, MqttSession(settings, receive_maximum=10) as s:
        with pytest.raises(MqttConnectionLost, match="no PINGRESP"):
            await messages_until_lost(s, [])


async def test_qos2_pubrel_is_answered_and_a_duplicate_not_delivered_twice() -> None:
    sent: list[bytes] = []

    async def qos2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        publish = b"\x34\x08\x00\x01t\x00\x05\x00hi"
        writer.write(CONNACK_OK + publish)
        sent.append((await read_packet(reader))[1])  # PUBREC
        writer.write(b"\x3c\x08\x00\x01t\x00\x05\x00hi")  # a DUP resend before PUBREL
        sent.append((await read_packet(reader))[1])  # PUBREC again
        writer.write(b"\x62\x02\x00\x05")
        sent.append((await read_packet(reader))[1])  # PUBCOMP
        writer.write(b"\xe0\x00")
        await reader.read()

    async with fake_broker(qos2) as settings, MqttSession(settings, receive_maximum=10) as s:
        got: list[tuple[bytes, int]] = []
        with pytest.raises(MqttConnectionLost):
            await messages_until_lost(s, got)
    assert got == [(b"hi", 2)]
    assert sent == [b"\x00\x05"] * 3


async def test_a_qos0_flood_pauses_reading_until_drained() -> None:
    count = 500
    publish = b"\x30\x06\x00\x01t\x00ab"

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_OK)
        for _ in range(count // 10):  # in many reads, as a real flood arrives
            writer.write(publish * 10)
            await writer.drain()
            await asyncio.sleep(0.002)
        await reader.read()

    async with fake_broker(flood) as settings, MqttSession(settings, receive_maximum=5) as s:
        await asyncio.sleep(0.5)
        assert s._conn is not None
        # Above 4 x receive maximum: reading stops, however much more the socket holds.
        assert s._conn.reading_paused
        assert 20 < s.queued < count
        taken = 0
        async with contextlib.aclosing(s.messages()) as messages:
            async for m in messages:
                assert m.payload == b"ab"
                taken += 1
                if taken == count:
                    break
        assert taken == count
