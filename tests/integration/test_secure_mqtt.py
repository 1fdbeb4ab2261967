"""The secure stack's Mosquitto (``StackSettings.secure``) on a real broker.

One broker for the module, started through the stack's own code in secure mode (a temp state
dir, free loopback ports, stopped and purged at the end): TLS listeners only, the tenants' and
the hub's, the stack's CA and server certificate, generated users in a password file per
listener hashed by ``mosquitto_passwd``, and the ACL rendered from
``deploy/mosquitto/acl.secure.template``. A tenant's user cannot take the bridge's client id nor
log in on the hub's listener. Over it: a ``cityhub bridge`` with
the settings the stack wrote (TLS + the bridge's user) writes a tenant's uplink to the plain
stack's Kafka; clients that do not trust the CA, or speak plain TCP, or give a wrong password,
are refused, and the bridge says why, counts it and backs off; the ACL holds from the tenants'
side; the MQTT delivery sink publishes over TLS as its own user; and Debian's
``mosquitto_pub``/``mosquitto_sub`` get in with ``--cafile`` and not without.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from cityhub.connectors.mqtt import metrics
from cityhub.connectors.mqtt.bridge import MqttBridge
from cityhub.connectors.mqtt.failures import session_failure
from cityhub.connectors.mqtt.session import (
    MqttConnectionLost,
    MqttConnectRefused,
    MqttSession,
    end_session,
    tls_context,
)
from cityhub.connectors.sinks import subscription_models
from cityhub.connectors.sinks.base import Item
from cityhub.connectors.sinks.errors import DeliveryFailed, FailureKind
from cityhub.connectors.sinks.kinds.mqtt import MqttTarget, delivery_broker_settings
from cityhub.connectors.sinks.mqtt import MqttSink
from cityhub.schemas.errors import StackError
from cityhub.schemas.settings import MqttSettings, MqttSubscription, Settings, StackSettings
from cityhub.schemas.subscription import build_subscription
from cityhub.streams.devtools.stack import stack_down, stack_up
from cityhub.streams.devtools.stack.layout import StackLayout
from cityhub.streams.devtools.stack.mosquitto import (
    hub_env_file,
    passwords_dir,
    probe_secure_mqtt,
    secure_files,
)
from cityhub.streams.devtools.stack.mosquitto_access import (
    BRIDGE_USER,
    DELIVERY_USER,
    device_topic,
    device_user,
    subscriber_user,
)
from cityhub.streams.devtools.stack.probes import AccessRefused
from cityhub.streams.supervisor import free_ports

from .hub import Hub, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

NOT_AUTHORIZED = 0x87
LOGIN_REFUSED = frozenset({0x86, 0x87})


@dataclass(frozen=True)
class SecureBroker:
    settings: Settings
    layout: StackLayout

    @property
    def port(self) -> int:
        """The tenants' listener."""
        return self.settings.stack.mqtt_tls_port

    @property
    def hub_port(self) -> int:
        """The hub's own listener (its bridge and delivery users only)."""
        return self.settings.stack.mqtt_hub_tls_port

    def port_of(self, user: str) -> int:
        """The listener ``user`` logs in on: the hub's for the hub's users, else the tenants'."""
        return self.hub_port if user in (BRIDGE_USER, DELIVERY_USER) else self.port

    @property
    def ca(self) -> Path:
        return secure_files(self.layout).tls.ca_cert

    def password(self, user: str) -> str:
        return (passwords_dir(self.layout) / user).read_text().strip()

    def hub_env(self) -> dict[str, str]:
        """The ``CITYHUB_MQTT__*`` lines ``stack up --secure`` wrote for the hub."""
        lines = hub_env_file(self.layout).read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line)

    def mqtt(self, user: str, **changes: Any) -> MqttSettings:
        """cityhub's MQTT settings for ``user`` on this broker (TLS, the stack's CA)."""
        base = MqttSettings(
            host="127.0.0.1",
            port=self.port_of(user),
            tls=True,
            tls_ca_file=self.ca,
            username=user,
            password=SecretStr(self.password(user)),
            client_id=f"sec-{user}-{uuid.uuid4().hex[:8]}",
        )
        return base.model_copy(update=changes)

    def client(
        self,
        user: str,
        *,
        ca: Path | None = None,
        password: str | None = None,
        port: int | None = None,
        identifier: str | None = None,
    ) -> Acks:
        """A third-party (aiomqtt/paho) MQTT 5 client over TLS, trusting the stack's CA, as
        ``user`` with ``password`` (default: the stack's generated one), on ``port`` (default:
        the listener of ``user``), with the client id ``identifier`` (default: a fresh one)."""
        return Acks(
            "127.0.0.1",
            self.port_of(user) if port is None else port,
            identifier=identifier or f"sec-{user}-{uuid.uuid4().hex[:8]}",
            username=user,
            password=self.password(user) if password is None else password,
            tls_context=ssl.create_default_context(cafile=str(ca or self.ca)),
            protocol=aiomqtt.ProtocolVersion.V5,
        )


