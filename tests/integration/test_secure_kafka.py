"""The hub on a secured Kafka: a SASL_SSL-only broker that ``cityhub stack up --secure`` makes
(its own CA, SCRAM-SHA-512 users per component, ACLs), started by this module in a temporary
state dir on free loopback ports and stopped at the end; the plain stack is not touched.

It checks the bridge → worker → delivery path with each process logged in as its own user and
verified TLS, and from the other side: what each user must not do, a wrong password, a CA the
client does not trust, host-name verification on and off, ``tail`` and topic creation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from cityhub.connectors.kafka_clients import (
    kafka_consumer,
    kafka_producer,
    login_refusal,
    ssl_context,
)
from cityhub.connectors.kafka_security import ADMIN_COMPONENT, tls_plan
from cityhub.schemas.errors import ConfigurationError, StackError
from cityhub.schemas.registry import Role, TenantSpec
from cityhub.schemas.settings import (
    KafkaSettings,
    MqttSettings,
    Settings,
    StackSettings,
    WorkerSettings,
)
from cityhub.streams.aggregation.query import format_ms
from cityhub.streams.devtools.simulator import build_fleet
from cityhub.streams.devtools.simulator import simulate as run_simulation
from cityhub.streams.devtools.simulator.registration import register_fleet
from cityhub.streams.devtools.stack import stack_client_settings, stack_down, stack_up
from cityhub.streams.devtools.stack.kafka_secure import client_kafka_settings, clients_dir, pki_dir
from cityhub.streams.devtools.stack.layout import StackLayout
from cityhub.streams.devtools.stack.pki import Pki, ensure_pki
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.topic_admin import ensure_topics

from .hub import MQTT_HOST, MQTT_PORT, Hub, free_port
from .subscribers import Api, WebhookReceiver, wait_for

pytestmark = pytest.mark.integration

DEVICES = 28
MESSAGES = 140


@dataclass(frozen=True)
class SecureKafka:
    """The running secure broker: its settings (``stack.secure``, the test's topic prefix and
    worker group), where its files are, and a client's ``KafkaSettings`` per user."""

    settings: Settings
    layout: StackLayout
    pki: Pki

    @property
    def prefix(self) -> str:
        return self.settings.kafka.topic_prefix

    def kafka(self, who: str = ADMIN_COMPONENT, **changes: Any) -> KafkaSettings:
        """Client settings that log in as ``who`` (a component, or ``admin``)."""
        base = client_kafka_settings(self.settings, self.layout, self.pki, who)
        return KafkaSettings.model_validate({**base.model_dump(), **changes})

    def env(self, who: str = ADMIN_COMPONENT) -> dict[str, str]:
        """What ``stack up --secure`` wrote into ``clients/<who>.env``."""
        lines = (clients_dir(self.layout) / f"{who}.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line)


def _seed_libs(layout: StackLayout) -> None:
    """Hard-link the plain stack's Kafka jars, when it has them, instead of asking Maven again
    (``ensure_jars`` still checks their pom hash, and fetches them itself otherwise)."""
    plain = StackLayout.under(Settings().stack.state_dir)
    if plain.kafka_libs_marker.is_file() and not layout.kafka_libs.exists():
        layout.kafka_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(plain.kafka_libs, layout.kafka_libs, copy_function=os.link)


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[SecureKafka]:
    state_dir = Path(tempfile.mkdtemp(prefix="cityhub-secure-"))
    prefix = f"s{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka=KafkaSettings(topic_prefix=prefix, partitions=2),
        worker=WorkerSettings(app_id=f"{prefix}-app"),
        stack=StackSettings(
            state_dir=state_dir,
            secure=True,
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            kafka_heap="512m",
        ),
    )
    layout = StackLayout.under(state_dir)
    _seed_libs(layout)
    began = time.monotonic()
    try:
        status = asyncio.run(stack_up(settings, only=["kafka"]))
        assert status.all_serving, status.render()
        asyncio.run(ensure_topics(stack_client_settings(settings)))
        print(f"secure Kafka up with users, ACLs and topics in {time.monotonic() - began:.1f} s")
        yield SecureKafka(settings, layout, Pki(pki_dir(layout).resolve()))
    finally:
        asyncio.run(stack_down(settings, only=["kafka"]))
        shutil.rmtree(state_dir, ignore_errors=True)


