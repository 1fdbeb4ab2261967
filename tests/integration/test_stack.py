"""The local stack for real: every service serves, ``up`` is idempotent, data survives a restart.

The shared stack on the default ports is left running (other tests use it); the down/up cycle
runs a second stack in its own state dir on its own ports.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cityhub.schemas.settings import Settings, StackSettings
from cityhub.streams.devtools.stack import StackStatus, stack_down, stack_status, stack_up
from cityhub.streams.supervisor import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
async def shared_stack() -> tuple[Settings, StackStatus]:
    settings = Settings()
    return settings, await stack_up(settings)


async def _kafka_round_trip(bootstrap: str) -> None:
    topic = f"test.stack.{secrets.token_hex(4)}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"value-{i}".encode(), key=f"device-{i}".encode())
    finally:
        await producer.stop()
    await _expect_records(bootstrap, topic, {f"value-{i}".encode() for i in range(10)})
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def _expect_records(bootstrap: str, topic: str, expected: set[bytes]) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-stack-{secrets.token_hex(4)}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        seen: set[bytes] = set()
        async with asyncio.timeout(30):
            while not expected <= seen:
                batch = await consumer.getmany(timeout_ms=1000)
                seen.update(r.value for records in batch.values() for r in records if r.value)
    finally:
        await consumer.stop()


async def _mqtt_qos1_round_trip(port: int) -> None:
    topic = f"cityhub/test/stack/{secrets.token_hex(4)}"
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(topic, qos=1)
        await client.publish(topic, b"hello", qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                assert message.payload == b"hello"
                assert message.qos == 1
                break


async def test_up_leaves_every_service_serving(
    shared_stack: tuple[Settings, StackStatus],
) -> None:
    settings, up = shared_stack
    status = await stack_status(settings)

    assert up.all_serving, up.render()
    assert status.all_serving, status.render()
    assert {s.name for s in status.services} == {"kafka", "mosquitto", "postgres"}
    assert all(s.running for s in status.services)
    assert status.service("kafka").address == "127.0.0.1:9092"
    assert status.service("mosquitto").address == "127.0.0.1:1883"
    assert status.service("postgres").address == "127.0.0.1:5434"


async def test_up_again_changes_nothing(
    shared_stack: tuple[Settings, StackStatus], caplog: pytest.LogCaptureFixture
) -> None:
    settings, first = shared_stack
    caplog.set_level(logging.INFO, logger="cityhub.stack")

    again = await stack_up(settings)

    assert [s.pid for s in again.services] == [s.pid for s in first.services]
    assert "nothing to do" in caplog.text
    assert "started (pid" not in caplog.text


async def test_kafka_produce_consume(shared_stack: tuple[Settings, StackStatus]) -> None:
    settings, _ = shared_stack
    await _kafka_round_trip(f"127.0.0.1:{settings.stack.kafka_port}")


async def test_mosquitto_qos1_pub_sub(shared_stack: tuple[Settings, StackStatus]) -> None:
    settings, _ = shared_stack
    await _mqtt_qos1_round_trip(settings.stack.mqtt_port)


def _pid_files(state_dir: Path) -> list[Path]:
    return list(state_dir.rglob("*.pid"))


def reachable_state_dir() -> Path:
    """A fresh state dir that PostgreSQL's own user can enter (pytest's tmp folders are 0700 to
    root, and the server runs as ``postgres`` when the tests run as root)."""
    path = Path(tempfile.mkdtemp(prefix="cityhub-stack-"))
    path.chmod(0o755)
    return path


@pytest.fixture
async def private_stack() -> AsyncIterator[Settings]:
    """A second stack: its own state dir and ports, so the shared one is never touched."""
    kafka_port, controller_port, mqtt_port, postgres_port = free_ports(4, avoid=set())
    state_dir = reachable_state_dir()
    settings = Settings(
        stack=StackSettings(
            state_dir=state_dir,
            kafka_port=kafka_port,
            kafka_controller_port=controller_port,
            mqtt_port=mqtt_port,
            postgres_port=postgres_port,
            kafka_heap="512m",
        )
    )
    try:
        yield settings
    finally:
        await stack_down(settings, purge=True)
        shutil.rmtree(state_dir, ignore_errors=True)


def _postgres_login(settings: Settings) -> psycopg.Connection[tuple[object, ...]]:
    password = (Path(settings.stack.state_dir) / "postgres" / "password").read_text().strip()
    return psycopg.connect(
        host="127.0.0.1",
        port=settings.stack.postgres_port,
        dbname="cityhub",
        user="cityhub",
        password=password,
        autocommit=True,
    )


async def test_down_then_up_keeps_data_and_purge_drops_it(private_stack: Settings) -> None:
    settings = private_stack
    bootstrap = f"127.0.0.1:{settings.stack.kafka_port}"
    state_dir = Path(settings.stack.state_dir)
    assert (await stack_up(settings)).all_serving

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait("test.stack.kept", b"survives a restart")
    finally:
        await producer.stop()
    async with aiomqtt.Client("127.0.0.1", settings.stack.mqtt_port) as client:
        await client.publish("cityhub/test/kept", b"retained", qos=1, retain=True)
    with _postgres_login(settings) as conn:
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('survives a restart')")

    await stack_down(settings)
    stopped = await stack_status(settings)
    assert not stopped.all_serving
    assert not any(s.running for s in stopped.services)
    assert not _pid_files(state_dir)
    await stack_down(settings)  # idempotent

    assert (await stack_up(settings)).all_serving
    await _expect_records(bootstrap, "test.stack.kept", {b"survives a restart"})
    async with aiomqtt.Client("127.0.0.1", settings.stack.mqtt_port) as client:
        await client.subscribe("cityhub/test/kept", qos=1)
        async with asyncio.timeout(10):
            message = await anext(aiter(client.messages))
        assert message.payload == b"retained"
    with _postgres_login(settings) as conn:
        rows = conn.execute("SELECT note FROM kept").fetchall()
        assert rows == [("survives a restart",)]

    await stack_down(settings, purge=True)
    assert not (state_dir / "kafka" / "data").exists()
    assert not (state_dir / "mosquitto").exists()
    assert not (state_dir / "postgres").exists()
    assert (state_dir / "kafka" / "libs").is_dir()  # the jars are kept