class Acks(aiomqtt.Client):
    """aiomqtt's client, keeping each PUBACK's reason code (aiomqtt itself drops it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reasons: dict[int, int] = {}

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self.reasons[mid] = int(reason.value)
        super()._on_publish(client, userdata, mid, reason, props)

    async def publish_acked(self, topic: str, payload: bytes) -> int:
        before = set(self.reasons)
        await self.publish(topic, payload, qos=1)
        (mid,) = set(self.reasons) - before
        return self.reasons[mid]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """The module's secure Mosquitto (sync: its own event loop for start and stop, so that
    every test keeps its function-scoped loop)."""
    kafka_port, controller_port, mqtt_port, tls_port, hub_port = free_ports(5, avoid=set())
    state_dir = tmp_path_factory.mktemp("secure-mqtt")
    settings = Settings(
        stack=StackSettings(
            state_dir=state_dir,
            secure=True,
            kafka_port=kafka_port,
            kafka_controller_port=controller_port,
            mqtt_port=mqtt_port,
            mqtt_tls_port=tls_port,
            mqtt_hub_tls_port=hub_port,
            mqtt_tenants=("city", "harbour", "demo"),  # demo: the simulated fleet's tenant
        )
    )
    try:
        status = asyncio.run(
            stack_up(settings, only=["mosquitto"])
        )  # its probe: TLS + the bridge user
        assert status.all_serving, status.render()
        assert "TLS, user cityhub-bridge" in status.service("mosquitto").detail
        yield SecureBroker(settings, StackLayout.under(state_dir))
    finally:
        asyncio.run(stack_down(settings, purge=True, only=["mosquitto"]))


async def _drain(client: aiomqtt.Client, until: bytes, timeout: float = 10.0) -> list[str]:
    """Topics ``client`` receives up to and including the message whose payload is ``until``."""
    got: list[str] = []
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            got.append(str(message.topic))
            if message.payload == until:
                return got
    raise AssertionError("unreachable")


def test_the_secure_broker_listens_on_tls_only_with_generated_secrets(
    broker: SecureBroker,
) -> None:
    conf = broker.layout.mosquitto_conf.read_text().splitlines()
    listeners = [line for line in conf if line.startswith("listener")]
    assert listeners == [
        f"listener {broker.port} 127.0.0.1",
        f"listener {broker.hub_port} 127.0.0.1",
    ]
    assert conf.count("allow_anonymous false") == 2
    assert "use_username_as_clientid true" in conf
    files = secure_files(broker.layout)
    private = (files.password_file, files.hub_password_file, hub_env_file(broker.layout))
    for secret in (*private, files.tls.server_key):
        assert secret.stat().st_mode & 0o077 == 0, secret  # 0600: the owner only
    for user in (BRIDGE_USER, DELIVERY_USER, subscriber_user("city"), device_user("harbour")):
        assert (passwords_dir(broker.layout) / user).stat().st_mode & 0o077 == 0
        for password_file in (files.password_file, files.hub_password_file):
            assert broker.password(user) not in password_file.read_text()  # hashed
    # each listener's file holds its own users only
    hub_users = [line.split(":")[0] for line in files.hub_password_file.read_text().splitlines()]
    assert hub_users == [BRIDGE_USER, DELIVERY_USER]
    tenant_users = {line.split(":")[0] for line in files.password_file.read_text().splitlines()}
    assert subscriber_user("city") in tenant_users
    assert device_user("harbour") in tenant_users
    assert not tenant_users & {BRIDGE_USER, DELIVERY_USER}
    env = broker.hub_env()
    assert env["CITYHUB_MQTT__TLS"] == "true"
    assert env["CITYHUB_MQTT__PORT"] == str(broker.hub_port)  # the hub's own listener
    assert env["CITYHUB_MQTT__DELIVERY_USERNAME"] == DELIVERY_USER
    # the env names the password files; no password is in it
    assert env["CITYHUB_MQTT__PASSWORD_FILE"] == str(passwords_dir(broker.layout) / BRIDGE_USER)
    assert not any(broker.password(user) in env.values() for user in (BRIDGE_USER, DELIVERY_USER))


async def test_the_bridge_over_tls_writes_a_tenants_uplink_to_kafka(
    broker: SecureBroker, tmp_path: Path
) -> None:
    hub = Hub(
        tmp_path,
        command="bridge",
        extra_env={**broker.hub_env(), "CITYHUB_MQTT__SESSION_EXPIRY_SECONDS": "60"},
    )
    hub.start()
    try:
        own, other = device_topic("city", "aq-1"), device_topic("harbour", "aq-1")
        async with broker.client(device_user("city")) as device:
            # tenant city's publisher cannot write tenant harbour's ingest subtree
            assert await device.publish_acked(other, b'{"spoof": 1}') == NOT_AUTHORIZED
            assert await device.publish_acked("cityhub/ingest/aq-1", b'{"spoof": 2}') == (
                NOT_AUTHORIZED
            )
            assert await device.publish_acked(own, b'{"genuine": 1}') == 0
        raw = await read_topic(
            hub.topics["raw"], until=lambda r: any(x["topic"] == own for x in r), timeout=60
        )
        assert [x["topic"] for x in raw] == [own], hub.log_tail()
        assert hub.metric("cityhub_bridge_connected") == 1
        assert broker.password(BRIDGE_USER) not in hub.log_tail(400)
    finally:
        hub.stop()


async def test_clients_that_do_not_trust_the_ca_or_skip_tls_are_refused(
    broker: SecureBroker,
) -> None:
    # the system's CAs (no tls_ca_file) do not include the stack's own CA
    untrusted = broker.mqtt(BRIDGE_USER, tls_ca_file=None)
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        async with MqttSession(untrusted, clean_start=True, session_expiry_seconds=0):
            pass
    reason, message = session_failure(info.value, untrusted)
    assert reason == "tls_untrusted"
    assert "not trusted" in message
    assert "the system's CAs" in message
    # the host name is checked, not only the chain
    context = tls_context(broker.mqtt(BRIDGE_USER))
    assert context is not None
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        await _handshake(broker.port, context, "broker.elsewhere.example")
    # plain TCP on the TLS port: no MQTT session
    plain = broker.mqtt(BRIDGE_USER, tls=False)
    with pytest.raises((MqttConnectionLost, TimeoutError, ConnectionResetError)):
        async with MqttSession(
            plain, clean_start=True, session_expiry_seconds=0, connect_timeout=3
        ):
            pass


async def _handshake(port: int, context: ssl.SSLContext, name: str) -> None:
    """A TLS handshake with the broker on 127.0.0.1, expecting the certificate of ``name``."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=name)
    writer.close()


