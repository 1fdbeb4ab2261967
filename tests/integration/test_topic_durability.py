"""min.insync.replicas reaches Kafka on every path by which cityhub creates topics: its own
(``ensure_topics``, the agents' state topics among them) and a subscription's
(``SubscriptionTopics``). The local broker has one node, so the only value it accepts is 1;
the topic-level override (config source 1, ``DYNAMIC_TOPIC_CONFIG``) shows it came from cityhub
and not from the broker's default, which is what the topics of the default settings show."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from cityhub.schemas.settings import KafkaSettings, Settings, WorkerSettings
from cityhub.streams.subscriptions.topics import SubscriptionTopics
from cityhub.streams.topic_admin import ensure_topics, topic_specs

from .hub import BOOTSTRAP

pytestmark = pytest.mark.integration

TOPIC_OVERRIDE = 1  # DescribeConfigs' config source of a value set on the topic itself


async def _create_every_kind(settings: Settings) -> list[str]:
    """Create cityhub's topics and one subscription topic, the way a hub does; return their
    names."""
    await ensure_topics(settings, timeout=30.0)
    subscription = f"{settings.kafka.topic_prefix}.sub.t.durability"
    topics = SubscriptionTopics(settings)
    try:
        await topics.ensure(subscription)
    finally:
        await topics.close()
    return [*(spec.name for spec in topic_specs(settings)), subscription]


async def _min_insync_replicas(names: list[str]) -> dict[str, tuple[str, int]]:
    """Each topic's min.insync.replicas and where its value comes from; the topics are
    deleted afterwards."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="durability-test")
    await admin.start()
    try:
        found: dict[str, tuple[str, int]] = {}
        # A topic created a moment ago may not be described yet on a busy broker: ask again.
        for _ in range(20):
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, None) for name in names]
            )
            for response in responses:
                for _code, _message, _type, name, entries in response.resources:
                    for key, value, _read_only, source, *_ in entries:
                        if key == "min.insync.replicas":
                            found[name] = (value, source)
            if set(found) >= set(names):
                break
            await asyncio.sleep(0.5)
        return found
    finally:
        await admin.delete_topics(names)
        await admin.close()


def _settings(tmp_path: Path, min_insync_replicas: int | None) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return Settings(
        kafka=KafkaSettings(
            bootstrap_servers=BOOTSTRAP,
            topic_prefix=prefix,
            partitions=1,
            min_insync_replicas=min_insync_replicas,
        ),
        worker=WorkerSettings(app_id=f"{prefix}-app"),
    )


async def test_every_topic_cityhub_creates_carries_the_configured_min_insync_replicas(
    tmp_path: Path,
) -> None:
    names = await _create_every_kind(_settings(tmp_path, min_insync_replicas=1))
    # 6 logs (the processing log too), 7 compacted (the subscriptions' secrets too), the 6 of
    # data sharing and open data (offers, agreements, agreement usage, open-data points, open
    # data, data requests), 6 agent states (the open-data publisher's and the health stage's
    # two too), 1 subscription, 2 for the console (the subscriptions' statuses, the sign-outs),
    # 1 of device health
    assert len(names) == 29
    found = await _min_insync_replicas(names)
    assert found == dict.fromkeys(names, ("1", TOPIC_OVERRIDE))


async def test_unreplicated_topics_keep_the_broker_default(tmp_path: Path) -> None:
    names = await _create_every_kind(_settings(tmp_path, min_insync_replicas=None))
    found = await _min_insync_replicas(names)
    assert set(found) == set(names)
    assert all(source != TOPIC_OVERRIDE for _value, source in found.values()), found
