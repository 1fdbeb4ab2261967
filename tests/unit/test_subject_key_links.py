"""A data subject's key is made before a device is linked to it, by every way of linking
(create, replace, the data-subject link, import), and a failure to make it writes no link.
Pure: the in-memory registry and key store, no broker."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from cityhub.schemas.registry import Classification, DeviceSpec, DeviceTypeSpec, TenantSpec
from cityhub.schemas.settings import Settings
from cityhub.streams.privacy.keys_store import InMemorySubjectKeyStore
from cityhub.streams.registry import cli
from cityhub.streams.registry.cli import session as cli_session
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.service_errors import Unavailable

SYSTEM = Principal.system()
SUBJECT = "res-7f3a9c21"
OTHER = "res-0b1c2d3e"


class WatchedKeys:
    """A key store that notes, at each ensure, whether the registry already showed a link to
    the subject (it must not), and can be made to fail."""

    def __init__(self, keys: InMemorySubjectKeyStore, registry_store: InMemoryRegistryStore):
        self.keys = keys
        self.registry_store = registry_store
        self.linked_before: list[bool] = []
        self.fail = False

    async def ensure(self, tenant: str, subject: str) -> object:
        linked = self.registry_store.view.devices_of_subject(tenant, subject)
        self.linked_before.append(bool(linked))
        if self.fail:
            raise Unavailable("the subject keys store is not started")
        return await self.keys.ensure(tenant, subject)


async def seeded() -> tuple[Registry, WatchedKeys]:
    store = InMemoryRegistryStore()
    await store.start()
    watched = WatchedKeys(InMemorySubjectKeyStore(), store)
    registry = Registry(store, subject_keys=watched)
    await registry.create_tenant(SYSTEM, TenantSpec(id="acme", name="Acme"))
    await registry.create_type(
        SYSTEM, "acme", DeviceTypeSpec(id="air", name="Air", classification=Classification.PERSONAL)
    )
    return registry, watched


def spec(device_id: str, **fields: object) -> DeviceSpec:
    return DeviceSpec.model_validate({"id": device_id, "name": device_id, "type": "air", **fields})


async def test_create_makes_the_key_before_the_link() -> None:
    registry, watched = await seeded()
    await registry.create_device(SYSTEM, "acme", spec("a-1", data_subject=SUBJECT))
    assert watched.keys.view.current("acme", SUBJECT) is not None
    assert watched.linked_before == [False]
    # A second device of the same subject uses the same key: nothing new on the topic.
    await registry.create_device(SYSTEM, "acme", spec("a-2", data_subject=SUBJECT))
    assert len(watched.keys.log) == 1


async def test_a_device_without_a_subject_makes_no_key() -> None:
    registry, watched = await seeded()
    await registry.create_device(SYSTEM, "acme", spec("a-1"))
    await registry.set_device_subject(SYSTEM, "acme", "a-1", None)
    assert watched.keys.log == []


async def test_link_and_replace_make_the_key_first() -> None:
    registry, watched = await seeded()
    await registry.create_device(SYSTEM, "acme", spec("a-1"))
    await registry.set_device_subject(SYSTEM, "acme", "a-1", SUBJECT)
    await registry.replace_device(SYSTEM, "acme", "a-1", spec("a-1", data_subject=OTHER))
    assert watched.keys.view.current("acme", SUBJECT) is not None
    assert watched.keys.view.current("acme", OTHER) is not None
    assert watched.linked_before == [False, False]


async def test_import_makes_each_subjects_key_once_before_the_rows() -> None:
    registry, watched = await seeded()
    rows = [
        spec("a-1", data_subject=SUBJECT),
        spec("a-2", data_subject=OTHER),
        spec("a-3", data_subject=SUBJECT),
        spec("a-4"),
    ]
    report = await registry.import_devices(SYSTEM, "acme", rows)
    assert report.created == 4
    assert sorted(watched.linked_before) == [False, False]
    assert len(watched.keys.log) == 2


async def test_no_key_no_link() -> None:
    registry, watched = await seeded()
    watched.fail = True
    with pytest.raises(Unavailable):
        await registry.create_device(SYSTEM, "acme", spec("a-1", data_subject=SUBJECT))
    assert registry.view.device_by_id("a-1") is None
    await registry.create_device(SYSTEM, "acme", spec("a-2"))  # no subject: no key needed
    with pytest.raises(Unavailable):
        await registry.set_device_subject(SYSTEM, "acme", "a-2", SUBJECT)
    with pytest.raises(Unavailable):
        await registry.import_devices(SYSTEM, "acme", [spec("a-3", data_subject=OTHER)])
    assert registry.view.devices_of_subject("acme", SUBJECT) == []
    assert registry.view.device_by_id("a-3") is None
    # The device ids are free again: the failed writes released their reservations.
    watched.fail = False
    await registry.create_device(SYSTEM, "acme", spec("a-1", data_subject=SUBJECT))


def test_the_cli_makes_the_key_only_when_a_command_links(monkeypatch: pytest.MonkeyPatch) -> None:
    store = InMemoryRegistryStore()
    keys = InMemorySubjectKeyStore()
    started: list[str] = []

    def key_store(settings: Settings) -> InMemorySubjectKeyStore:
        started.append("keys")
        return keys

    monkeypatch.setattr(cli_session, "store_factory", lambda settings: store)
    monkeypatch.setattr(cli_session, "key_store_factory", key_store)
    main = click.Group("cityhub")
    cli.mount(main)
    runner = CliRunner()
    for args in (
        ["tenants", "create", "acme", "--name", "Acme"],
        [
            "types",
            "create",
            "--tenant",
            "acme",
            "air",
            "--name",
            "Air",
            "--classification",
            "personal",
        ],
        ["devices", "create", "--tenant", "acme", "a-1", "--type", "air"],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
    assert started == []  # nobody linked: no key store, no KEK needed
    args = ["devices", "update", "--tenant", "acme", "a-1", "--data-subject", SUBJECT]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert started == ["keys"]
    assert keys.view.current("acme", SUBJECT) is not None
