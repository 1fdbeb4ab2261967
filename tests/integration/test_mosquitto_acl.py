"""The shipped Mosquitto ACL on a real broker with authentication on.

A second Mosquitto, started through the stack's own code on a free loopback port with
``deploy/mosquitto/acl.example`` and a password file made here with ``mosquitto_passwd``: its
readiness probe logs in; a network server's user reaches the bridge on its own application's
topic and nowhere else; a plain device publishes only on its own ingest topic; subscribers read
only their tenant's delivery subtree; anonymous clients and wrong passwords are refused; and a
``cityhub bridge`` logged in with ``CITYHUB_MQTT__USERNAME/PASSWORD`` writes the authorised
message to Kafka and never the refused ones. What Mosquitto 2.0.11 does with a refused publish,
as asserted here: MQTT 5 answers PUBACK 0x87 (Not authorized), MQTT 3.1.1 answers a plain PUBACK
and drops the message; either way it never reaches a subscriber.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from cityhub.schemas.settings import MqttSettings, Settings, StackSettings
from cityhub.streams.devtools.stack import stack_down, stack_status, stack_up
from cityhub.streams.devtools.stack.layout import find_deploy_dir
from cityhub.streams.supervisor import free_ports

from .hub import Hub, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ACL_EXAMPLE = find_deploy_dir(None) / "mosquitto" / "acl.example"
BRIDGE = "cityhub-bridge"
TTS_USER = "ns-tts-city-air"
DEVICE = "aq-0042"
SUBSCRIBER = "sub-city"
USERS = (BRIDGE, TTS_USER, "ns-chirpstack-noise", SUBSCRIBER, DEVICE)
OWN_TTS_TOPIC = "v3/city-air@city/devices/aq-1/up"
NOT_AUTHORIZED = 0x87
INGEST_FILTERS = ("v3/+/devices/+/up", "application/+/device/+/event/up", "cityhub/ingest/+")


def _mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    assert os.access(found, os.X_OK), "mosquitto_passwd missing: run deploy/system-deps.sh"
    return found


def _make_password_file(path: Path, passwords: dict[str, str]) -> None:
    """A Mosquitto password file with these users, made by ``mosquitto_passwd`` itself."""
    for i, (user, password) in enumerate(passwords.items()):
        create = ["-c"] if i == 0 else []
        subprocess.run(
            [_mosquitto_passwd(), *create, "-b", str(path), user, password],
            check=True,
            capture_output=True,
        )


def _granted(reason: int | ReasonCode) -> int:
    return reason.value if isinstance(reason, ReasonCode) else reason


@dataclass(frozen=True)
class SecuredBroker:
    settings: Settings
    passwords: dict[str, str]

    @property
    def port(self) -> int:
        return self.settings.stack.mqtt_port

    def client(self, user: str | None, *, v5: bool = True, password: str | None = None) -> Acks:
        return Acks(
            "127.0.0.1",
            self.port,
            identifier=f"acl-{user or 'anonymous'}-{uuid.uuid4().hex[:8]}",
            username=user,
            password=password if password is not None else self.passwords.get(user or ""),
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else True,  # nothing left behind on the broker
        )


class Acks(aiomqtt.Client):
    """aiomqtt's client, keeping each PUBACK's reason code (aiomqtt itself drops it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reasons: dict[int, int] = {}

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        self.reasons[mid] = int(reason_code.value)
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_acked(self, topic: str, payload: bytes) -> int:
        """Publish at QoS 1 and return the PUBACK's reason code (0 under MQTT 3.1.1)."""
        before = set(self.reasons)
        await self.publish(topic, payload, qos=1)
        (mid,) = set(self.reasons) - before
        return self.reasons[mid]


@pytest.fixture
async def broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SecuredBroker]:
    """The second Mosquitto: the example ACL, a password file made with mosquitto_passwd, a free
    port and a state dir of its own. Stopped (and its state purged) at the end."""
    auth = tmp_path_factory.mktemp("mqtt-auth")
    passwords = {user: f"pw-{uuid.uuid4().hex}" for user in USERS}
    password_file = auth / "cityhub.passwd"
    await asyncio.to_thread(_make_password_file, password_file, passwords)
    assert all(p not in password_file.read_text() for p in passwords.values())  # hashed
    kafka_port, controller_port, mqtt_port = free_ports(3, avoid=set())
    settings = Settings(
        stack=StackSettings(
            state_dir=tmp_path_factory.mktemp("stack"),
            kafka_port=kafka_port,
            kafka_controller_port=controller_port,
            mqtt_port=mqtt_port,
            mosquitto_password_file=password_file,
            mosquitto_acl_file=ACL_EXAMPLE,
        ),
        mqtt=MqttSettings(port=mqtt_port, username=BRIDGE, password=SecretStr(passwords[BRIDGE])),
    )
    try:
        status = await stack_up(settings, only=["mosquitto"])  # its probe logs in as the bridge
        assert status.all_serving, status.render()
        yield SecuredBroker(settings, passwords)
    finally:
        await stack_down(settings, purge=True, only=["mosquitto"])