async def produce(kafka: KafkaSettings, topic: str, value: bytes = b"{}") -> int:
    producer = kafka_producer(kafka, acks="all", enable_idempotence=True, request_timeout_ms=10_000)
    try:
        await producer.start()  # stopped below even when the start is refused
        return int((await producer.send_and_wait(topic, value)).offset)
    finally:
        await producer.stop()


async def produce_tombstone(kafka: KafkaSettings, topic: str, key: bytes) -> int:
    producer = kafka_producer(kafka, acks="all", enable_idempotence=True, request_timeout_ms=10_000)
    try:
        await producer.start()
        return int((await producer.send_and_wait(topic, None, key=key)).offset)
    finally:
        await producer.stop()


async def read_all(kafka: KafkaSettings, topic: str, *, within: float = 5.0) -> list[bytes | None]:
    """Every record of ``topic`` (all partitions), read without a group."""
    consumer = kafka_consumer(kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        values: list[bytes | None] = []
        deadline = time.monotonic() + within
        while True:  # one fetch at least: an empty topic still asks for READ
            batches = await consumer.getmany(timeout_ms=500)
            values += [r.value for records in batches.values() for r in records]
            behind = [await consumer.position(tp) < ends[tp] for tp in tps]
            if not any(behind) or time.monotonic() > deadline:
                return values
    finally:
        await consumer.stop()


async def seed_registry(kafka: KafkaSettings) -> dict[str, str]:
    """The simulated fleet in tenant demo and the keys the test calls the API with."""
    store = RegistryStore(Settings(kafka=kafka))
    await store.start()
    try:
        registry = Registry(store)
        await register_fleet(registry, build_fleet(DEVICES))
        system = Principal.system()
        await registry.create_tenant(system, TenantSpec(id="other", name="Another operator"))
        return {"demo": (await registry.create_key(system, "demo", Role.SUBSCRIBER, "demo"))[1]}
    finally:
        await store.stop()


@contextlib.asynccontextmanager
async def secure_hub(workdir: Path, secure: SecureKafka) -> AsyncIterator[tuple[Hub, Api]]:
    """``cityhub run`` on the secure Kafka as the operator would start it: the admin's env file,
    whose ``component_credentials_dir`` gives each child its own user."""
    hub = Hub(
        workdir,
        prefix=secure.prefix,
        extra_env={
            **secure.env(ADMIN_COMPONENT),
            "CITYHUB_SUBSCRIPTIONS__WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
        },
    )
    keys = await seed_registry(secure.kafka())
    await asyncio.to_thread(hub.start)
    try:
        yield hub, Api(hub, keys)
    finally:
        await asyncio.to_thread(hub.stop)


async def test_the_hub_runs_over_sasl_ssl_each_process_as_its_own_user(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        async with secure_hub(tmp_path, secure_kafka) as (hub, api):
            hook = await api.subscribe(
                "demo",
                "demo",
                {
                    "id": "noise-hook",
                    "name": "Noise to a webhook",
                    "filter": {"device_types": ["noise"]},
                    "delivery": {"kind": "webhook", "url": receiver.url("noise")},
                },
            )
            receiver.secrets["noise"] = hook["secret"]
            # The record the worker reads holds no secret; the secrets topic does.
            kept = await read_all(secure_kafka.kafka(), f"{hub.prefix}.subscriptions")
            assert kept, "the subscription's record is on the subscriptions topic"
            assert not [v for v in kept if v is not None and hook["secret"].encode() in v]
            apart = await read_all(secure_kafka.kafka(), f"{hub.prefix}.subscription-secrets")
            assert [v for v in apart if v is not None and hook["secret"].encode() in v]
            assert await wait_for(lambda: hub.metric("cityhub_routed_subscriptions") == 1, 30)
            mqtt = Settings(mqtt=MqttSettings(host=MQTT_HOST, port=MQTT_PORT))
            await run_simulation(mqtt, DEVICES, 200.0, count=MESSAGES)

            async def noise_observations() -> set[str]:
                records = await read_all(secure_kafka.kafka(), f"{hub.prefix}.observations")
                docs = [orjson.loads(v) for v in records if v is not None]
                return {d["event_id"] for d in docs if d.get("device_type") == "noise"}

            want: set[str] = set()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not want:
                want = await noise_observations()
                await asyncio.sleep(0.5)
            assert want, hub.log_tail()

            def delivered() -> set[str]:
                return {i["event_id"] for i in receiver.items("noise")}

            assert await wait_for(lambda: delivered() >= want, 60), hub.log_tail()
            assert receiver.bad_signatures == 0
            # The API reads the newest aggregates from Kafka as its own user.
            device = receiver.items("noise")[0]["device_id"]
            now = int(time.time() * 1000)
            status, doc = await api.call(
                "GET",
                f"/tenants/demo/aggregates?deviceId={device}"
                f"&from={format_ms(now - 3_600_000)}&to={format_ms(now)}",
                "demo",
            )
            assert status == 200, doc
            assert doc["source"] == "kafka"
            log = await asyncio.to_thread(
                lambda: "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("run-*.log"))
            )
    finally:
        await receiver.stop()
    # No part was refused anything its code does (a refused read restarts a worker, and the
    # rest of the path may still look fine)...
    refusals = [line for line in log.splitlines() if "uthoriz" in line]
    assert not refusals, "\n".join(refusals[:10])
    # ...and aiokafka says whom each connection authenticated as: every part as its own user.
    for user in ("bridge", "worker", "delivery", "api", "history"):
        assert f"Authenticated as cityhub-{user} via SCRAM-SHA-512" in log, user
    assert "PLAINTEXT" not in secure_kafka.env(ADMIN_COMPONENT)["CITYHUB_KAFKA__SECURITY_PROTOCOL"]


async def test_each_user_is_held_to_its_grants(secure_kafka: SecureKafka) -> None:
    topics = f"{secure_kafka.prefix}"
    bridge, history = secure_kafka.kafka("bridge"), secure_kafka.kafka("history")
    assert await produce(bridge, f"{topics}.raw") >= 0
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(bridge, f"{topics}.observations")
    # The subscriptions (webhook secrets among them): not the bridge's, nor the history's.
    for outsider in (bridge, history):
        with pytest.raises(TopicAuthorizationFailedError):
            await read_all(outsider, f"{topics}.subscriptions")
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(secure_kafka.kafka("delivery"), f"{topics}.subscriptions")
    await read_all(secure_kafka.kafka("delivery"), f"{topics}.subscriptions")
    # The worker reads the subscriptions (routing) but not their secrets, which only the API
    # (which writes them) and the delivery (which signs) read.
    worker, delivery, api = (secure_kafka.kafka(c) for c in ("worker", "delivery", "api"))
    await read_all(worker, f"{topics}.subscriptions")
    for outsider in (worker, bridge, history):
        with pytest.raises(TopicAuthorizationFailedError):
            await read_all(outsider, f"{topics}.subscription-secrets")
        with pytest.raises(TopicAuthorizationFailedError):
            await produce(outsider, f"{topics}.subscription-secrets")
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(delivery, f"{topics}.subscription-secrets")
    # A record the delivery reads: the API's write comes back to both (a tombstone: nothing
    # secret in a test that a failure could print).
    await produce_tombstone(api, f"{topics}.subscription-secrets", b"subscription/t/acl-check")
    for reader in (api, delivery):
        assert None in await read_all(reader, f"{topics}.subscription-secrets")
    with pytest.raises(TopicAuthorizationFailedError):
        await read_all(secure_kafka.kafka("api"), f"{topics}.raw")
    # Only the admin creates cityhub's own topics: a component is told so, not left waiting.
    missing = Settings(
        kafka=secure_kafka.kafka("worker", topic_prefix=f"{topics}x"),
        worker=secure_kafka.settings.worker,
    )
    with pytest.raises(StackError, match="may not create topic"):
        await ensure_topics(missing, timeout=10)


async def test_a_wrong_password_is_refused_at_once_with_the_reason(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    wrong = tmp_path / "password"
    wrong.write_text("not-the-password\n")
    kafka = secure_kafka.kafka("bridge", sasl_password_file=wrong)
    began = time.monotonic()
    with pytest.raises(ConfigurationError, match=r"refused the login of kafka\.sasl_username"):
        await ensure_topics(Settings(kafka=kafka), timeout=60)
    assert time.monotonic() - began < 15, "a refused login must not wait for the timeout"
    with pytest.raises(KafkaError):
        await produce(kafka, f"{secure_kafka.prefix}.raw")


async def test_a_client_that_does_not_trust_the_ca_is_refused(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    stranger = ensure_pki(tmp_path / "another-ca")
    kafka = secure_kafka.kafka("bridge", ssl_ca_file=stranger.ca_cert)
    refusal = await login_refusal(kafka)
    assert refusal is not None
    assert "certificate" in refusal
    assert "kafka.ssl_ca_file" in refusal
    with pytest.raises(KafkaError):
        await produce(kafka, f"{secure_kafka.prefix}.raw")


async def _handshake(context: ssl.SSLContext, port: int, server_hostname: str) -> None:
    """A TLS handshake with the broker's listener, naming ``server_hostname`` (which the
    certificate does not carry unless it is a loopback name)."""
    _, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=server_hostname),
        10,
    )
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


async def test_host_name_verification_on_and_off(secure_kafka: SecureKafka, tmp_path: Path) -> None:
    port = secure_kafka.settings.stack.kafka_port
    checking = tls_plan(secure_kafka.kafka())
    relaxed = tls_plan(secure_kafka.kafka(ssl_check_hostname=False))
    assert checking is not None
    assert relaxed is not None
    for name in ("localhost", "127.0.0.1"):
        await _handshake(ssl_context(checking), port, name)
    with pytest.raises(ssl.SSLCertVerificationError, match=r"[Hh]ostname mismatch"):
        await _handshake(ssl_context(checking), port, "kafka.elsewhere.example")
    await _handshake(ssl_context(relaxed), port, "kafka.elsewhere.example")
    # Without the host-name check the chain is still verified: another CA is still refused.
    stranger = ensure_pki(tmp_path / "another-ca")
    untrusted = tls_plan(secure_kafka.kafka(ssl_check_hostname=False, ssl_ca_file=stranger.ca_cert))
    assert untrusted is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(ssl_context(untrusted), port, "localhost")


def _cityhub(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cityhub.streams", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_tail_works_secured_and_says_why_it_cannot(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    topic = f"{secure_kafka.prefix}.deadletter"
    await produce(secure_kafka.kafka("bridge"), topic, b'{"tail": "secured"}')
    env = secure_kafka.env(ADMIN_COMPONENT)
    done = await asyncio.to_thread(
        _cityhub, env, "tail", topic, "--from-beginning", "-n", "1", "--timeout", "20"
    )
    assert done.returncode == 0, done.stderr
    assert '{"tail": "secured"}' in done.stdout
    wrong = tmp_path / "password"
    wrong.write_text("wrong\n")
    began = time.monotonic()
    refused = await asyncio.to_thread(
        _cityhub,
        {**env, "CITYHUB_KAFKA__SASL_PASSWORD_FILE": str(wrong)},
        "tail",
        topic,
        "--timeout",
        "5",
    )
    assert refused.returncode != 0
    assert "refused the login of kafka.sasl_username=cityhub-admin" in refused.stderr
    assert "wrong" not in refused.stderr.replace(str(wrong), "")
    assert time.monotonic() - began < 30
    # A user the ACLs do not let read the topic: the reason, not a traceback.
    denied = await asyncio.to_thread(
        _cityhub, secure_kafka.env("bridge"), "tail", topic, "--from-beginning", "--timeout", "5"
    )
    assert denied.returncode != 0
    assert "Kafka refuses cityhub-bridge reading" in denied.stderr, denied.stderr
    assert "Traceback" not in denied.stderr
