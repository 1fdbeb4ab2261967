"""Webhook secrets on the real stack: the subscriptions topic, which the worker reads, holds no
secret (neither the ``whsec_`` string nor its key's bytes), the subscription-secrets topic holds
it, and the webhook still receives correctly signed requests; a subscription record written
before the split (its secret inline) still delivers signed, and the API moves its secret when it
starts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from cityhub.connectors.kafka_clients import kafka_consumer
from cityhub.connectors.sinks import validate_spec
from cityhub.connectors.sinks.webhook_signing import generate_webhook_secret, webhook_secret_key
from cityhub.schemas.settings import KafkaSettings, MqttSettings, Settings
from cityhub.schemas.subscription import build_subscription, subscription_topic
from cityhub.streams.devtools.simulator import simulate as run_simulation
from cityhub.streams.subscriptions.store import SubscriptionStore
from cityhub.streams.subscriptions.topics import SubscriptionTopics

from .hub import BOOTSTRAP, MQTT_HOST, MQTT_PORT, Hub
from .subscribers import Api, WebhookReceiver, wait_for
from .test_subscriptions_e2e import DEVICES, seed

pytestmark = pytest.mark.integration

MESSAGES = 112
TYPES = ["noise", "weather"]


def kafka(prefix: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix)


async def records_of(prefix: str, topic: str) -> list[tuple[str, bytes | None]]:
    """Every (key, value) of the one-partition ``topic``, from the beginning, raw."""
    consumer = kafka_consumer(kafka(prefix), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        found: list[tuple[str, bytes | None]] = []
        deadline = time.monotonic() + 20
        while await consumer.position(tp) < end and time.monotonic() < deadline:
            for batch in (await consumer.getmany(tp, timeout_ms=500)).values():
                found += [(r.key.decode() if r.key else "", r.value) for r in batch]
        return found
    finally:
        await consumer.stop()


def holds(value: bytes | None, secret: str) -> bool:
    """Whether ``value`` holds ``secret`` in any form: the string, its base64, its key's bytes."""
    traces = (secret.encode(), secret.removeprefix("whsec_").encode(), webhook_secret_key(secret))
    return value is not None and any(trace in value for trace in traces)


@contextlib.asynccontextmanager
async def hub_over(workdir: Path, hub: Hub, keys: dict[str, str]) -> AsyncIterator[Api]:
    await asyncio.to_thread(hub.start)
    try:
        yield Api(hub, keys)
    finally:
        await asyncio.to_thread(hub.stop)


def hub_in(workdir: Path) -> Hub:
    return Hub(
        workdir,
        command="run",
        extra_env={"CITYHUB_SUBSCRIPTIONS__WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]'},
    )


async def simulate() -> None:
    mqtt = Settings(mqtt=MqttSettings(host=MQTT_HOST, port=MQTT_PORT))
    await run_simulation(mqtt, DEVICES, 200.0, count=MESSAGES)


async def test_no_secret_on_the_subscriptions_topic_and_webhooks_still_signed(
    tmp_path: Path,
) -> None:
    hub = hub_in(tmp_path)
    keys = await seed(hub.prefix)
    own = generate_webhook_secret()
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        async with hub_over(tmp_path, hub, keys) as api:
            made = await api.subscribe(
                "demo",
                "demo",
                {
                    "id": "made",
                    "name": "A secret cityhub makes",
                    "filter": {"device_types": ["noise"]},
                    "delivery": {"kind": "webhook", "url": receiver.url("made")},
                },
            )
            await api.subscribe(
                "demo",
                "demo",
                {
                    "id": "own",
                    "name": "The subscriber's secret",
                    "filter": {"device_types": ["weather"]},
                    "delivery": {"kind": "webhook", "url": receiver.url("own"), "secret": own},
                },
            )
            receiver.secrets.update(made=made["secret"], own=own)
            began = time.monotonic()
            await simulate()
            assert await wait_for(
                lambda: bool(receiver.items("made")) and bool(receiver.items("own")), 60
            ), hub.log_tail()
            print(f"both webhooks received signed batches {time.monotonic() - began:.1f} s in")
            assert receiver.bad_signatures == 0
            status, _ = await api.call("POST", "/tenants/demo/subscriptions/made/pause", "demo")
            assert status == 200
            status, _ = await api.call("DELETE", "/tenants/demo/subscriptions/own", "demo")
            assert status == 204
            records = await records_of(hub.prefix, f"{hub.prefix}.subscriptions")
            secrets = await records_of(hub.prefix, f"{hub.prefix}.subscription-secrets")
    finally:
        await receiver.stop()
    assert len(records) == 4  # two creates, a pause, a delete
    for secret in (made["secret"], own):
        assert not [key for key, value in records if holds(value, secret)]
        assert [key for key, value in secrets if holds(value, secret)]
    assert secrets[-1] == ("subscription/demo/own", None)  # the delete tombstones the secret too
    assert records[-1] == ("subscription/demo/own", None)


async def test_an_inline_secret_still_signs_and_the_api_moves_it_when_it_starts(
    tmp_path: Path,
) -> None:
    hub = hub_in(tmp_path)
    keys = await seed(hub.prefix)
    receiver = WebhookReceiver()
    # A subscription as the API wrote it before the secrets topic: its secret inline.
    spec = validate_spec(
        {
            "id": "legacy",
            "name": "Written before the split",
            "filter": {"device_types": TYPES},
            "delivery": {"kind": "webhook", "url": receiver.url("legacy")},
        }
    )
    record, secret = build_subscription(spec, tenant="demo", now="2026-12-04T00:00:00.000Z")
    assert secret is not None
    # As the API did then: the subscription's topic first, then the record.
    settings = Settings(kafka=kafka(hub.prefix))
    topics = SubscriptionTopics(settings)
    try:
        await topics.ensure(subscription_topic(hub.prefix, "demo", "legacy"))
    finally:
        await topics.close()
    old_writer = SubscriptionStore(settings)
    await old_writer.start()
    try:
        await old_writer.put(record)
    finally:
        await old_writer.stop()
    receiver.secrets["legacy"] = secret
    await receiver.start()
    try:
        async with hub_over(tmp_path, hub, keys):
            moved = "cityhub_subscription_secrets_moved_total"
            assert await wait_for(lambda: hub.metric(moved) == 1, 30), [
                line for line in hub.metrics().splitlines() if "secrets" in line
            ]
            await simulate()
            assert await wait_for(lambda: bool(receiver.items("legacy")), 60), hub.log_tail()
            assert receiver.bad_signatures == 0
            records = await records_of(hub.prefix, f"{hub.prefix}.subscriptions")
            secrets = await records_of(hub.prefix, f"{hub.prefix}.subscription-secrets")
    finally:
        await receiver.stop()
    # The old record stays until compaction; the one that replaced it holds no secret.
    assert [holds(value, secret) for _, value in records] == [True, False]
    assert [key for key, value in secrets if holds(value, secret)] == ["subscription/demo/legacy"]