async def test_a_wrong_password_is_refused(broker: SecureBroker) -> None:
    wrong = broker.mqtt(BRIDGE_USER, password=SecretStr("not-the-password"))
    with pytest.raises(MqttConnectRefused) as info:
        async with MqttSession(wrong, clean_start=True, session_expiry_seconds=0):
            pass
    assert info.value.reason_code in LOGIN_REFUSED
    reason, message = session_failure(info.value, wrong)
    assert reason == "login_refused"
    assert "cityhub-bridge" in message
    assert "not-the-password" not in message


async def test_the_readiness_probe_says_why_it_cannot_get_in(broker: SecureBroker) -> None:
    """``stack up``/``status`` stop at once on these (AccessRefused), with the reason."""
    assert "TLS, user cityhub-bridge" in await probe_secure_mqtt(
        broker.mqtt(BRIDGE_USER), within_s=5
    )
    with pytest.raises(AccessRefused, match="certificate is not trusted"):
        await probe_secure_mqtt(broker.mqtt(BRIDGE_USER, tls_ca_file=None), within_s=5)
    wrong = broker.mqtt(BRIDGE_USER, password=SecretStr("not-the-password"))
    with pytest.raises(AccessRefused, match="refused user 'cityhub-bridge'") as refused:
        await probe_secure_mqtt(wrong, within_s=5)
    assert "not-the-password" not in str(refused.value)


