"""Data subjects' keys and erasure on the real Kafka.

A key made through the registry's link (``ensure``) is on the topic, wrapped: a fresh store
with the same KEK reads it back and opens what the first sealed; one with another KEK cannot.
``cityhub data-subjects erase`` (a separate process, as an operator runs it) shreds it while
another store follows the topic: that follower drops the key within a second of the command's
end (the time is printed), and a fresh store no longer has it; the devices are unlinked and
the erasure is on the processing log. The broker takes the raw and dead-letter topics' config
(retention, hourly segments, append time). Each test has its own topic prefix and KEK."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from cityhub.schemas.errors import KeyErased
from cityhub.schemas.registry import Classification, DeviceSpec, DeviceTypeSpec, TenantSpec
from cityhub.schemas.settings import KafkaSettings, PrivacySettings, Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.privacy.keys_store import SubjectKeyStore
from cityhub.streams.privacy.sealing import open_sealed, seal
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.topic_admin import ensure_topics

from .hub import BOOTSTRAP, random_kek, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SUBJECT = "res-7f3a9c21"
SYSTEM = Principal.system()


def _settings(prefix: str, kek: str) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix),
        privacy=PrivacySettings(key_encryption_key=kek),  # type: ignore[arg-type]
    )


def _store(settings: Settings) -> SubjectKeyStore:
    return SubjectKeyStore(settings, client_id=f"cityhub-keys-test-{uuid.uuid4().hex[:6]}")


async def _link(settings: Settings) -> None:
    """A tenant, a personal type, two devices linked to SUBJECT (the key made first)."""
    registry_store = RegistryStore(settings, client_id=f"cityhub-test-{uuid.uuid4().hex[:6]}")
    keys = _store(settings)
    await registry_store.start()
    await keys.start()
    try:
        registry = Registry(registry_store, subject_keys=keys)
        await registry.create_tenant(SYSTEM, TenantSpec(id="acme", name="Acme"))
        personal = DeviceTypeSpec(id="air", name="Air", classification=Classification.PERSONAL)
        await registry.create_type(SYSTEM, "acme", personal)
        for device_id in ("air-1", "air-2"):
            spec = DeviceSpec(id=device_id, name=device_id, type="air", data_subject=SUBJECT)
            await registry.create_device(SYSTEM, "acme", spec)
    finally:
        await keys.stop()
        await registry_store.stop()


async def _erase_while_followed(prefix: str, kek: str) -> tuple[dict[str, object], float]:
    """Run the CLI's erasure in its own process while a store follows the keys' topic; the
    CLI's report and how long after the CLI returned the follower still had the key."""
    settings = _settings(prefix, kek)
    follower = _store(settings)
    await follower.start()
    try:
        key = follower.view.current("acme", SUBJECT)
        assert key is not None
        token = seal(key, {"value": 21.5}, event_id="e-1")
        env = {
            **os.environ,
            "CITYHUB_KAFKA__BOOTSTRAP_SERVERS": BOOTSTRAP,
            "CITYHUB_KAFKA__TOPIC_PREFIX": prefix,
            "CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY": kek,
        }
        env.pop("CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY_FILE", None)
        args = ["data-subjects", "erase", "--tenant", "acme", SUBJECT, "--yes", "--json"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cityhub.streams",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        done = time.monotonic()
        assert proc.returncode == 0, err.decode()
        assert SUBJECT not in out.decode() + err.decode()
        while follower.view.by_id(key.key_id) is not None:
            assert time.monotonic() - done < 5.0, "the follower still holds the shredded key"
            await asyncio.sleep(0.005)
        lag = time.monotonic() - done
        with pytest.raises(KeyErased):
            open_sealed(
                token, tenant="acme", subject=SUBJECT, event_id="e-1", key_of=follower.view.by_id
            )
        report: dict[str, object] = json.loads(out)
        return report, lag
    finally:
        await follower.stop()


async def _fresh_views(settings: Settings) -> tuple[SubjectKeyStore, RegistryStore]:
    keys = _store(settings)
    registry = RegistryStore(settings, client_id=f"cityhub-test-{uuid.uuid4().hex[:6]}")
    await keys.start()
    await registry.start()
    await keys.stop()
    await registry.stop()
    return keys, registry


def test_a_key_made_on_link_is_read_back_and_an_erasure_shreds_it_everywhere() -> None:
    prefix, kek = f"t{uuid.uuid4().hex[:10]}", random_kek()
    settings = _settings(prefix, kek)
    asyncio.run(_link(settings))

    # A fresh store with the same KEK has the key; one with another KEK cannot unwrap it.
    keys, _ = asyncio.run(_fresh_views(settings))
    key = keys.view.current("acme", SUBJECT)
    assert key is not None
    assert keys.view.count() == 1
    stranger, _ = asyncio.run(_fresh_views(_settings(prefix, random_kek())))
    assert stranger.view.count() == 0
    assert stranger.view.malformed == 1
    # On the topic the key is wrapped, never in clear.
    topic = Topics.for_prefix(prefix).subject_keys
    records = asyncio.run(read_topic(topic, until=lambda r: len(r) >= 1, timeout=30))
    assert records[0]["_key"] == f"subject_key/acme/{SUBJECT}/{key.key_id}"
    assert base64.b64encode(key.secret).decode() not in json.dumps(records)

    report, lag = asyncio.run(_erase_while_followed(prefix, kek))
    print(f"\nfollower dropped the shredded key {lag * 1000:.0f} ms after the CLI returned")
    assert report["keys_shredded"] == 1
    assert report["devices_unlinked"] == ["air-1", "air-2"]
    assert report["logged"] is True

    keys, registry = asyncio.run(_fresh_views(settings))
    assert keys.view.current("acme", SUBJECT) is None
    assert keys.view.by_id(key.key_id) is None
    assert registry.view.devices_of_subject("acme", SUBJECT) == []
    log = asyncio.run(
        read_topic(Topics.for_prefix(prefix).processing_log, until=lambda r: len(r) >= 1)
    )
    (record,) = log
    attributes = record["attributes"]
    assert attributes["dpl.cityhub.action"] == "erase"
    assert attributes["dpl.core.data_subject_id"] == SUBJECT


async def _raw_topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    topics = Topics.for_prefix(settings.kafka.topic_prefix)
    names = {topics.raw, topics.deadletter, topics.subject_keys}
    await ensure_topics(settings, only=names)
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in sorted(names)]
        )
    finally:
        await admin.close()
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.resources:
            found[resource[3]] = {entry[0]: entry[1] for entry in resource[4]}
    return found


def test_the_broker_takes_the_clear_payload_and_keys_topics_config() -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix, raw_retention_hours=2)
    )
    found = asyncio.run(_raw_topic_configs(settings))
    raw, deadletter = found[f"{prefix}.raw"], found[f"{prefix}.deadletter"]
    assert raw["retention.ms"] == str(2 * 3_600_000)
    assert deadletter["retention.ms"] == str(168 * 3_600_000)
    for config in (raw, deadletter):
        assert config["segment.ms"] == "3600000"
        assert config["message.timestamp.type"] == "LogAppendTime"
    assert found[f"{prefix}.subject-keys"]["max.compaction.lag.ms"] == "3600000"
