"""Consent records on the real stack: given on a resident's documented behalf through the API,
withdrawn through it, given again by the resident through the service, all on the Kafka topic;
a fresh store, as any process builds its view at start, reads the same chain; and
``cityhub consents verify`` reads the topic, finds it sound, then finds a forged record that
the views ignored."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from cityhub.schemas.consent import ConsentRecord, ConsentStatus, verify
from cityhub.schemas.processing import ActivitySpec, LegalBasis
from cityhub.schemas.registry import Classification, DeviceSpec, DeviceTypeSpec, Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.streams.api.app import build_api
from cityhub.streams.privacy.consent_cli import consents as consents_cli
from cityhub.streams.privacy.consent_service import Consents
from cityhub.streams.privacy.consent_store import ConsentStore
from cityhub.streams.privacy.resident import Resident
from cityhub.streams.privacy.service import ProcessingRegister
from cityhub.streams.privacy.store import RegisterStore
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

from .hub import BOOTSTRAP

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SUBJECT = "res-7f3a9c21"
SYSTEM = Principal.system()
PATH = f"/api/v1/tenants/acme/data-subjects/{SUBJECT}/consents/energy"


def _settings(prefix: str) -> Settings:
    return Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))


async def _through_the_api_and_the_service(prefix: str) -> ConsentRecord:
    settings = _settings(prefix)
    registry_store = RegistryStore(settings, client_id=f"{prefix}-registry")
    register_store = RegisterStore(settings, client_id=f"{prefix}-register")
    consent_store = ConsentStore(settings, client_id=f"{prefix}-consents")
    await registry_store.start()
    await register_store.start()
    await consent_store.start()
    try:
        registry = Registry(registry_store)
        await registry.create_tenant(SYSTEM, TenantSpec(id="acme", name="Acme"))
        await registry.create_type(
            SYSTEM,
            "acme",
            DeviceTypeSpec(id="air", name="Air", classification=Classification.PERSONAL),
        )
        await registry.create_device(
            SYSTEM, "acme", DeviceSpec(id="air-1", name="Air", type="air", data_subject=SUBJECT)
        )
        key = (await registry.create_key(SYSTEM, "acme", Role.OPERATOR, "op"))[1]
        register = ProcessingRegister(
            register_store, registry_store.view, base_uri="urn:cityhub:processing-activity:"
        )
        await register.create(
            SYSTEM,
            "acme",
            ActivitySpec(
                slug="energy",
                name="Energy advice",
                purpose="Advise residents on their energy use.",
                legal_basis=LegalBasis.CONSENT,
                personal_data_categories=["energy use"],
                retention="P1Y",
                controller="Municipality of Example",
            ),
        )
        service = Consents(consent_store, register_store.view, registry_store.view)
        app = build_api(registry, processing=register, consents=service)
        auth = {"Authorization": f"Bearer {key}"}
        async with TestClient(TestServer(app)) as client:
            given = await client.post(f"{PATH}/give", json={"evidence": "form 117"}, headers=auth)
            assert given.status == 200, await given.text()
            head = (await given.json())["head"]
            withdrawn = await client.post(
                f"{PATH}/withdraw", json={"evidence": "letter 118"}, headers=auth
            )
            doc: dict[str, Any] = await withdrawn.json()
            assert withdrawn.status == 200, doc
            assert doc["history"][1]["prev_hash"] == head
        again = await service.give(
            Resident(tenant="acme", subject=SUBJECT, credential="token:t1"),
            "acme",
            SUBJECT,
            "energy",
        )
        assert consent_store.view.active("acme", SUBJECT, "energy")
        return again
    finally:
        await consent_store.stop()
        await register_store.stop()
        await registry_store.stop()


async def _fresh_view(prefix: str) -> ConsentRecord | None:
    store = ConsentStore(_settings(prefix), client_id=f"{prefix}-fresh")
    await store.start()
    try:
        return store.view.get("acme", SUBJECT, "energy")
    finally:
        await store.stop()


async def _forge(prefix: str, record: ConsentRecord) -> None:
    """Write a record whose last entry was changed after the fact, as someone with write access
    to the topic could; the view must ignore it."""
    last = record.history[-1].model_copy(update={"resident_credential": "token:forged"})
    forged = record.model_copy(update={"history": [*record.history[:-1], last]})
    store = ConsentStore(_settings(prefix), client_id=f"{prefix}-forger")
    await store.start()
    try:
        await store.put(forged)
        assert store.view.get("acme", SUBJECT, "energy") == record
        assert store.view.rejected()["chain"] == 1
    finally:
        await store.stop()


def test_given_withdrawn_given_again_and_read_back_from_kafka() -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    written = asyncio.run(_through_the_api_and_the_service(prefix))
    assert [e.status for e in written.history] == [
        ConsentStatus.GIVEN,
        ConsentStatus.WITHDRAWN,
        ConsentStatus.RENEWED,
    ]
    assert [e.collection_method.value for e in written.history] == [
        "tenant-on-behalf",
        "tenant-on-behalf",
        "resident",
    ]
    read = asyncio.run(_fresh_view(prefix))
    assert read == written
    assert read is not None
    assert verify(read).ok

    runner = CliRunner()
    env = {"CITYHUB_KAFKA__TOPIC_PREFIX": prefix, "CITYHUB_KAFKA__BOOTSTRAP_SERVERS": BOOTSTRAP}
    sound = runner.invoke(consents_cli, ["verify"], env=env)
    assert sound.exit_code == 0, sound.output
    assert "1 record(s) verify, 1 active; 0 ignored" in sound.output
    listed = runner.invoke(consents_cli, ["list", "--tenant", "acme", SUBJECT], env=env)
    assert listed.exit_code == 0, listed.output
    assert "RenewedConsentGiven" in listed.output

    asyncio.run(_forge(prefix, written))
    assert asyncio.run(_fresh_view(prefix)) == written
    tampered = runner.invoke(consents_cli, ["verify", "--tenant", "acme"], env=env)
    assert tampered.exit_code == 1, tampered.output
    assert "chain" in tampered.output
    assert "breaks at entry 3" in tampered.output
