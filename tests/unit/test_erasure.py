"""Erasure without a broker: the order (keys, consents, links, log), idempotence, who may
erase whom, and the tenant's route seen from both tenants. Over the in-memory registry and key
store; consents and the processing log are recording doubles of their interfaces."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import click
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from cityhub.schemas.processing_log import ProcessingLogRecord
from cityhub.schemas.registry import Classification, DeviceSpec, DeviceTypeSpec, Role
from cityhub.streams.api.app import build_api
from cityhub.streams.privacy.erasure import CONSENT_REASON, Erasure
from cityhub.streams.privacy.erasure_cli import data_subjects
from cityhub.streams.privacy.keys_store import InMemorySubjectKeyStore
from cityhub.streams.privacy.resident import Resident
from cityhub.streams.privacy.sealing import open_sealed, seal
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.service_errors import Forbidden, Invalid, NotFound
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore

from .test_api_support import Api, public_resolver, seed
from .test_consent_support import SUBJECT as CONSENTING
from .test_consent_support import build_world

SYSTEM = Principal.system()
SUBJECT = "res-7f3a9c21"
OTHER = "res-0b1c2d3e"
A = "/api/v1/tenants/acme"
B = "/api/v1/tenants/beta"


class World:
    """A seeded registry with key store, and doubles that note what each step saw."""

    def __init__(
        self, registry: Registry, store: InMemoryRegistryStore, keys: InMemorySubjectKeyStore
    ) -> None:
        self.registry = registry
        self.store = store
        self.keys = keys
        self.steps: list[str] = []
        self.logged: list[ProcessingLogRecord] = []
        self.fail_log = False

    async def withdraw_all(self, tenant: str, subject: str, *, reason: str) -> Sequence[Any]:
        # Keys are gone already; the devices are still linked.
        assert self.keys.view.record_keys_of(tenant, subject) == []
        linked = self.registry.view.devices_of_subject(tenant, subject)
        self.steps.append(f"consents:{len(linked)} linked")
        return ["withdrawn"] if linked else []

    async def write(self, records: Sequence[ProcessingLogRecord]) -> None:
        record = records[0]
        linked = self.registry.view.devices_of_subject(record.tenant, record.subject or "")
        self.steps.append(f"log:{len(linked)} linked")
        if self.fail_log:
            raise RuntimeError("the log is down")
        self.logged.extend(records)

    def erasure(self) -> Erasure:
        return Erasure(self.registry, self.keys, consents=self, log_writer=self)


async def seeded() -> tuple[World, dict[str, str]]:
    store = InMemoryRegistryStore()
    await store.start()
    keys = InMemorySubjectKeyStore()
    registry = Registry(store, subject_keys=keys)
    secrets = await seed(registry)
    personal = DeviceTypeSpec(id="air", name="Air", classification=Classification.PERSONAL)
    for tenant in ("acme", "beta"):
        await registry.create_type(SYSTEM, tenant, personal)
    for device_id, tenant, subject in (
        ("a-1", "acme", SUBJECT),
        ("a-2", "acme", SUBJECT),
        ("a-3", "acme", OTHER),
        ("b-1", "beta", SUBJECT),  # the same pseudonym in another tenant: another person
    ):
        spec = DeviceSpec(id=device_id, name=device_id, type="air", data_subject=subject)
        await registry.create_device(SYSTEM, tenant, spec)
    return World(registry, store, keys), secrets


async def test_erasure_shreds_then_withdraws_then_unlinks_then_logs() -> None:
    world, _ = await seeded()
    key = world.keys.view.current("acme", SUBJECT)
    assert key is not None
    token = seal(key, {"value": 21.5}, event_id="e1")
    report = await world.erasure().erase(SYSTEM, "acme", SUBJECT)
    assert world.steps == ["consents:2 linked", "log:0 linked"]
    assert (report.keys_shredded, report.consents_withdrawn) == (1, 1)
    assert report.devices_unlinked == ("a-1", "a-2")
    # switched off too: they still measure the same person
    for device in ("a-1", "a-2"):
        entry = world.registry.view.device_by_id(device)
        assert entry is not None
        assert not entry.active
    assert world.registry.view.device_by_id("a-3").active  # type: ignore[union-attr]
    assert report.logged
    assert not report.nothing_left
    with pytest.raises(Exception, match="erased"):
        open_sealed(
            token, tenant="acme", subject=SUBJECT, event_id="e1", key_of=world.keys.view.by_id
        )
    (record,) = world.logged
    assert (record.action, record.tenant, record.subject) == ("erase", "acme", SUBJECT)
    assert record.activity_id == "urn:cityhub:processing-activity:acme:erasure"
    assert record.items == 1
    # Only that subject of that tenant: the other subject and beta's namesake keep everything.
    assert world.keys.view.current("acme", OTHER) is not None
    assert world.keys.view.current("beta", SUBJECT) is not None
    assert [d.id for d in world.registry.view.devices_of_subject("beta", SUBJECT)] == ["b-1"]
    assert [d.id for d in world.registry.view.devices_of_subject("acme", OTHER)] == ["a-3"]


async def test_a_second_erasure_finds_nothing_left_and_is_logged_again() -> None:
    world, _ = await seeded()
    erasure = world.erasure()
    await erasure.erase(SYSTEM, "acme", SUBJECT)
    again = await erasure.erase(SYSTEM, "acme", SUBJECT)
    assert again.nothing_left
    assert (again.keys_shredded, again.consents_withdrawn, again.devices_unlinked) == (0, 0, ())
    assert len(world.logged) == 2


async def test_a_failed_log_write_fails_the_call_after_the_erasure_and_a_retry_logs_it() -> None:
    world, _ = await seeded()
    world.fail_log = True
    with pytest.raises(RuntimeError):
        await world.erasure().erase(SYSTEM, "acme", SUBJECT)
    assert world.keys.view.current("acme", SUBJECT) is None  # erased all the same
    world.fail_log = False
    report = await world.erasure().erase(SYSTEM, "acme", SUBJECT)
    assert report.nothing_left
    assert len(world.logged) == 1


async def test_a_device_linked_again_after_erasure_gets_a_new_key() -> None:
    world, _ = await seeded()
    old = world.keys.view.current("acme", SUBJECT)
    await world.erasure().erase(SYSTEM, "acme", SUBJECT)
    await world.registry.set_device_subject(SYSTEM, "acme", "a-1", SUBJECT)
    new = world.keys.view.current("acme", SUBJECT)
    assert new is not None
    assert old is not None
    assert new.key_id != old.key_id


async def test_who_may_erase() -> None:
    world, _ = await seeded()
    erasure = world.erasure()
    with pytest.raises(NotFound) as caught:
        await erasure.erase(Resident("acme", OTHER, "token:t1"), "acme", SUBJECT)
    assert SUBJECT not in str(caught.value)
    with pytest.raises(NotFound):
        await erasure.erase(Resident("beta", SUBJECT, "token:t2"), "acme", SUBJECT)
    with pytest.raises(NotFound):
        await erasure.erase(Principal("k", "beta", role=Role.OPERATOR), "acme", SUBJECT)
    with pytest.raises(NotFound):  # not even another tenant's admin key
        await erasure.erase(Principal("k", "beta", role=Role.ADMIN), "acme", SUBJECT)
    with pytest.raises(Forbidden):
        await erasure.erase(Principal("k", "acme", role=Role.SUBSCRIBER), "acme", SUBJECT)
    assert world.keys.view.current("acme", SUBJECT) is not None
    assert world.steps == []
    report = await erasure.erase(Resident("acme", SUBJECT, "token:t3"), "acme", SUBJECT)
    assert report.keys_shredded == 1


@pytest.mark.parametrize("subject", ["123456782", "a b c d e f", "x" * 65, "../../etc/passwd"])
async def test_a_subject_that_is_not_a_pseudonym_is_invalid_and_not_repeated(subject: str) -> None:
    world, _ = await seeded()
    with pytest.raises(Invalid) as caught:
        await world.erasure().erase(SYSTEM, "acme", subject)
    assert subject not in str(caught.value)


@pytest.fixture
async def api() -> AsyncIterator[tuple[Api, World]]:
    world, secrets = await seeded()
    subscriptions = Subscriptions(
        InMemorySubscriptionStore(), world.registry.view, resolver=public_resolver
    )
    app = build_api(world.registry, subscriptions=subscriptions, erasure=world.erasure())
    async with TestClient(TestServer(app)) as client:
        yield Api(client, world.registry, world.store, secrets, subscriptions), world


async def test_the_route_erases_for_the_tenants_operator_and_admin(
    api: tuple[Api, World],
) -> None:
    client, _ = api
    status, doc, _ = await client.call("POST", f"{A}/data-subjects/{SUBJECT}/erasure")
    assert status == 200, doc
    assert doc["keys_shredded"] == 1
    assert doc["devices_unlinked"] == ["a-1", "a-2"]
    assert doc["nothing_left"] is False
    assert SUBJECT not in str(doc)
    status, doc, _ = await client.call("POST", f"{A}/data-subjects/{SUBJECT}/erasure", who="admin")
    assert (status, doc["nothing_left"]) == (200, True)


async def test_the_route_from_the_other_tenant_and_for_a_subscriber(
    api: tuple[Api, World],
) -> None:
    client, world = api
    for who, status_expected in (("op_b", 404), ("sub_b", 404), ("sub_a", 403), (None, 401)):
        status, doc, _ = await client.call("POST", f"{A}/data-subjects/{SUBJECT}/erasure", who=who)
        assert status == status_expected, (who, doc)
        assert SUBJECT not in str(doc)
    assert world.keys.view.current("acme", SUBJECT) is not None
    # From the other side: acme's operator cannot erase beta's namesake.
    status, _, _ = await client.call("POST", f"{B}/data-subjects/{SUBJECT}/erasure")
    assert status == 404
    assert world.keys.view.current("beta", SUBJECT) is not None
    assert world.steps == []


async def test_the_route_refuses_a_bad_subject_without_repeating_it(
    api: tuple[Api, World],
) -> None:
    client, _ = api
    status, doc, _ = await client.call("POST", f"{A}/data-subjects/123456782/erasure")
    assert status == 400
    # Not even in ``instance``: a refused id may be a citizen number (a review found it there).
    assert "123456782" not in str(doc)
    assert doc["instance"] == f"{A}/data-subjects/{{subject}}/erasure"
    # Nor on a route that does not match (a review found it in 404 and 405 answers).
    for method, path in (
        ("GET", f"{A}/data-subjects/123456782/erasure"),
        ("GET", f"{A}/data-subjects/123456782/unknown"),
        ("GET", f"{A}/data-subjects/123456782"),
        ("GET", f"{A}/data-subjects/123456782/consents/"),
    ):
        status, doc, _ = await client.call(method, path)
        assert status in (404, 405), (path, status)
        assert "123456782" not in str(doc), path


async def test_the_route_is_503_without_the_service() -> None:
    world, secrets = await seeded()
    app = build_api(world.registry)
    async with TestClient(TestServer(app)) as client:
        response = await client.post(
            f"{A}/data-subjects/{SUBJECT}/erasure",
            headers={"Authorization": f"Bearer {secrets['op_a']}"},
        )
        assert response.status == 503


async def test_with_the_real_consent_service_every_consent_is_withdrawn() -> None:
    keys = InMemorySubjectKeyStore()
    world = await build_world(Registry(InMemoryRegistryStore(), subject_keys=keys))
    resident = Resident("acme", CONSENTING, "token:r1")
    await world.consents.give(resident, "acme", CONSENTING, "energy")
    assert world.consents.view.active("acme", CONSENTING, "energy")
    logged: list[ProcessingLogRecord] = []

    class Log:
        async def write(self, records: Sequence[ProcessingLogRecord]) -> None:
            logged.extend(records)

    erasure = Erasure(world.registry, keys, consents=world.consents, log_writer=Log())
    report = await erasure.erase(resident, "acme", CONSENTING)
    assert (report.keys_shredded, report.consents_withdrawn) == (1, 1)
    assert report.devices_unlinked == ("air-1",)
    assert not world.consents.view.active("acme", CONSENTING, "energy")
    (record,) = world.consents.view.of_subject("acme", CONSENTING)
    assert record.last.reason == CONSENT_REASON
    assert [r.action for r in logged] == ["erase"]


def test_the_cli_refuses_to_start_without_a_kek_and_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY", raising=False)
    monkeypatch.delenv("CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY_FILE", raising=False)
    monkeypatch.setenv("CITYHUB_STACK__STATE_DIR", str(tmp_path))  # no key file there
    main = click.Group("cityhub")
    main.add_command(data_subjects)
    result = CliRunner().invoke(
        main, ["data-subjects", "erase", "--tenant", "acme", SUBJECT, "--yes"]
    )
    assert result.exit_code == 1
    assert "no key-encryption key" in result.output
    assert "CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY" in result.output
    assert SUBJECT not in result.output


def test_the_cli_asks_before_it_erases() -> None:
    main = click.Group("cityhub")
    main.add_command(data_subjects)
    result = CliRunner().invoke(
        main, ["data-subjects", "erase", "--tenant", "acme", SUBJECT], input="n\n"
    )
    assert result.exit_code == 1
    assert "Aborted" in result.output
