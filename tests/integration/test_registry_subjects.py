"""Data subjects on the real Kafka: a link written through the operator API (over a Kafka
registry store) is read back by a fresh view that replays the registry topic; the CLI unlinks
one (and links a device it creates), and another fresh view sees that too. The subject never
reaches a log. Each test has its own topic prefix, hence its own registry."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import click
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from cityhub.schemas.registry import Classification, DeviceTypeSpec, Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.streams.api.app import build_api
from cityhub.streams.registry import cli
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.registry.view import RegistryView

from .hub import BOOTSTRAP, random_kek

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SUBJECT = "res-7f3a9c21"


async def _link_through_the_api(settings: Settings) -> None:
    store = RegistryStore(settings)
    await store.start()
    try:
        registry, system = Registry(store), Principal.system()
        await registry.create_tenant(system, TenantSpec(id="acme", name="Acme"))
        personal = DeviceTypeSpec(id="air", name="Air", classification=Classification.PERSONAL)
        await registry.create_type(system, "acme", personal)
        _, secret = await registry.create_key(system, "acme", Role.OPERATOR, "op")
        headers = {"Authorization": f"Bearer {secret}"}
        async with TestClient(TestServer(build_api(registry))) as client:
            # air-1 linked in its create, air-2 through the data-subject route.
            body = {"id": "air-1", "name": "Air 1", "type": "air", "data_subject": SUBJECT}
            response = await client.post("/api/v1/tenants/acme/devices", json=body, headers=headers)
            assert response.status == 201, await response.text()
            body = {"id": "air-2", "name": "Air 2", "type": "air"}
            response = await client.post("/api/v1/tenants/acme/devices", json=body, headers=headers)
            assert response.status == 201, await response.text()
            response = await client.put(
                "/api/v1/tenants/acme/devices/air-2/data-subject",
                json={"data_subject": SUBJECT},
                headers=headers,
            )
            assert response.status == 200, await response.text()
    finally:
        await store.stop()


async def _fresh_view(settings: Settings) -> RegistryView:
    """The registry as a worker starting now sees it: replayed from the topic."""
    store = RegistryStore(settings, client_id=f"cityhub-subjects-{uuid.uuid4().hex[:6]}")
    await store.start()
    try:
        return store.view
    finally:
        await store.stop()


def test_a_link_made_through_the_api_is_on_the_topic_and_the_cli_unlinks_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))
    asyncio.run(_link_through_the_api(settings))

    view = asyncio.run(_fresh_view(settings))
    assert [d.id for d in view.devices_of_subject("acme", SUBJECT)] == ["air-1", "air-2"]
    assert view.subjects_linked_of_type("acme", "air") == 2

    main = click.Group("cityhub")
    cli.mount(main)
    env = {
        "CITYHUB_KAFKA__TOPIC_PREFIX": prefix,
        "CITYHUB_KAFKA__BOOTSTRAP_SERVERS": BOOTSTRAP,
        # Linking air-3 makes the subject's key first, wrapped with this test's own KEK.
        "CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY": random_kek(),
    }
    runner = CliRunner()
    result = runner.invoke(
        main, ["devices", "update", "--tenant", "acme", "air-1", "--no-data-subject"], env=env
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["devices", "get", "--tenant", "acme", "air-2", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data_subject"] == SUBJECT
    create = ["devices", "create", "--tenant", "acme", "air-3", "--type", "air", "--json"]
    result = runner.invoke(main, [*create, "--data-subject", SUBJECT], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data_subject"] == SUBJECT
    # A BSN is refused by the CLI as by the API, without being repeated.
    result = runner.invoke(
        main,
        ["devices", "update", "--tenant", "acme", "air-1", "--data-subject", "123456782"],
        env=env,
    )
    assert result.exit_code == 1
    assert "data_subject" in result.output
    assert "123456782" not in result.output

    view = asyncio.run(_fresh_view(settings))
    assert [d.id for d in view.devices_of_subject("acme", SUBJECT)] == ["air-2", "air-3"]
    # cityhub's own logs at every level, everyone's from INFO up (aiokafka's DEBUG log dumps
    # the records it sends, whatever they hold: never run a broker client at DEBUG in production).
    shown = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("cityhub") or r.levelno >= logging.INFO
    ]
    assert shown
    assert not [line for line in shown if SUBJECT in line]