class _NoKafka:
    """The bridge's record sink in a test where no session ever comes up: nothing is sent."""

    async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        raise AssertionError("no message should reach the sink")


def _failures(reason: str) -> float:
    """The bridge's count of failed sessions for ``reason`` in this process's registry."""
    labels = {"connector": metrics.CONNECTOR, "reason": reason}
    return REGISTRY.get_sample_value("cityhub_bridge_session_failures_total", labels) or 0.0


@pytest.mark.parametrize(
    ("case", "reason", "says"),
    [
        ("untrusted CA", "tls_untrusted", "certificate is not trusted"),
        ("wrong password", "login_refused", "refused user 'cityhub-bridge'"),
    ],
)
async def test_the_bridge_says_why_counts_and_backs_off(
    broker: SecureBroker, caplog: pytest.LogCaptureFixture, case: str, reason: str, says: str
) -> None:
    mqtt = (
        broker.mqtt(BRIDGE_USER, tls_ca_file=None)
        if case == "untrusted CA"
        else broker.mqtt(BRIDGE_USER, password=SecretStr("wrong-secret"))
    )
    bridge = MqttBridge(Settings(mqtt=mqtt), _NoKafka())
    before = _failures(reason)
    caplog.set_level(logging.WARNING, logger="cityhub.bridge")
    started = time.monotonic()
    task = asyncio.create_task(bridge.run())
    await asyncio.sleep(4.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    attempts = _failures(reason) - before
    # capped exponential backoff from 0.5 s with jitter (x0.5..x1.5): attempts at 0, >=0.25,
    # >=0.75, >=1.75, >=3.75 s, so at most 5 in 4 s; a tight loop would make hundreds
    assert 2 <= attempts <= 5, (attempts, time.monotonic() - started)
    said = [r.getMessage() for r in caplog.records if "bridge session ended" in r.getMessage()]
    assert len(said) == attempts
    assert all(says in line and "next attempt in" in line for line in said), said
    assert not any("wrong-secret" in line for line in said)
    assert not bridge.healthy


def _own_ingest_topics(user: str) -> list[str]:
    """The uplink topics the ACL's ingest patterns grant a user of this name."""
    return [
        f"v3/{user}/devices/park-0000/up",
        f"application/{user}/device/70b3d57ed0000009/event/up",
        f"cityhub/ingest/{user}",
    ]


async def test_the_acl_holds_from_the_tenants_side(broker: SecureBroker) -> None:
    root = broker.settings.delivery.mqtt_topic_root
    city, harbour = f"{root}/city/feed", f"{root}/harbour/feed"
    async with broker.client(subscriber_user("city")) as subscriber:
        # Mosquitto grants these subscriptions; the ACL then withholds what is not the tenant's
        for topic_filter in (f"{root}/harbour/#", f"{root}/city/#", "$SYS/#", "v3/+/devices/+/up"):
            await subscriber.subscribe(topic_filter, qos=1)
        async with broker.client(device_user("harbour")) as device:
            assert await device.publish_acked(device_topic("harbour", "x"), b"uplink") == 0
            # a device cannot pose as a delivery
            assert await device.publish_acked(city, b"forged") == NOT_AUTHORIZED
        async with broker.client(DELIVERY_USER) as delivery:
            assert await delivery.publish_acked(harbour, b"harbour") == 0
            assert await delivery.publish_acked(city, b"city") == 0
            # and a delivery cannot pose as an uplink, not even of the "application" of its name
            assert await delivery.publish_acked(device_topic("city", "x"), b"x") == NOT_AUTHORIZED
            for topic in _own_ingest_topics(DELIVERY_USER):
                assert await delivery.publish_acked(topic, b"x") == NOT_AUTHORIZED, topic
        # a subscriber writes nothing, not even its own subtree or the ingest patterns' of its name
        assert await subscriber.publish_acked(city, b"own") == NOT_AUTHORIZED
        for topic in _own_ingest_topics(subscriber_user("city")):
            assert await subscriber.publish_acked(topic, b"x") == NOT_AUTHORIZED, topic
        assert await _drain(subscriber, until=b"city") == [city]
    # the bridge's user reads the broker's $SYS figures (part E exports them)
    async with broker.client(BRIDGE_USER) as bridge:
        await bridge.subscribe("$SYS/broker/version", qos=0)
        async with asyncio.timeout(10):
            async for message in bridge.messages:
                assert isinstance(message.payload, bytes)
                assert message.payload.startswith(b"mosquitto version")
                break


async def test_the_mqtt_delivery_sink_publishes_over_tls_as_its_own_user(
    broker: SecureBroker,
) -> None:
    env = broker.hub_env()
    hub_mqtt = MqttSettings.model_validate(
        {name.removeprefix("CITYHUB_MQTT__").lower(): value for name, value in env.items()}
        | {"client_id": f"sec-hub-{uuid.uuid4().hex[:8]}"}
    )
    assert delivery_broker_settings(hub_mqtt).username == DELIVERY_USER
    spec = subscription_models().spec.model_validate(
        {"id": "air", "name": "air", "delivery": {"kind": "mqtt", "topic": "air"}}
    )
    record, _ = build_subscription(spec, tenant="city", now="2026-12-01T10:00:00.000Z")
    target = MqttTarget(record, Settings(mqtt=hub_mqtt))
    assert broker.password(DELIVERY_USER) not in repr(target)
    async with broker.client(subscriber_user("city")) as subscriber:
        await subscriber.subscribe("cityhub/sub/city/#", qos=1)
        await target.start()
        try:
            items = [Item(0, i, 1000 + i, b"dev", f'{{"n": {i}}}'.encode()) for i in range(3)]
            await target.send(items, "m-1")
        finally:
            await target.stop()
        got: list[bytes] = []
        async with asyncio.timeout(10):
            async for message in subscriber.messages:
                assert str(message.topic) == "cityhub/sub/city/air"
                assert isinstance(message.payload, bytes)
                got.append(message.payload)
                if len(got) == 3:
                    break
    assert got == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    # the delivery user may not write ingest: a refusal, not a success
    sink = MqttSink(delivery_broker_settings(hub_mqtt), client_id=f"sec-sink-{uuid.uuid4().hex}")
    try:
        with pytest.raises(DeliveryFailed) as refused:
            await sink.publish("cityhub/ingest/aq-1", b"{}", qos=1)
        assert refused.value.kind == FailureKind.REFUSED
    finally:
        await sink.stop()
    # a sink that does not trust the broker, or whose password is wrong, says so
    for settings, kind, says in (
        (
            delivery_broker_settings(hub_mqtt).model_copy(update={"tls_ca_file": None}),
            FailureKind.CONNECTION,
            "not trusted",
        ),
        (
            delivery_broker_settings(hub_mqtt).model_copy(update={"password": SecretStr("nope")}),
            FailureKind.REFUSED,
            "as user 'cityhub-delivery'",
        ),
    ):
        sink = MqttSink(settings, client_id=f"sec-sink-{uuid.uuid4().hex}", timeout=5)
        try:
            with pytest.raises(DeliveryFailed) as failed:
                await sink.start()
            assert failed.value.kind == kind, str(failed.value)
            assert says in str(failed.value)
            assert "nope" not in str(failed.value)
        finally:
            await sink.stop()


def _client(
    tool: str, broker: SecureBroker, user: str, *options: str, port: int | None = None
) -> list[str]:
    """A ``mosquitto_pub``/``mosquitto_sub`` command line (MQTT 5) for ``user`` on the broker,
    on the listener of ``user`` unless ``port`` is given."""
    login = ("-u", user, "-P", broker.password(user)) if user else ()
    port = broker.port_of(user) if port is None else port
    return [tool, "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", *login, *options]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)


