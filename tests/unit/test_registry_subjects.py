"""Data subjects (issue 10, item 2): a device of a personal type linked to a tenant's
pseudonymous id. Validation against hostile input, the service's rules (personal types only,
keep on omission, unlink with null, type changes), the view's index, and the import's column.
Pure: the in-memory registry, no broker."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from cityhub.schemas.registry import (
    Classification,
    Device,
    DeviceSpec,
    DeviceTypeSpec,
    Role,
    TenantSpec,
    validate_data_subject,
)
from cityhub.streams.registry.importer import parse_import
from cityhub.streams.registry.principals import Principal, authenticate
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.registry.view import RegistryView
from cityhub.streams.service_errors import Conflict, Forbidden, Invalid

SYSTEM = Principal.system()
SUBJECT = "res-7f3a9c21"


@pytest.mark.parametrize(
    "value",
    ["res-7f3a9c21", "A1b2C3d4", "x" * 64, "subject.2026_01-a", "12345678a"],
)
def test_a_pseudonym_is_accepted_as_given(value: str) -> None:
    assert validate_data_subject(value) == value
    assert DeviceSpec(id="d", name="D", type="t", data_subject=value).data_subject == value


@pytest.mark.parametrize(
    "value",
    [
        "123456782",  # a BSN: 9 digits
        "0612345678",  # a phone number
        "31612345678",
        "1234567",  # too short
        "short",
        "x" * 65,  # too long
        "Jan Jansen",  # a name with a space
        "jan@example.org",
        "+31612345678",
        "res/../../etc",
        "res-7f3a\n9c21",
        "res-7f3a9c21\x00",
        "rés-7f3a9c21",  # non-ASCII letters are refused: an opaque token is ASCII
        "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19",  # full-width digits
        "<script>alert(1)</script>",
        "",
    ],
)
def test_anything_but_an_opaque_pseudonym_is_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DeviceSpec(id="d", name="D", type="t", data_subject=value)
    errors = caught.value.errors(include_input=False)
    assert errors[0]["loc"] == ("data_subject",)
    if value.strip():
        assert value.strip() not in errors[0]["msg"]


def test_the_subject_never_appears_in_a_repr_nor_in_public_unless_asked() -> None:
    spec = DeviceSpec(id="d", name="D", type="t", data_subject=SUBJECT)
    assert SUBJECT not in repr(spec)
    record = Device(
        tenant="acme",
        id="d",
        name="D",
        type="t",
        dev_eui=None,
        location=None,
        area=None,
        tags=[],
        active=True,
        data_subject=SUBJECT,
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
    )
    assert SUBJECT not in repr(record)
    assert SUBJECT not in str(record)
    assert "data_subject" not in record.public()
    assert record.public(with_subject=True)["data_subject"] == SUBJECT


async def seeded() -> Registry:
    store = InMemoryRegistryStore()
    await store.start()
    registry = Registry(store)
    for tenant in ("acme", "beta"):
        await registry.create_tenant(SYSTEM, TenantSpec(id=tenant, name=tenant.title()))
        await registry.create_type(
            SYSTEM,
            tenant,
            DeviceTypeSpec(id="air", name="Air", classification=Classification.PERSONAL),
        )
        await registry.create_type(SYSTEM, tenant, DeviceTypeSpec(id="th", name="Thermo"))
    return registry


def spec(device_id: str, type_id: str = "air", **fields: object) -> DeviceSpec:
    return DeviceSpec.model_validate(
        {"id": device_id, "name": device_id, "type": type_id, **fields}
    )


async def test_link_keep_unlink_and_the_view_index() -> None:
    registry = await seeded()
    view = registry.view
    await registry.create_device(SYSTEM, "acme", spec("a-1", data_subject=SUBJECT))
    await registry.create_device(SYSTEM, "acme", spec("a-2", data_subject=SUBJECT))
    await registry.create_device(SYSTEM, "beta", spec("b-1", data_subject=SUBJECT))
    assert [d.id for d in view.devices_of_subject("acme", SUBJECT)] == ["a-1", "a-2"]
    assert [d.id for d in view.devices_of_subject("beta", SUBJECT)] == ["b-1"]
    # A replace that does not name the field keeps the link (an older client cannot drop it).
    kept = await registry.replace_device(SYSTEM, "acme", "a-1", spec("a-1", area="west"))
    assert kept.data_subject == SUBJECT
    unlinked = await registry.replace_device(SYSTEM, "acme", "a-1", spec("a-1", data_subject=None))
    assert unlinked.data_subject is None
    assert [d.id for d in view.devices_of_subject("acme", SUBJECT)] == ["a-2"]
    await registry.delete_device(SYSTEM, "acme", "a-2")
    assert view.devices_of_subject("acme", SUBJECT) == []
    assert view.subjects_linked_of_type("acme", "air") == 0
    assert view.subjects_linked_of_type("beta", "air") == 1


async def test_a_device_of_a_non_personal_type_cannot_be_linked() -> None:
    registry = await seeded()
    with pytest.raises(Invalid) as caught:
        await registry.create_device(SYSTEM, "acme", spec("t-1", "th", data_subject=SUBJECT))
    assert [e.field for e in caught.value.errors] == ["data_subject"]
    assert registry.view.device_by_id("t-1") is None


async def test_a_linked_device_keeps_a_personal_type_unless_the_same_write_unlinks() -> None:
    registry = await seeded()
    await registry.create_device(SYSTEM, "acme", spec("a-1", data_subject=SUBJECT))
    with pytest.raises(Invalid) as caught:
        await registry.replace_device(SYSTEM, "acme", "a-1", spec("a-1", "th"))
    assert [e.field for e in caught.value.errors] == ["data_subject"]
    assert registry.view.device_by_id("a-1").type == "air"  # type: ignore[union-attr]
    moved = await registry.replace_device(
        SYSTEM, "acme", "a-1", spec("a-1", "th", data_subject=None)
    )
    assert (moved.type, moved.data_subject) == ("th", None)


async def test_a_type_with_linked_devices_cannot_stop_being_personal() -> None:
    registry = await seeded()
    await registry.create_device(SYSTEM, "acme", spec("a-1", data_subject=SUBJECT))
    internal = DeviceTypeSpec(id="air", name="Air", classification=Classification.INTERNAL)
    with pytest.raises(Conflict) as caught:
        await registry.replace_type(SYSTEM, "acme", "air", internal)
    assert [e.field for e in caught.value.errors] == ["classification"]
    assert caught.value.detail.startswith("1 device(s) of type")
    # another tenant's admin key may not touch a personal type at all (and so learns nothing of
    # its devices' links), linked or not, nor make a type personal
    _, secret = await registry.create_key(SYSTEM, "beta", Role.ADMIN, "beta-admin")
    beta_admin = authenticate(registry.view, secret)
    personal = DeviceTypeSpec(id="air", name="Air", classification=Classification.PERSONAL)
    for write in (
        registry.replace_type(beta_admin, "acme", "air", internal),
        registry.replace_type(beta_admin, "acme", "air", personal),
        registry.delete_type(beta_admin, "acme", "air"),
        registry.create_type(beta_admin, "acme", personal.model_copy(update={"id": "air2"})),
        registry.replace_type(
            beta_admin, "acme", "th", DeviceTypeSpec(id="th", name="T", classification="personal")
        ),
    ):
        with pytest.raises(Forbidden):
            await write
    # what it manages still works: a type that is not personal
    await registry.replace_type(beta_admin, "acme", "th", DeviceTypeSpec(id="th", name="Thermo 2"))
    await registry.replace_device(SYSTEM, "acme", "a-1", spec("a-1", data_subject=None))
    changed = await registry.replace_type(SYSTEM, "acme", "air", internal)
    assert changed.classification is Classification.INTERNAL


async def test_the_import_links_keeps_and_unlinks_by_its_column() -> None:
    registry = await seeded()
    body = f"id,name,type,data_subject\na-1,A1,air,{SUBJECT}\na-2,A2,air,\nt-1,T1,th,{SUBJECT}\n"
    rows = parse_import(body.encode(), "text/csv", default_type=None, max_rows=10)
    report = await registry.import_devices(SYSTEM, "acme", rows)
    assert (report.created, report.failed) == (2, 1)
    assert [e.field for e in report.rows[2].errors] == ["data_subject"]
    assert registry.view.device_by_id("a-1").data_subject == SUBJECT  # type: ignore[union-attr]
    assert registry.view.device_by_id("a-2").data_subject is None  # type: ignore[union-attr]
    # An empty cell keeps the link, "-" unlinks; a bad pseudonym is a row error not echoing it.
    body = "id,name,type,data_subject\na-1,A1,air,\na-2,A2,air,123456782\n"
    rows = parse_import(body.encode(), "text/csv", default_type=None, max_rows=10)
    report = await registry.import_devices(SYSTEM, "acme", rows)
    assert registry.view.device_by_id("a-1").data_subject == SUBJECT  # type: ignore[union-attr]
    assert report.failed == 1
    assert "123456782" not in json.dumps([e.message for r in report.rows for e in r.errors])
    body = "id,name,type,data_subject\na-1,A1,air,-\n"
    rows = parse_import(body.encode(), "text/csv", default_type=None, max_rows=10)
    await registry.import_devices(SYSTEM, "acme", rows)
    assert registry.view.device_by_id("a-1").data_subject is None  # type: ignore[union-attr]
    doc = [{"id": "a-3", "name": "A3", "type": "air", "data_subject": SUBJECT}]
    rows = parse_import(
        json.dumps(doc).encode(), "application/json", default_type=None, max_rows=10
    )
    await registry.import_devices(SYSTEM, "acme", rows)
    assert [d.id for d in registry.view.devices_of_subject("acme", SUBJECT)] == ["a-3"]


def test_the_view_reads_the_subject_from_the_topic_and_rejects_a_wrong_type() -> None:
    view = RegistryView()
    doc: dict[str, object] = {
        "kind": "device",
        "tenant": "acme",
        "id": "a-1",
        "name": "A1",
        "type": "air",
        "dev_eui": None,
        "location": None,
        "area": None,
        "tags": [],
        "active": True,
        "data_subject": SUBJECT,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    view.apply("device/a-1", json.dumps(doc).encode(), 0)
    assert [d.id for d in view.devices_of_subject("acme", SUBJECT)] == ["a-1"]
    entry = view.device_by_id("a-1")
    assert entry is not None
    assert SUBJECT not in repr(entry)
    assert entry.to_device().data_subject == SUBJECT
    view.apply("device/a-1", json.dumps({**doc, "data_subject": 123}).encode(), 1)
    assert view.malformed == 1
    view.apply("device/a-1", None, 2)
    assert view.devices_of_subject("acme", SUBJECT) == []


async def test_linking_or_unlinking_twice_writes_nothing_the_second_time() -> None:
    registry = await seeded()
    await registry.create_device(SYSTEM, "acme", spec("a-1"))
    linked = await registry.set_device_subject(SYSTEM, "acme", "a-1", SUBJECT)
    offset = registry.view.offset
    again = await registry.set_device_subject(SYSTEM, "acme", "a-1", SUBJECT)
    assert (again.data_subject, again.updated_at) == (SUBJECT, linked.updated_at)
    assert registry.view.offset == offset
    await registry.set_device_subject(SYSTEM, "acme", "a-1", None)
    offset = registry.view.offset
    await registry.set_device_subject(SYSTEM, "acme", "a-1", None)
    assert registry.view.offset == offset
    assert registry.view.devices_of_subject("acme", SUBJECT) == []


def test_a_tts_end_device_takes_the_data_subject_beside_its_fields() -> None:
    end_device = {
        "ids": {
            "device_id": "tts-1",
            "dev_eui": "70B3D57ED00000C1",
            "application_ids": {"application_id": "city-air"},
        },
        "name": "From TTS",
        "type": "air",
        "data_subject": SUBJECT,
    }
    rows = parse_import(json.dumps([end_device]).encode(), "application/json", max_rows=10)
    assert isinstance(rows[0], DeviceSpec)
    assert rows[0].data_subject == SUBJECT
    rows = parse_import(
        json.dumps([{**end_device, "data_subject": "123456782"}]).encode(),
        "application/json",
        max_rows=10,
    )
    assert not isinstance(rows[0], DeviceSpec)
    assert [e.field for e in rows[0]] == ["data_subject"]
    assert "123456782" not in rows[0][0].message
