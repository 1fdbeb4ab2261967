"""The registry service's rules on the in-memory store: authorisation across tenants and roles,
keys, conflicts, validation, pagination, import with bad rows, and write-only secrets."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import pytest
from pydantic import ValidationError

from cityhub.schemas.registry import (
    Classification,
    DeviceSpec,
    DeviceTypeSpec,
    FieldMapping,
    Location,
    Role,
    TenantSpec,
)
from cityhub.streams.registry.paging import MAX_PAGE_SIZE
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.service_errors import (
    Conflict,
    FieldError,
    Forbidden,
    Invalid,
    NotFound,
    Unauthenticated,
)

ADMIN = Principal.system()
APP_KEY = "0123456789abcdef0123456789ABCDEF"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def device(device_id: str, **kw: Any) -> DeviceSpec:
    doc: dict[str, Any] = {"id": device_id, "name": f"Device {device_id}", "type": "aq", **kw}
    return DeviceSpec.model_validate(doc)


class World:
    """Two tenants, each with a type, a device and keys of every role."""

    def __init__(self) -> None:
        self.store = InMemoryRegistryStore()
        self.registry = Registry(self.store, clock=Clock())
        self.secrets: dict[tuple[str, Role], str] = {}

    async def build(self) -> World:
        r = self.registry
        for tenant in ("north", "south"):
            await r.create_tenant(ADMIN, TenantSpec(id=tenant, name=tenant.title()))
            for role in Role:
                _, secret = await r.create_key(ADMIN, tenant, role, f"{tenant} {role}")
                self.secrets[(tenant, role)] = secret
            await r.create_type(ADMIN, tenant, DeviceTypeSpec(id="aq", name="Air quality"))
        await r.create_device(
            ADMIN, "north", device("n-1", dev_eui="70b3d57ed0000001", app_key=APP_KEY)
        )
        await r.create_device(ADMIN, "south", device("s-1", dev_eui="70b3d57ed0000002"))
        return self

    def who(self, tenant: str, role: Role) -> Principal:
        return self.registry.authenticate(self.secrets[(tenant, role)])


@pytest.fixture
async def world() -> World:
    return await World().build()


# --- authentication and keys ------------------------------------------------------------------
async def test_a_key_authenticates_as_its_tenant_and_role(world: World) -> None:
    who = world.who("north", Role.OPERATOR)
    assert (who.tenant, who.role) == ("north", Role.OPERATOR)
    assert world.secrets[("north", Role.OPERATOR)].startswith(f"chk_{who.key_id}_")


@pytest.mark.parametrize(
    "secret", ["", "chk_", "chk_nokey", "chk_0000000000000000_abc", "Bearer x", "chk__x"]
)
async def test_unknown_or_malformed_secrets_are_unauthenticated(world: World, secret: str) -> None:
    with pytest.raises(Unauthenticated):
        world.registry.authenticate(secret)


async def test_a_wrong_secret_for_a_real_key_id_is_unauthenticated(world: World) -> None:
    real = world.secrets[("north", Role.ADMIN)]
    with pytest.raises(Unauthenticated):
        world.registry.authenticate(real[:-2] + ("AA" if not real.endswith("AA") else "BB"))


async def test_a_revoked_key_is_unauthenticated_everywhere(world: World) -> None:
    who = world.who("north", Role.OPERATOR)
    revoked = await world.registry.revoke_key(ADMIN, who.key_id)
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthenticated, match="revoked"):
        world.registry.authenticate(world.secrets[("north", Role.OPERATOR)])
    again = await world.registry.revoke_key(ADMIN, who.key_id)
    assert again.revoked_at == revoked.revoked_at


async def test_keys_are_stored_as_fingerprints_only(world: World) -> None:
    topic = repr(world.store.log)
    for secret in world.secrets.values():
        assert secret not in topic
        assert secret.split("_", 2)[2] not in topic
    for key in world.registry.list_keys(ADMIN):
        assert "secret_sha256" not in key.public()
        assert key.secret_sha256 not in repr(key)


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.SUBSCRIBER])
async def test_only_admins_manage_keys_and_tenants(world: World, role: Role) -> None:
    who = world.who("north", role)
    r = world.registry
    with pytest.raises(Forbidden):
        await r.create_key(who, "north", Role.ADMIN, "escalate")
    with pytest.raises(Forbidden):
        await r.revoke_key(who, who.key_id)
    with pytest.raises(Forbidden):
        r.list_keys(who, "north")
    with pytest.raises(Forbidden):
        await r.create_tenant(who, TenantSpec(id="east", name="East"))
    with pytest.raises(Forbidden):
        r.list_tenants(who)


async def test_admin_key_management(world: World) -> None:
    r = world.registry
    assert [t.id for t in r.list_tenants(ADMIN)] == ["north", "south"]
    assert {k.tenant for k in r.list_keys(ADMIN, "south")} == {"south"}
    assert len(r.list_keys(ADMIN)) == 6
    with pytest.raises(NotFound):
        await r.create_key(ADMIN, "nowhere", Role.OPERATOR, "x")
    with pytest.raises(Invalid):
        await r.create_key(ADMIN, "north", Role.OPERATOR, "   ")
    with pytest.raises(NotFound):
        await r.revoke_key(ADMIN, "0000000000000000")
    with pytest.raises(Conflict):
        await r.create_tenant(ADMIN, TenantSpec(id="north", name="Again"))


# --- tenancy: another tenant's things are not found, whatever the role --------------------------
@pytest.mark.parametrize("role", [Role.OPERATOR, Role.SUBSCRIBER])
async def test_every_operation_on_another_tenant_is_not_found(world: World, role: Role) -> None:
    who = world.who("north", role)
    r = world.registry
    spec = DeviceTypeSpec(id="aq", name="x")
    calls: list[Callable[[], object]] = [
        lambda: r.get_type(who, "south", "aq"),
        lambda: r.list_types(who, "south"),
        lambda: r.get_device(who, "south", "s-1"),
        lambda: r.list_devices(who, "south"),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            call()
    writes: list[Callable[[], Awaitable[object]]] = [
        lambda: r.create_type(who, "south", DeviceTypeSpec(id="new", name="x")),
        lambda: r.replace_type(who, "south", "aq", spec),
        lambda: r.delete_type(who, "south", "aq"),
        lambda: r.create_device(who, "south", device("new-1")),
        lambda: r.replace_device(who, "south", "s-1", device("s-1")),
        lambda: r.delete_device(who, "south", "s-1"),
        lambda: r.import_devices(who, "south", [device("new-2")]),
    ]
    for write in writes:
        with pytest.raises(NotFound):
            await write()
    # Nor through its own tenant's path: south's device is not north's.
    with pytest.raises(NotFound):
        r.get_device(who, "north", "s-1")
    with pytest.raises(NotFound):
        await r.delete_device(world.who("north", Role.OPERATOR), "north", "s-1")
    assert r.view.device_by_id("s-1") is not None


async def test_subscribers_read_but_may_not_write(world: World) -> None:
    who = world.who("north", Role.SUBSCRIBER)
    r = world.registry
    assert r.get_device(who, "north", "n-1").id == "n-1"
    assert [t.id for t in r.list_types(who, "north").items] == ["aq"]
    writes: list[Callable[[], Awaitable[object]]] = [
        lambda: r.create_type(who, "north", DeviceTypeSpec(id="new", name="x")),
        lambda: r.replace_type(who, "north", "aq", DeviceTypeSpec(id="aq", name="x")),
        lambda: r.delete_type(who, "north", "aq"),
        lambda: r.create_device(who, "north", device("new-1")),
        lambda: r.replace_device(who, "north", "n-1", device("n-1")),
        lambda: r.delete_device(who, "north", "n-1"),
        lambda: r.import_devices(who, "north", [device("new-2")]),
    ]
    for write in writes:
        with pytest.raises(Forbidden):
            await write()


async def test_an_admin_key_of_one_tenant_reaches_every_tenant(world: World) -> None:
    who = world.who("north", Role.ADMIN)
    assert world.registry.get_device(who, "south", "s-1").tenant == "south"


# --- device types -------------------------------------------------------------------------------
async def test_type_rules(world: World) -> None:
    r = world.registry
    op = world.who("north", Role.OPERATOR)
    with pytest.raises(Conflict):
        await r.create_type(op, "north", DeviceTypeSpec(id="aq", name="again"))
    with pytest.raises(Invalid) as bad:
        await r.create_type(op, "north", DeviceTypeSpec(id="x", name="x", decoder="nope"))
    assert bad.value.errors[0].field == "decoder"
    assert "cayenne-lpp" in bad.value.errors[0].message
    lpp = await r.create_type(
        op,
        "north",
        DeviceTypeSpec(
            id="lpp", name="LPP", decoder="cayenne-lpp", classification=Classification.PUBLIC
        ),
    )
    replaced = await r.replace_type(
        op, "north", "lpp", DeviceTypeSpec(id="lpp", name="Renamed", decoder="cayenne-lpp")
    )
    assert replaced.created_at == lpp.created_at
    assert replaced.updated_at > lpp.updated_at
    assert r.get_type(op, "north", "lpp").name == "Renamed"
    with pytest.raises(Invalid):
        await r.replace_type(op, "north", "lpp", DeviceTypeSpec(id="other", name="x"))
    with pytest.raises(NotFound):
        await r.replace_type(op, "north", "ghost", DeviceTypeSpec(id="ghost", name="x"))
    with pytest.raises(Conflict, match="used by 1"):
        await r.delete_type(op, "north", "aq")
    await r.delete_type(op, "north", "lpp")
    with pytest.raises(NotFound):
        r.get_type(op, "north", "lpp")


async def test_types_paginate(world: World) -> None:
    r = world.registry
    for i in range(5):
        await r.create_type(ADMIN, "north", DeviceTypeSpec(id=f"t{i}", name="t"))
    page = r.list_types(ADMIN, "north", limit=4)
    assert [t.id for t in page.items] == ["aq", "t0", "t1", "t2"]
    page = r.list_types(ADMIN, "north", limit=4, cursor=page.next_cursor)
    assert [t.id for t in page.items] == ["t3", "t4"]
    assert page.next_cursor is None


# --- devices ------------------------------------------------------------------------------------
async def test_device_ids_and_dev_euis_are_global(world: World) -> None:
    op = world.who("north", Role.OPERATOR)
    r = world.registry
    with pytest.raises(Conflict, match="not available"):  # south's: said without naming it
        await r.create_device(op, "north", device("s-1"))
    with pytest.raises(Conflict) as taken:
        await r.create_device(op, "north", device("n-2", dev_eui="70B3D57ED0000002"))
    assert taken.value.errors[0].field == "dev_eui"
    with pytest.raises(Conflict):
        await r.replace_device(op, "north", "n-1", device("n-1", dev_eui="70b3d57ed0000002"))


async def test_a_device_needs_a_type_of_its_tenant(world: World) -> None:
    op = world.who("north", Role.OPERATOR)
    await world.registry.create_type(ADMIN, "south", DeviceTypeSpec(id="south-only", name="x"))
    with pytest.raises(Invalid) as bad:
        await world.registry.create_device(op, "north", device("n-2", type="south-only"))
    assert bad.value.errors == (
        FieldError("type", "no device type 'south-only' in tenant 'north'; create the type first"),
    )


async def test_replace_keeps_created_at_and_app_key(world: World) -> None:
    op = world.who("north", Role.OPERATOR)
    r = world.registry
    before = r.get_device(op, "north", "n-1")
    after = await r.replace_device(
        op,
        "north",
        "n-1",
        device("n-1", dev_eui="70b3d57ed0000009", area="centre", tags=["roof"], active=False),
    )
    assert after.created_at == before.created_at
    assert after.updated_at > before.updated_at
    assert after.public()["has_app_key"] is True
    view = r.view
    assert view.device_by_eui("70b3d57ed0000001") is None
    entry = view.device_by_eui("70b3d57ed0000009")
    assert entry is not None
    assert (entry.area, entry.tags, entry.active) == ("centre", ("roof",), False)
    with pytest.raises(Invalid):
        await r.replace_device(op, "north", "n-1", device("n-2"))
    with pytest.raises(NotFound):
        await r.replace_device(op, "north", "ghost", device("ghost"))


async def test_delete_device(world: World) -> None:
    op = world.who("north", Role.OPERATOR)
    await world.registry.delete_device(op, "north", "n-1")
    with pytest.raises(NotFound):
        world.registry.get_device(op, "north", "n-1")
    assert world.registry.view.device_by_eui("70b3d57ed0000001") is None
    await world.registry.delete_type(op, "north", "aq")  # no device uses it any more


async def test_listing_filters_and_pages(world: World) -> None:
    r = world.registry
    await r.create_type(ADMIN, "north", DeviceTypeSpec(id="noise", name="Noise"))
    for i in range(30):
        await r.create_device(
            ADMIN,
            "north",
            device(
                f"d-{29 - i:02d}",
                type="noise" if i % 2 else "aq",
                area="centre" if i % 3 == 0 else "port",
                tags=["roof"] if i % 5 == 0 else [],
                active=i % 7 != 0,
            ),
        )
    seen: list[str] = []
    cursor = None
    while True:
        page = r.list_devices(ADMIN, "north", limit=7, cursor=cursor)
        seen += [d.id for d in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(seen)
    assert len(seen) == 31
    noise = r.list_devices(ADMIN, "north", type_id="noise", limit=1000).items
    assert len(noise) == 15
    assert all(d.type == "noise" for d in noise)
    roof_centre = r.list_devices(ADMIN, "north", area="centre", tag="roof", limit=1000).items
    assert {d.id for d in roof_centre} == {f"d-{29 - i:02d}" for i in (0, 15)}
    inactive = r.list_devices(ADMIN, "north", active=False, limit=1000).items
    assert len(inactive) == 5
    with pytest.raises(Invalid):
        r.list_devices(ADMIN, "north", limit=0)


async def test_limit_is_capped(world: World) -> None:
    rows = [device(f"bulk-{i:05d}") for i in range(MAX_PAGE_SIZE + 10)]
    await world.registry.import_devices(ADMIN, "north", rows)
    page = world.registry.list_devices(ADMIN, "north", limit=5000)
    assert len(page.items) == MAX_PAGE_SIZE
    assert page.next_cursor == page.items[-1].id


# --- import -------------------------------------------------------------------------------------
async def test_import_writes_the_good_rows_and_names_the_bad_ones(world: World) -> None:
    op = world.who("north", Role.OPERATOR)
    rows: list[DeviceSpec | list[FieldError]] = [
        device("i-1", dev_eui="a000000000000001"),
        [FieldError("dev_eui", "DevEUI must be 16 hexadecimal digits, got 'zz'")],
        device("i-2", type="ghost"),
        device("s-1"),  # south's device
        device("i-3", dev_eui="70b3d57ed0000002"),  # south's DevEUI
        device("i-1"),  # same id as row 1
        device("i-4", dev_eui="a000000000000001"),  # same DevEUI as row 1
        device("n-1", name="Updated"),  # upsert of an existing device
        device("i-5", location={"latitude": 52.1, "longitude": 5.1}),
    ]
    writes_before = len(world.store.log)
    report = await world.registry.import_devices(op, "north", rows)
    assert (report.created, report.updated, report.failed) == (2, 1, 6)
    by_row = {r.row: r for r in report.rows}
    assert [by_row[i].status for i in range(1, 10)] == [
        "created", "error", "error", "error", "error", "error", "error", "updated", "created",
    ]  # fmt: skip
    assert by_row[2].errors[0].field == "dev_eui"
    assert by_row[3].errors[0].field == "type"
    assert by_row[4].errors[0].field == "id"
    assert by_row[5].errors[0].field == "dev_eui"
    assert "row 1" in by_row[6].errors[0].message
    assert "row 1" in by_row[7].errors[0].message
    assert len(world.store.log) - writes_before == 3
    updated = world.registry.get_device(op, "north", "n-1")
    assert updated.name == "Updated"
    assert updated.app_key_sha256 is not None  # kept: the row had no key
    assert world.registry.view.device_by_id("i-5") is not None
    assert world.registry.get_device(op, "north", "i-5").location == Location(
        latitude=52.1, longitude=5.1
    )


# --- secrets never leave ------------------------------------------------------------------------
async def test_app_key_is_in_no_output(world: World) -> None:
    op = world.who("north", Role.OPERATOR)
    r = world.registry
    created = await r.create_device(op, "north", device("k-1", app_key=APP_KEY))
    report = await r.import_devices(op, "north", [device("k-2", app_key=APP_KEY)])
    outputs: list[Any] = [
        created.public(),
        r.get_device(op, "north", "k-1").public(),
        [d.public() for d in r.list_devices(op, "north").items],
        asdict(report),
        [k.public() for k in r.list_keys(ADMIN)],
    ]
    text = json.dumps(outputs)
    fingerprint = r.get_device(op, "north", "k-1").app_key_sha256
    assert fingerprint is not None
    for secret in (APP_KEY, APP_KEY.lower(), fingerprint):
        assert secret not in text
    assert secret not in repr(r.view.device_by_id("k-1"))
    assert APP_KEY not in repr(world.store.log)
    assert APP_KEY.lower() not in repr(world.store.log)


# --- the pipeline's lookups ----------------------------------------------------------------------
async def test_classification_comes_from_the_type(world: World) -> None:
    r = world.registry
    await r.create_type(
        ADMIN, "north", DeviceTypeSpec(id="open", name="x", classification=Classification.PUBLIC)
    )
    await r.create_device(ADMIN, "north", device("o-1", type="open"))
    entry = r.view.device_by_id("o-1")
    assert entry is not None
    assert r.device_types.classification_of(entry) is Classification.PUBLIC
    n1 = r.view.device_by_id("n-1")
    assert n1 is not None
    assert r.device_types.classification_of(n1) is Classification.INTERNAL
    type_ = r.device_types.of_device(entry)
    assert type_ is not None
    assert type_.id == "open"


@pytest.mark.parametrize("bad", [{"scale": "Infinity"}, {"offset": "NaN"}, {"scale": float("inf")}])
def test_a_field_mapping_refuses_infinite_or_nan_factors(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        FieldMapping.model_validate({"field": "t", "quantity": "temperature", **bad})