async def _drain(
    client: aiomqtt.Client, until: bytes, timeout: float = 10.0
) -> list[tuple[str, bytes]]:
    """What ``client`` receives up to and including the message whose payload is ``until``."""
    got: list[tuple[str, bytes]] = []
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            payload = message.payload
            assert isinstance(payload, bytes)
            got.append((str(message.topic), payload))
            if payload == until:
                return got
    raise AssertionError("unreachable")


async def test_publishers_reach_the_bridge_only_on_their_own_topics(broker: SecuredBroker) -> None:
    async with broker.client(BRIDGE) as bridge:
        for ingest in INGEST_FILTERS:
            (granted,) = await bridge.subscribe(ingest, qos=1)
            assert _granted(granted) == 1
        refused: dict[str, int] = {}
        for v5 in (True, False):
            version = "5" if v5 else "3.1.1"
            async with broker.client(TTS_USER, v5=v5) as tts:
                assert await tts.publish_acked(OWN_TTS_TOPIC, f"tts own {version}".encode()) == 0
                refused[f"tts other app {version}"] = await tts.publish_acked(
                    "v3/other-app@city/devices/aq-1/up", b"spoof"
                )
                refused[f"tts other tenant {version}"] = await tts.publish_acked(
                    "v3/city-air@other/devices/aq-1/up", b"spoof"
                )
                refused[f"tts as a plain device {version}"] = await tts.publish_acked(
                    "cityhub/ingest/aq-0001", b"spoof"
                )
            async with broker.client(DEVICE, v5=v5) as device:
                own = f"device own {version}".encode()
                assert await device.publish_acked(f"cityhub/ingest/{DEVICE}", own) == 0
                refused[f"device as another {version}"] = await device.publish_acked(
                    "cityhub/ingest/aq-0001", b"spoof"
                )
                refused[f"device as tts {version}"] = await device.publish_acked(
                    OWN_TTS_TOPIC, b"spoof"
                )
        # Mosquitto 2.0.11: MQTT 5 says 0x87, MQTT 3.1.1 acknowledges and drops.
        assert refused == {name: NOT_AUTHORIZED if name.endswith(" 5") else 0 for name in refused}
        # The broker handled every publish above before answering it: a last message of the TTS
        # user, once received, proves that nothing refused is still on its way.
        async with broker.client(TTS_USER) as tts:
            assert await tts.publish_acked(OWN_TTS_TOPIC, b"sentinel") == 0
        received = await _drain(bridge, until=b"sentinel")
    assert sorted(received) == sorted(
        [
            (OWN_TTS_TOPIC, b"tts own 5"),
            (OWN_TTS_TOPIC, b"tts own 3.1.1"),
            (f"cityhub/ingest/{DEVICE}", b"device own 5"),
            (f"cityhub/ingest/{DEVICE}", b"device own 3.1.1"),
            (OWN_TTS_TOPIC, b"sentinel"),
        ]
    )


