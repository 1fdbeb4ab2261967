"""The register of processing activities on the real stack: written through the API of one
``cityhub api`` process and read, without a key, from a fresh process whose view was built
from the Kafka topic alone; and the ``cityhub activities`` commands, each of which reads the
topic again, so every step checks that the previous one's write is on it."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from cityhub.schemas.registry import Role, TenantSpec
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.streams.privacy.cli import activities
from cityhub.streams.privacy.store import RegisterStore
from cityhub.streams.registry import cli as registry_cli
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore

from .hub import BOOTSTRAP, Hub

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BASE = "https://data.example.nl/verwerkingsregister/"


def _settings(prefix: str) -> Settings:
    return Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))


def _seed(prefix: str) -> str:
    """Tenant acme and an operator key of it; the key's secret."""

    async def seed() -> str:
        store = RegistryStore(_settings(prefix))
        await store.start()
        try:
            registry, system = Registry(store), Principal.system()
            await registry.create_tenant(system, TenantSpec(id="acme", name="Acme"))
            return (await registry.create_key(system, "acme", Role.OPERATOR, "op"))[1]
        finally:
            await store.stop()

    return asyncio.run(seed())


def _call(
    hub: Hub, method: str, path: str, key: str | None = None, body: Any = None
) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{hub.port}{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


ACTIVITY: dict[str, Any] = {
    "slug": "care-alarms",
    "name": "Care alarms <for> residents",
    "purpose": "Alert a carer when a resident's alarm goes off.",
    "legal_basis": "VitalInterest",
    "personal_data_categories": ["alarm events", "address"],
    "retention": "P90D",
    "controller": "Municipality of Example",
    "recipients": ["Care provider"],
}


def test_written_through_the_api_read_keyless_by_a_fresh_process(tmp_path: Path) -> None:
    env = {"CITYHUB_PRIVACY__REGISTER_BASE_URI": BASE}
    writer = Hub(tmp_path / "writer", command="api", extra_env=env)
    writer.workdir.mkdir()
    key = _seed(writer.prefix)
    writer.start()
    try:
        status, text = _call(
            writer, "POST", "/api/v1/tenants/acme/processing-activities", key, ACTIVITY
        )
        assert status == 201, text
        assert json.loads(text)["id"] == f"{BASE}acme/care-alarms"
        update: dict[str, Any] = {k: v for k, v in ACTIVITY.items() if k != "slug"}
        update.update(retention="P30D", base_version=1)
        path = "/api/v1/tenants/acme/processing-activities/care-alarms"
        status, text = _call(writer, "PUT", path, key, update)
        assert status == 200, text
        # Another tenant's key, or none, writes nothing.
        status, _ = _call(writer, "PUT", path, None, update)
        assert status == 401
    finally:
        writer.stop()

    # A fresh view of the topic, as any process builds it at start.
    async def view_of_topic() -> Any:
        store = RegisterStore(_settings(writer.prefix), client_id=f"{writer.prefix}-check")
        await store.start()
        try:
            return store.view.get("acme", "care-alarms")
        finally:
            await store.stop()

    record = asyncio.run(view_of_topic())
    assert record is not None
    assert [v.retention for v in record.versions] == ["P90D", "P30D"]

    reader = Hub(tmp_path / "reader", command="api", extra_env=env, prefix=writer.prefix)
    reader.workdir.mkdir()
    reader.start()
    try:
        status, text = _call(reader, "GET", "/api/v1/processing-activities/acme/care-alarms")
        assert status == 200, text
        doc = json.loads(text)
        assert (doc["version"], doc["retention"]) == (2, "P30D")
        assert doc["legal_basis_iri"] == "https://w3id.org/dpv#VitalInterest"
        assert [v["retention"] for v in doc["earlier_versions"]] == ["P90D"]
        status, text = _call(
            reader, "GET", "/api/v1/processing-activities?legalBasis=VitalInterest"
        )
        assert [a["slug"] for a in json.loads(text)["items"]] == ["care-alarms"]
        status, page = _call(reader, "GET", "/api/v1/processing-register/acme/care-alarms")
        assert status == 200
        assert "Care alarms &lt;for&gt; residents" in page
        assert "<for>" not in page
    finally:
        reader.stop()


Invoke = Callable[..., Result]


@pytest.fixture
def cityhub() -> Invoke:
    """Run ``cityhub <args>`` in-process against a registry and register of this test's own."""
    main = click.Group("cityhub")
    registry_cli.mount(main)
    main.add_command(activities)
    env = {"CITYHUB_KAFKA__TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}"}
    runner = CliRunner()

    def invoke(*args: str, expect: int = 0) -> Result:
        result = runner.invoke(main, list(args), env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == expect, result.output
        assert "Traceback" not in result.output
        return result

    return invoke


def test_the_activities_commands(cityhub: Invoke) -> None:
    cityhub("tenants", "create", "acme", "--name", "Acme")
    created = cityhub(
        "activities", "create", "--tenant", "acme", "parking",
        "--name", "Parking permits", "--purpose", "Check parking permits.",
        "--legal-basis", "PublicTask", "--category", "licence plate", "--category", "location",
        "--retention", "P30D", "--controller", "Municipality of Example",
        "--valid-from", "2026-01-01T00:00:00Z",
    )  # fmt: skip
    assert "urn:cityhub:processing-activity:acme:parking" in created.stdout
    cityhub("activities", "update", "--tenant", "acme", "parking", "--retention", "P14D")
    stale = cityhub(
        "activities", "update", "--tenant", "acme", "parking", "--retention", "P7D",
        "--base-version", "1", expect=1,
    )  # fmt: skip
    assert "base_version" in stale.stderr
    bad = cityhub(
        "activities", "update", "--tenant", "acme", "parking", "--retention", "a week", expect=1
    )
    assert "retention" in bad.stderr
    cityhub(
        "activities", "end", "--tenant", "acme", "parking", "--valid-to", "2027-01-01T00:00:00Z"
    )
    shown = json.loads(cityhub("activities", "show", "acme", "parking", "--json").stdout)
    assert (shown["version"], shown["retention"]) == (3, "P14D")
    assert shown["valid_to"] == "2027-01-01T00:00:00.000Z"
    assert [v["version"] for v in shown["earlier_versions"]] == [2, 1]
    listed = cityhub("activities", "list", "--valid-at", "2026-06-01T00:00:00Z")
    assert "parking" in listed.stdout
    assert "PublicTask" in listed.stdout
    later = json.loads(
        cityhub("activities", "list", "--valid-at", "2027-06-01T00:00:00Z", "--json").stdout
    )
    assert later["items"] == []
    missing = cityhub("activities", "create", "--tenant", "nope", "x", "--name", "X",
        "--purpose", "P", "--legal-basis", "Consent", "--category", "c", "--retention", "P1D",
        "--controller", "C", expect=1)  # fmt: skip
    assert "not found" in missing.stderr
