"""The registry view: applying records and tombstones, surviving malformed ones, indexes,
pagination, and staying smaller than the plain decoded records."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest

from cityhub.schemas.registry import ApiKey, Device, DeviceType, Location, Role, Tenant
from cityhub.streams.registry.view import DeviceEntry, RegistryView, SortedIds

TS = "2025-01-01T00:00:00.000Z"


def device_doc(i: int, *, tenant: str = "city", **kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "kind": "device",
        "tenant": tenant,
        "id": f"dev-{i:06d}",
        "name": f"Sensor {i}",
        "type": "aq",
        "dev_eui": f"{i:016x}",
        "location": {"latitude": 52.0 + i / 1e6, "longitude": 5.0, "altitude": None},
        "area": f"area-{i % 20}",
        "tags": ["roof"] if i % 2 else [],
        "active": True,
        "app_key_sha256": None,
        "created_at": TS,
        "updated_at": TS,
    }
    doc.update(kw)
    return doc


def put(view: RegistryView, doc: dict[str, Any], offset: int | None = None) -> None:
    key = f"device/{doc['id']}" if doc["kind"] == "device" else doc.pop("_key")
    view.apply(key, json.dumps(doc).encode(), view.offset + 1 if offset is None else offset)


def test_apply_and_lookups() -> None:
    view = RegistryView()
    put(view, device_doc(1))
    entry = view.device_by_eui("0000000000000001")
    assert entry is not None
    assert entry is view.device_by_id("dev-000001")
    assert entry.location == Location(latitude=52.000001, longitude=5.0)
    assert entry.to_device() == Device.model_validate(device_doc(1))
    assert DeviceEntry.from_device(entry.to_device()) == entry
    assert view.offset == 0
    assert view.device_by_eui("ffffffffffffffff") is None


def test_other_kinds() -> None:
    view = RegistryView()
    records = [
        Tenant(id="city", name="City", created_at=TS, updated_at=TS),
        DeviceType(
            tenant="city",
            id="aq",
            name="AQ",
            decoder="network",
            fields=[],
            only_mapped=False,
            classification="public",  # type: ignore[arg-type]  # pydantic coerces
            created_at=TS,
            updated_at=TS,
        ),
        ApiKey(id="k1", tenant="city", role=Role.ADMIN, name="k", secret_sha256="0", created_at=TS),
    ]
    keys = ["tenant/city", "device_type/city/aq", "api_key/k1"]
    for offset, (key, record) in enumerate(zip(keys, records, strict=True)):
        view.apply(key, record.model_dump_json().encode(), offset)
    assert view.tenant("city") == records[0]
    assert view.device_type("city", "aq") == records[1]
    assert view.device_type("elsewhere", "aq") is None
    assert view.api_key("k1") == records[2]
    assert view.counts_by_kind() == {"tenant": 1, "device_type": 1, "device": 0, "api_key": 1}
    for offset, key in enumerate(keys, start=10):
        view.apply(key, None, offset)
    assert view.counts_by_kind() == {"tenant": 0, "device_type": 0, "device": 0, "api_key": 0}
    assert view.offset == 12


def test_update_moves_the_dev_eui_and_type_use() -> None:
    view = RegistryView()
    put(view, device_doc(1))
    put(view, device_doc(1, dev_eui="00000000000000ff", type="noise"))
    assert view.device_by_eui("0000000000000001") is None
    entry = view.device_by_eui("00000000000000ff")
    assert entry is not None
    assert entry.type == "noise"
    assert view.type_in_use("city", "aq") == 0
    assert view.type_in_use("city", "noise") == 1
    assert view.device_count("city") == 1


def test_tombstone_deletes_and_unindexes() -> None:
    view = RegistryView()
    put(view, device_doc(1))
    put(view, device_doc(2))
    view.apply("device/dev-000001", None, 5)
    assert view.device_by_id("dev-000001") is None
    assert view.device_by_eui("0000000000000001") is None
    assert view.device_count("city") == 1
    assert view.type_in_use("city", "aq") == 1
    page, _ = view.devices_page("city", limit=10)
    assert [d.id for d in page] == ["dev-000002"]
    view.apply("device/never-existed", None, 6)  # a tombstone for nothing is fine
    assert view.malformed == 0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("device/x", b"not json"),
        ("device/x", b"[1, 2]"),
        ("device/x", b'{"kind": "spaceship"}'),
        ("device/x", json.dumps({**device_doc(1), "id": "x", "tags": "roof"}).encode()),
        ("device/x", json.dumps({**device_doc(1), "id": "x", "active": "yes"}).encode()),
        (
            "device/x",
            json.dumps({k: v for k, v in device_doc(1).items() if k != "tenant"}).encode(),
        ),
        ("device/other", json.dumps(device_doc(1)).encode()),  # key of another record
        ("tenant/a", b'{"kind": "tenant", "id": "a"}'),
        ("spaceship/1", None),
        ("device/x", b"\xff\xfe"),
    ],
)
def test_a_malformed_record_is_counted_not_raised(key: str, value: bytes | None) -> None:
    view = RegistryView()
    view.apply(key, value, 7)
    assert view.malformed == 1
    assert view.offset == 7
    assert view.counts_by_kind()["device"] == 0
    put(view, device_doc(2))  # and the view goes on
    assert view.device_count() == 1


def test_devices_page_in_id_order_with_filters() -> None:
    view = RegistryView()
    for i in reversed(range(50)):  # out of order: the index sorts lazily
        put(view, device_doc(i, tenant="city" if i % 10 else "other"))
    ids: list[str] = []
    cursor = None
    while True:
        page, cursor = view.devices_page("city", limit=6, cursor=cursor)
        ids += [d.id for d in page]
        if cursor is None:
            break
    assert ids == sorted(f"dev-{i:06d}" for i in range(50) if i % 10)
    roof, _ = view.devices_page("city", limit=100, tag="roof", area="area-1")
    assert {d.id for d in roof} == {"dev-000001", "dev-000021", "dev-000041"}
    assert view.devices_page("nobody", limit=10) == ([], None)
    assert view.device_counts() == {"city": 45, "other": 5}


def test_sorted_ids() -> None:
    ids = SortedIds()
    for i in ["b", "a", "d", "c"]:
        ids.add(i)
    assert list(ids.after(None)) == ["a", "b", "c", "d"]
    assert list(ids.after("b")) == ["c", "d"]
    assert list(ids.after("bb")) == ["c", "d"]
    ids.remove("c")
    ids.remove("zz")
    assert list(ids.after(None)) == ["a", "b", "d"]
    assert len(ids) == 3


def test_repeated_strings_are_shared() -> None:
    view = RegistryView()
    put(view, device_doc(1))
    put(view, device_doc(3))
    a, b = view.device_by_id("dev-000001"), view.device_by_id("dev-000003")
    assert a is not None
    assert b is not None
    assert a.tenant is b.tenant
    assert a.type is b.type
    assert a.tags[0] is b.tags[0]


def test_the_view_is_smaller_than_the_plain_records() -> None:
    n = 5000
    raw = [json.dumps(device_doc(i, name=f"Sensor number {i} on the corner")) for i in range(n)]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        plain = {str(i): json.loads(r) for i, r in enumerate(raw)}
        plain_bytes = tracemalloc.get_traced_memory()[0] - base
        del plain
        base = tracemalloc.get_traced_memory()[0]
        view = RegistryView()
        for offset, r in enumerate(raw):
            view.apply(f"device/dev-{offset:06d}", r.encode(), offset)
        view_bytes = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert view.device_count() == n
    assert view_bytes < plain_bytes, (view_bytes, plain_bytes)


def test_a_skipped_record_is_logged_without_its_values(caplog: pytest.LogCaptureFixture) -> None:
    """A record that fails validation is logged by its number of invalid fields: pydantic's
    text would repeat the values (a key's fingerprint, a data subject's pseudonym)."""
    doc = {
        "kind": "api_key",
        "id": "k1",
        "tenant": "acme",
        "role": "spaceship-pilot-SENSITIVE",
        "name": "k1",
        "secret_sha256": "SENSITIVE-FINGERPRINT",
        "created_at": "2026-12-04T10:00:00Z",
    }
    view = RegistryView()
    with caplog.at_level("WARNING", "cityhub"):
        view.apply("api_key/k1", json.dumps(doc).encode(), 3)
    assert view.malformed == 1
    [record] = caplog.records
    assert "invalid field(s)" in record.getMessage()
    assert "SENSITIVE" not in record.getMessage()