async def test_only_the_bridge_reads_ingest_and_subscribers_only_their_subtree(
    broker: SecuredBroker,
) -> None:
    async with broker.client(SUBSCRIBER) as subscriber, broker.client(TTS_USER) as eavesdropper:
        # Mosquitto 2.0 grants the subscriptions; the ACL then withholds every message.
        for topic in (*INGEST_FILTERS, "cityhub/sub/harbour/#", "cityhub/sub/city/#"):
            (granted,) = await subscriber.subscribe(topic, qos=1)
            assert _granted(granted) == 1
        for topic in INGEST_FILTERS:
            await eavesdropper.subscribe(topic, qos=1)
        async with broker.client(TTS_USER) as tts:
            assert await tts.publish_acked(OWN_TTS_TOPIC, b"uplink") == 0
        async with broker.client(DEVICE) as device:
            assert await device.publish_acked(f"cityhub/ingest/{DEVICE}", b"reading") == 0
        async with broker.client(BRIDGE) as hub:  # the hub's MQTT deliveries
            assert await hub.publish_acked("cityhub/sub/harbour/feed", b"harbour") == 0
            assert await hub.publish_acked("cityhub/sub/city/feed", b"city") == 0
        assert await _drain(subscriber, until=b"city") == [("cityhub/sub/city/feed", b"city")]
        # the eavesdropper got nothing: its own next message on a topic it may not read, too
        async with broker.client(TTS_USER) as tts:
            assert await tts.publish_acked(OWN_TTS_TOPIC, b"second") == 0
        with pytest.raises(TimeoutError):
            await _drain(eavesdropper, until=b"second", timeout=1.5)
        # only subscribers of tenant city: another user may not write its subtree either
        async with broker.client(TTS_USER) as tts:
            assert await tts.publish_acked("cityhub/sub/city/feed", b"forged") == NOT_AUTHORIZED


@pytest.mark.parametrize("v5", [True, False])
async def test_anonymous_clients_and_wrong_passwords_are_refused(
    broker: SecuredBroker, v5: bool
) -> None:
    for user, password in ((None, None), (BRIDGE, "wrong"), ("nobody", "x")):
        with pytest.raises(aiomqtt.MqttCodeError) as info:
            async with broker.client(user, v5=v5, password=password):
                pass
        rc = info.value.rc
        assert isinstance(rc, ReasonCode)
        assert rc.value == NOT_AUTHORIZED  # Mosquitto 2.0.11 says so for both failures


async def test_the_status_probe_logs_in_and_says_when_it_cannot(broker: SecuredBroker) -> None:
    status = await stack_status(broker.settings)
    assert status.service("mosquitto").serving, status.render()
    wrong = broker.settings.model_copy(
        update={"mqtt": broker.settings.mqtt.model_copy(update={"password": SecretStr("no")})}
    )
    refused = (await stack_status(wrong)).service("mosquitto")
    assert not refused.serving
    assert "refused user 'cityhub-bridge'" in refused.detail
    assert "CITYHUB_MQTT__PASSWORD" in refused.detail


async def test_a_logged_in_bridge_writes_the_authorised_message_to_kafka(
    broker: SecuredBroker, tmp_path: Path
) -> None:
    hub = Hub(
        tmp_path,
        command="bridge",
        extra_env={
            "CITYHUB_MQTT__PORT": str(broker.port),
            "CITYHUB_MQTT__USERNAME": BRIDGE,
            "CITYHUB_MQTT__PASSWORD": broker.passwords[BRIDGE],
            "CITYHUB_MQTT__SESSION_EXPIRY_SECONDS": "60",
        },
    )
    hub.start()
    try:
        async with broker.client(TTS_USER) as tts:
            await tts.publish_acked("v3/other-app@city/devices/aq-1/up", b'{"spoof": 1}')
            assert await tts.publish_acked(OWN_TTS_TOPIC, b'{"genuine": 1}') == 0
        async with broker.client(DEVICE) as device:
            await device.publish_acked("cityhub/ingest/aq-0001", b'{"spoof": 2}')
            assert await device.publish_acked(f"cityhub/ingest/{DEVICE}", b'{"t": 1}') == 0
        raw = await read_topic(
            hub.topics["raw"],
            until=lambda r: {x["topic"] for x in r} >= {OWN_TTS_TOPIC, f"cityhub/ingest/{DEVICE}"},
            timeout=60,
        )
        assert sorted(x["topic"] for x in raw) == sorted(
            [OWN_TTS_TOPIC, f"cityhub/ingest/{DEVICE}"]
        ), hub.log_tail()
    finally:
        hub.stop()
