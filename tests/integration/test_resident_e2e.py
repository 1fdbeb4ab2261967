"""A resident sees their own readings, end to end on the real stack: two residents' personal
sensors publish over MQTT, the hub (bridge and worker) seals their values on the observations
topic, and each resident's ``/me/observations`` (an API over Kafka stores, with the hub's KEK)
opens their own values and no one else's; the read is logged on the processing-log topic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from cityhub.connectors.decoders.cayenne import encode_lpp
from cityhub.connectors.kafka import create_producer
from cityhub.schemas.registry import Classification, DeviceSpec, DeviceTypeSpec, TenantSpec
from cityhub.schemas.settings import KafkaSettings, PrivacySettings, Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.api.app import build_api
from cityhub.streams.api.resident_tokens import ResidentServices
from cityhub.streams.privacy.device_observations import KafkaObservationReader
from cityhub.streams.privacy.keys_store import SubjectKeyStore
from cityhub.streams.privacy.log_writer import ProcessingLogWriter
from cityhub.streams.privacy.resident_token_service import ResidentTokens, TokenSpec
from cityhub.streams.privacy.resident_tokens import ResidentTokenStore
from cityhub.streams.privacy.subject_access import SubjectAccess
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

from .hub import BOOTSTRAP, Hub, publish, read_topic
from .uplinks import tts, unique_eui

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SYSTEM = Principal.system()
ALICE = "res-alice-0001"
BOB = "res-bob-000002"


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    running = Hub(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()


async def test_each_resident_reads_only_their_own_sealed_readings(hub: Hub) -> None:
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=hub.prefix),
        privacy=PrivacySettings(key_encryption_key=SecretStr(hub.kek)),
    )
    registry_store = RegistryStore(settings, client_id=f"{hub.prefix}-e2e-registry")
    keys = SubjectKeyStore(settings, client_id=f"{hub.prefix}-e2e-keys")
    tokens_store = ResidentTokenStore(settings, client_id=f"{hub.prefix}-e2e-tokens")
    producer = create_producer(settings.kafka, client_id=f"{hub.prefix}-e2e-log")
    for started in (registry_store, keys, tokens_store):
        await started.start()
    await producer.start()
    try:
        registry = Registry(registry_store, subject_keys=keys)
        await registry.create_tenant(SYSTEM, TenantSpec(id="acme", name="Acme"))
        await registry.create_type(
            SYSTEM,
            "acme",
            DeviceTypeSpec(
                id="air",
                name="Indoor air",
                decoder="cayenne-lpp",
                classification=Classification.PERSONAL,
            ),
        )
        euis = {"alice-air": unique_eui(), "bob-air": unique_eui()}
        for device, subject in (("alice-air", ALICE), ("bob-air", BOB)):
            spec = DeviceSpec(
                id=device, name=device, type="air", dev_eui=euis[device], data_subject=subject
            )
            await registry.create_device(SYSTEM, "acme", spec)
        await publish(
            [
                tts(
                    "alice-air",
                    euis["alice-air"],
                    1,
                    payload=encode_lpp([(1, "temperature", 21.5)]),
                ),
                tts("bob-air", euis["bob-air"], 1, payload=encode_lpp([(1, "temperature", 19.0)])),
            ]
        )
        observations = await read_topic(
            hub.topics["observations"],
            until=lambda r: {o["device_id"] for o in r} >= set(euis),
            timeout=90,
        )
        stored = {o["device_id"]: o for o in observations}
        assert set(stored) == set(euis), hub.log_tail()
        # On the topic the values are sealed: neither reading is there in clear.
        assert all(o["value"] is None and o["sealed"] for o in stored.values())

        tokens = ResidentTokens(tokens_store, registry.view)
        log_topic = Topics.for_prefix(hub.prefix).processing_log
        access = SubjectAccess(
            registry.view,
            base_uri=settings.privacy.register_base_uri,
            observations=KafkaObservationReader(settings),
            keys=keys.view,
            log=ProcessingLogWriter(producer, log_topic),
        )
        app = build_api(registry, residents=ResidentServices(tokens=tokens, access=access))
        secrets = {
            ALICE: (await tokens.issue(SYSTEM, "acme", ALICE, TokenSpec()))[1],
            BOB: (await tokens.issue(SYSTEM, "acme", BOB, TokenSpec()))[1],
        }
        seen = {}
        async with TestClient(TestServer(app)) as client:
            for subject, secret in secrets.items():
                response = await client.get(
                    "/api/v1/me/observations", headers={"Authorization": f"Bearer {secret}"}
                )
                assert response.status == 200, await response.text()
                doc = await response.json()
                seen[subject] = [(i["device_id"], i["value"]) for i in doc["items"]]
        assert seen == {ALICE: [("alice-air", 21.5)], BOB: [("bob-air", 19.0)]}
        logged = await read_topic(log_topic, until=lambda r: len(r) >= 2, timeout=30)
        reads = {
            r["attributes"]["dpl.core.data_subject_id"]: r["attributes"]
            for r in logged
            if r["attributes"].get("dpl.cityhub.action") == "read"
        }
        assert set(reads) == {ALICE, BOB}
        assert reads[ALICE]["dpl.core.processing_activity_id"].endswith("cityhub:subject-access")
    finally:
        await producer.stop()
        for store in (tokens_store, keys, registry_store):
            await store.stop()
