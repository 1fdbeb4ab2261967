"""MqttSink against the local Mosquitto (``cityhub stack up``): QoS 1 delivery to a subscriber,
no session left behind, reconnection after a broken connection (through a loopback proxy the
test can cut). Each test has its own client id and topic root."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator

import aiomqtt
import pytest

from cityhub.connectors.mqtt.session import MqttSession, end_session
from cityhub.connectors.sinks.errors import DeliveryFailed, FailureKind
from cityhub.connectors.sinks.mqtt import MqttSink
from cityhub.schemas.settings import MqttSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def settings() -> MqttSettings:
    s = MqttSettings()
    try:
        with socket.create_connection((s.host, s.port), timeout=1):
            pass
    except OSError:
        pytest.fail(f"no MQTT broker on {s.host}:{s.port}; run `cityhub stack up`")
    return s


@pytest.fixture
def client_id() -> str:
    return f"sinktest-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def root() -> str:
    return f"sinktest/{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def subscriber(settings: MqttSettings, topic_filter: str) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        settings.host,
        settings.port,
        identifier=f"sinktest-sub-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        await client.subscribe(topic_filter, qos=1)
        yield client


async def receive(
    client: aiomqtt.Client, count: int, timeout: float = 10.0
) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            got.append(message)
            if len(got) == count:
                break
    return got


async def session_present(settings: MqttSettings, client_id: str) -> bool:
    """Whether the broker still holds a session for ``client_id``. Asks without creating one:
    no Clean Start (so an existing session would be resumed and reported), expiry 0."""
    probe = settings.model_copy(update={"client_id": client_id})
    async with MqttSession(
        probe, receive_maximum=1, clean_start=False, session_expiry_seconds=0
    ) as session:
        assert session.connack is not None
        return session.connack.session_present


async def test_qos1_publish_reaches_a_subscriber_and_stop_leaves_no_session(
    settings: MqttSettings, client_id: str, root: str
) -> None:
    async with subscriber(settings, f"{root}/#") as sub:
        sink = MqttSink(settings, client_id=client_id)
        await sink.start()
        try:
            await sink.publish(f"{root}/city/air", b'{"quantity":"pm2_5","value":8.1}')
            await sink.publish(f"{root}/city/noise", b'{"quantity":"laeq","value":61}')
        finally:
            await sink.stop()
        got = await receive(sub, 2)

    assert [(m.topic.value, m.payload, m.qos) for m in got] == [
        (f"{root}/city/air", b'{"quantity":"pm2_5","value":8.1}', 1),
        (f"{root}/city/noise", b'{"quantity":"laeq","value":61}', 1),
    ]
    assert not await session_present(settings, client_id)


async def test_concurrent_publishes_all_arrive(
    settings: MqttSettings, client_id: str, root: str
) -> None:
    async with subscriber(settings, f"{root}/#") as sub:
        sink = MqttSink(settings, client_id=client_id, max_inflight=16)
        try:
            await asyncio.gather(*(sink.publish(f"{root}/n", str(i).encode()) for i in range(200)))
        finally:
            await sink.stop()
        got = await receive(sub, 200)
    assert sorted(int(m.payload) for m in got if isinstance(m.payload, bytes)) == list(range(200))


class CuttableProxy:
    """A loopback TCP proxy to the broker whose connections the test can hold and cut."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.connections = 0
        self.hold = False
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._pairs.append((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer, upward=True),
            self._pipe(up_reader, writer, upward=False),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upward: bool
    ) -> None:
        try:
            for _ in range(100_000):  # bounded; a test moves far fewer chunks
                data = await reader.read(65536)
                if not data:
                    break
                if upward and self.hold:
                    continue  # swallowed: the broker never sees it, so no PUBACK comes
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def cut(self) -> None:
        for client_side, broker_side in self._pairs:
            client_side.close()
            broker_side.close()
        self._pairs.clear()

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def proxy(settings: MqttSettings) -> AsyncIterator[CuttableProxy]:
    p = CuttableProxy((settings.host, settings.port))
    await p.start()
    yield p
    await p.stop()


async def wait_disconnected(sink: MqttSink) -> None:
    async with asyncio.timeout(5):
        while sink.connected:
            await asyncio.sleep(0.01)


async def test_after_a_broken_connection_the_next_publish_reconnects(
    settings: MqttSettings, client_id: str, root: str, proxy: CuttableProxy
) -> None:
    via_proxy = settings.model_copy(update={"host": "127.0.0.1", "port": proxy.port})
    async with subscriber(settings, f"{root}/#") as sub:
        sink = MqttSink(via_proxy, client_id=client_id, timeout=5)
        try:
            await sink.publish(f"{root}/t", b"before")
            proxy.cut()
            await wait_disconnected(sink)
            await sink.publish(f"{root}/t", b"after")
        finally:
            await sink.stop()
        got = await receive(sub, 2)
    assert [m.payload for m in got] == [b"before", b"after"]
    assert proxy.connections == 2
    assert not await session_present(settings, client_id)


async def test_a_publish_in_flight_when_the_connection_breaks_fails_retriably(
    settings: MqttSettings, client_id: str, root: str, proxy: CuttableProxy
) -> None:
    via_proxy = settings.model_copy(update={"host": "127.0.0.1", "port": proxy.port})
    sink = MqttSink(via_proxy, client_id=client_id, timeout=10)
    try:
        await sink.start()
        proxy.hold = True
        pending = asyncio.create_task(sink.publish(f"{root}/t", b"lost"))
        await asyncio.sleep(0.2)
        assert not pending.done()  # waiting for its PUBACK
        loop = asyncio.get_running_loop()
        cut_at = loop.time()
        proxy.cut()
        with pytest.raises(DeliveryFailed) as caught:
            await pending
        assert loop.time() - cut_at < 2  # noticed at once, not after the 10 s timeout
        assert caught.value.retriable
        assert caught.value.kind is FailureKind.CONNECTION

        proxy.hold = False
        await sink.publish(f"{root}/t", b"retried")
    finally:
        await sink.stop()
    assert not await session_present(settings, client_id)


async def test_the_session_probe_sees_a_session_when_there_is_one(
    settings: MqttSettings, client_id: str
) -> None:
    # What the other tests' `not session_present(...)` is worth: a persistent session shows.
    persistent = settings.model_copy(update={"client_id": client_id})
    try:
        async with MqttSession(
            persistent, receive_maximum=1, clean_start=True, session_expiry_seconds=60
        ):
            pass
        assert await session_present(settings, client_id)
    finally:
        await end_session(persistent)
