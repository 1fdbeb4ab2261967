"""The whole hub over the secure broker: ``cityhub run`` with only the settings that
``stack up --secure`` wrote (``clients/mqtt.env``: TLS, the stack's CA, the bridge's and the
deliveries' users by password file, on the hub's own listener), the plain stack's Kafka. A plain
sensor, added to the tenants' listener's password file the way docs/security.md says
(``mosquitto_passwd`` and SIGHUP), publishes its readings over TLS as itself on that listener;
the bridge ingests them, the worker normalises and
routes them, and the delivery process publishes them over TLS as ``cityhub-delivery`` to the
tenant's MQTT subscription, where the tenant's subscriber user reads them; the bridge process's
exporter of the broker's $SYS figures reads them as the bridge's user. Mosquitto's log says which
user each of the hub's connections logged in as."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from cityhub.streams.devtools.simulator import build_fleet
from cityhub.streams.devtools.simulator.fleet import Device, Format
from cityhub.streams.devtools.simulator.registration import CLASSIFICATION
from cityhub.streams.devtools.simulator.traffic import Outgoing, Traffic
from cityhub.streams.devtools.stack.mosquitto import secure_files
from cityhub.streams.devtools.stack.mosquitto_access import (
    BRIDGE_USER,
    DELIVERY_USER,
    subscriber_user,
)

from .subscribers import wait_for
from .test_secure_mqtt import SecureBroker, broker
from .test_subscriptions_e2e import DEVICES, running_hub

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

__all__ = ["broker"]  # the module's secure Mosquitto (a fixture of its own here)


def _plain_public_sensor() -> Device:
    """A simulated plain MQTT sensor whose readings are public (no processing activity)."""
    return next(
        d
        for d in build_fleet(DEVICES).devices
        if d.format in (Format.SENML, Format.JSON) and CLASSIFICATION[d.kind].value == "public"
    )


def _messages_of(device: Device, count: int) -> list[Outgoing]:
    """The next ``count`` messages the simulated fleet would send for ``device``."""
    traffic = Traffic(build_fleet(DEVICES))
    now = time.time()
    found: list[Outgoing] = []
    for i in range(100 * DEVICES):
        message = traffic.next_message(now + i * 0.01)
        if message.device_id == device.device_id:
            found.append(message)
            if len(found) == count:
                return found
    raise AssertionError(f"the fleet sent fewer than {count} messages of {device.device_id}")


def _add_broker_user(broker: SecureBroker, user: str, password: str) -> None:
    """Add ``user`` to the running secure broker as docs/security.md says: mosquitto_passwd on
    the tenants' listener's password file, then SIGHUP, which makes Mosquitto reread the
    password and ACL files."""
    password_file = secure_files(broker.layout).password_file
    subprocess.run(
        ["mosquitto_passwd", "-b", str(password_file), user, password],
        check=True,
        capture_output=True,
    )
    os.kill(int(broker.layout.mosquitto_pid.read_text().strip()), signal.SIGHUP)


async def test_the_hub_ingests_and_delivers_over_tls_as_its_own_users(
    broker: SecureBroker, tmp_path: Path
) -> None:
    sensor = _plain_public_sensor()
    sensor_password = f"pw-{uuid.uuid4().hex}"
    _add_broker_user(broker, sensor.device_id, sensor_password)
    env = {**broker.hub_env(), "CITYHUB_MQTT__SESSION_EXPIRY_SECONDS": "60"}
    async with running_hub(tmp_path, **env) as (hub, api):
        # /healthz may answer before the API's registry view has read the key made just before
        # the start (seen once: 401 unknown API key): wait until the key is known.
        async def key_known() -> bool:
            return (await api.call("GET", "/tenants/demo/subscriptions", "demo"))[0] == 200

        deadline = time.monotonic() + 30
        while not await key_known():
            assert time.monotonic() < deadline, "the API never knew the demo key"
            await asyncio.sleep(0.3)
        await api.subscribe(
            "demo",
            "demo",
            {
                "id": "secure-mqtt",
                "name": "Over TLS",
                "filter": {"device_types": [sensor.kind.value]},
                "delivery": {"kind": "mqtt", "topic": "secure"},
            },
        )
        assert await wait_for(lambda: hub.metric("cityhub_routed_subscriptions") == 1, 30)
        delivered: list[dict[str, object]] = []
        async with broker.client(subscriber_user("demo")) as subscriber:
            await subscriber.subscribe("cityhub/sub/demo/secure", qos=1)
            async with broker.client(sensor.device_id, password=sensor_password) as device:
                for message in _messages_of(sensor, 3):
                    assert await device.publish_acked(message.topic, message.payload) == 0
            async with asyncio.timeout(90):
                async for received in subscriber.messages:
                    assert isinstance(received.payload, bytes)
                    delivered.append(json.loads(received.payload))
                    if len(delivered) >= 3:
                        break
        assert {d["device_id"] for d in delivered} == {sensor.device_id}, hub.log_tail()
        # The bridge process's second connection (part E's exporter of the broker's figures)
        # reads $SYS as the bridge's user: at least it and the bridge are connected. Mosquitto
        # publishes $SYS every 10 s, so this may wait that long after the broker's start.
        assert await wait_for(
            lambda: hub.metric("cityhub_mqtt_broker_clients_connected") >= 2, 30
        ), hub.log_tail()
    # Who logged in as whom: Mosquitto's notice of each new client names its user.
    connections = [
        line
        for line in broker.layout.mosquitto_log.read_text().splitlines()
        if "New client" in line
    ]
    bridge_id, delivery_id = f"{hub.prefix}-bridge", f"{hub.prefix}-bridge-sub-demo.secure-mqtt"
    assert any(f" as {bridge_id} " in c and f"u'{BRIDGE_USER}'" in c for c in connections)
    assert any(f" as {delivery_id}" in c and f"u'{DELIVERY_USER}'" in c for c in connections), (
        connections
    )