def test_foreign_clients_get_in_with_the_ca_file_and_not_without(broker: SecureBroker) -> None:
    topic = f"{broker.settings.delivery.mqtt_topic_root}/harbour/foreign-{uuid.uuid4().hex[:6]}"
    ca = ("--cafile", str(broker.ca))
    # waits for one message (-C 1), at most 10 s (-W 10)
    wait_one = ("-t", topic, "-q", "1", "-C", "1", "-W", "10", "-i", f"sec-{uuid.uuid4().hex}")
    subscriber = subprocess.Popen(
        _client("mosquitto_sub", broker, subscriber_user("harbour"), *ca, *wait_one),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # let it subscribe before the publish
        published = _run(
            _client("mosquitto_pub", broker, DELIVERY_USER, *ca, "-t", topic, "-q", "1", "-m", "hi")
        )
        assert published.returncode == 0, published.stderr
        out, err = subscriber.communicate(timeout=15)
        assert out.strip() == "hi", err
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait(5)
    message = ("-t", topic, "-m", "x")
    # plain MQTT on the TLS port; TLS trusting only the system's CAs: both refused
    for trust in ((), ("--capath", "/etc/ssl/certs")):
        refused = _run(_client("mosquitto_pub", broker, DELIVERY_USER, *trust, *message))
        assert refused.returncode != 0, trust
    wrong = _client(
        "mosquitto_pub",
        broker,
        "",
        *ca,
        "-u",
        DELIVERY_USER,
        "-P",
        "no",
        *message,
        port=broker.hub_port,
    )
    refused = _run(wrong)
    assert refused.returncode != 0
    assert "not authori" in (refused.stderr + refused.stdout).lower(), refused.stderr


async def test_a_tenant_can_neither_take_the_bridges_client_id_nor_use_the_hubs_listener(
    broker: SecureBroker,
) -> None:
    """A CONNECT with the bridge's client id would end the bridge's connection ("Session taken
    over") and, with a clean start, discard its persistent session. On the tenants' listener a
    tenant's client id is its user name, and its users are not let in on the hub's listener."""
    bridge_id = f"sec-bridge-{uuid.uuid4().hex[:8]}"
    bridge_mqtt = broker.mqtt(BRIDGE_USER, client_id=bridge_id)
    topic = device_topic("city", f"takeover-{uuid.uuid4().hex[:6]}")
    try:
        async with MqttSession(
            bridge_mqtt, clean_start=True, session_expiry_seconds=60, receive_maximum=10
        ) as bridge:
            await bridge.subscribe(MqttSubscription(filter=topic, format="tts-v3", qos=1))
            # the tenant's subscriber, with a clean start and the bridge's id, on its listener:
            # let in, under its user name as client id
            async with broker.client(subscriber_user("city"), identifier=bridge_id) as tenant:
                await tenant.subscribe(f"{broker.settings.delivery.mqtt_topic_root}/city/#")
            # and on the hub's listener, with its right password: refused
            for user in (subscriber_user("city"), device_user("city")):
                intruder = broker.mqtt(user, port=broker.hub_port, client_id=bridge_id)
                with pytest.raises(MqttConnectRefused) as refused:
                    async with MqttSession(intruder, clean_start=True, session_expiry_seconds=0):
                        pass
                assert refused.value.reason_code in LOGIN_REFUSED, user
            assert bridge.connected
            async with broker.client(device_user("city")) as device:
                assert await device.publish_acked(topic, b"after the attempts") == 0
            async with asyncio.timeout(10):
                async for message in bridge.messages():  # raises if the bridge was thrown off
                    bridge.ack(message.mid, message.qos)
                    assert message.payload == b"after the attempts"
                    break
            assert bridge.connected
        # the hub's users are not let in on the tenants' listener either
        with pytest.raises(MqttConnectRefused) as refused_hub:
            async with MqttSession(
                broker.mqtt(BRIDGE_USER, port=broker.port),
                clean_start=True,
                session_expiry_seconds=0,
            ):
                pass
        assert refused_hub.value.reason_code in LOGIN_REFUSED
    finally:
        await end_session(bridge_mqtt)


async def test_up_says_when_the_hubs_listener_port_is_taken(tmp_path: Path) -> None:
    """``stack up --secure`` checks both of the broker's ports before it starts it."""
    tls_port, hub_port = free_ports(2, avoid=set())
    settings = Settings(
        stack=StackSettings(
            state_dir=tmp_path / "state",
            secure=True,
            mqtt_tls_port=tls_port,
            mqtt_hub_tls_port=hub_port,
        )
    )
    taken = rf"port {hub_port} on 127.0.0.1 is taken"
    with socket.create_server(("127.0.0.1", hub_port)), pytest.raises(StackError, match=taken):
        await stack_up(settings, only=["mosquitto"])
    assert not StackLayout.under(tmp_path / "state").mosquitto_pid.exists()
