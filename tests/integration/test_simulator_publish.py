"""The simulator against the local Mosquitto (``cityhub stack up``): every message arrives."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid

import aiomqtt
import pytest

from cityhub.schemas.settings import Settings
from cityhub.streams.devtools.simulator import build_fleet, simulate
from cityhub.streams.devtools.simulator.messages import ingest_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SEED = 4242
DEVICES = 20


@pytest.fixture
def settings() -> Settings:
    s = Settings()
    try:
        with socket.create_connection((s.mqtt.host, s.mqtt.port), timeout=1):
            pass
    except OSError:
        pytest.fail(f"no MQTT broker on {s.mqtt.host}:{s.mqtt.port}; run `cityhub stack up`")
    return s


def _expected_topics() -> set[str]:
    topics = set()
    for d in build_fleet(DEVICES, SEED).devices:
        topics.add(ingest_topic(d))
        topics.add(f"v3/{d.application}@gemeente-amsterdam/devices/{d.device_id}/up")
        topics.add(f"application/{d.chirpstack_application_id}/device/{d.dev_eui}/event/up")
    return topics


async def test_simulate_delivers_every_message(settings: Settings) -> None:
    expected = _expected_topics()
    received: list[aiomqtt.Message] = []
    async with aiomqtt.Client(
        settings.mqtt.host,
        settings.mqtt.port,
        identifier=f"cityhub-test-sim-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as sub:
        await sub.subscribe("#", qos=1)

        async def collect() -> None:
            async for message in sub.messages:
                if message.topic.value in expected:
                    received.append(message)
                    if len(received) == 50:
                        return

        collector = asyncio.create_task(collect())
        report = await simulate(settings, DEVICES, 500, count=50, seed=SEED, duplicate_ratio=0.1)
        await asyncio.wait_for(collector, timeout=10)

    assert report.sent == 50
    assert report.uplinks + report.duplicates == 50
    assert sum(report.by_format.values()) == 50
    assert report.rate > 0
    assert len(received) == 50
    for message in received:
        assert message.qos == 1
        assert isinstance(message.payload, bytes)
        json.loads(message.payload)


async def test_simulate_keeps_the_rate(settings: Settings) -> None:
    report = await simulate(settings, 10, 200, duration=1.0, seed=SEED)
    # 200 deadlines fall within the first second; elapsed adds the last acks' round trip.
    assert report.sent == 200
    assert 150 <= report.rate <= 210


async def test_simulate_refuses_a_remote_broker() -> None:
    remote = Settings.model_validate({"mqtt": {"host": "192.0.2.10"}})
    with pytest.raises(ValueError, match="non-loopback"):
        await simulate(remote, 1, 1, count=1)
