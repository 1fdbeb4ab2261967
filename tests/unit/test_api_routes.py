"""Every route of the operator API over an in-memory registry: what succeeds, what it returns,
that responses match the documented models, that no secret comes back, that one tenant's key
cannot see or touch another's, and the request metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from cityhub.streams.api.models import (
    ApiKeyCreated,
    ApiKeyList,
    DeviceList,
    DeviceOut,
    DeviceTypeList,
    DeviceTypeOut,
    ImportReportOut,
    TenantList,
    TenantOut,
)

from .test_api_support import APP_KEY, Api, device, running_api

V1 = "/api/v1"
A = f"{V1}/tenants/acme"
B = f"{V1}/tenants/beta"


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running_api() as running:
        yield running


async def test_tenants_admin_lists_and_creates(api: Api) -> None:
    status, doc, _ = await api.call("GET", f"{V1}/tenants", "admin")
    assert status == 200
    assert {t.id for t in TenantList.model_validate(doc).items} == {"acme", "beta"}
    status, doc, headers = await api.call(
        "POST", f"{V1}/tenants", "admin", json={"id": "gamma", "name": "Gamma"}
    )
    assert status == 201
    assert TenantOut.model_validate(doc).id == "gamma"
    assert headers["Location"] == f"{V1}/tenants/gamma"
    status, doc, _ = await api.call(
        "POST", f"{V1}/tenants", "admin", json={"id": "gamma", "name": "Again"}
    )
    assert status == 409
    assert doc["type"].endswith("/conflict")


@pytest.mark.parametrize("who", ["op_a", "sub_a"])
async def test_tenants_are_admin_only(api: Api, who: str) -> None:
    status, doc, _ = await api.call("GET", f"{V1}/tenants", who)
    assert status == 403
    assert doc["status"] == 403
    status, _, _ = await api.call("POST", f"{V1}/tenants", who, json={"id": "x", "name": "X"})
    assert status == 403


async def test_device_type_lifecycle(api: Api) -> None:
    body = {"id": "noise", "name": "Noise", "fields": [{"field": "laeq", "quantity": "noise"}]}
    status, doc, headers = await api.call("POST", f"{A}/device-types", json=body)
    assert status == 201, doc
    assert DeviceTypeOut.model_validate(doc).tenant == "acme"
    assert headers["Location"] == f"{A}/device-types/noise"
    status, doc, _ = await api.call("GET", f"{A}/device-types/noise")
    assert status == 200
    assert doc["fields"][0]["quantity"] == "noise"
    status, doc, _ = await api.call(
        "PUT", f"{A}/device-types/noise", json={**body, "name": "Noise v2"}
    )
    assert status == 200
    assert doc["name"] == "Noise v2"
    status, doc, _ = await api.call("GET", f"{A}/device-types")
    assert status == 200
    assert [t.id for t in DeviceTypeList.model_validate(doc).items] == ["noise", "th"]
    status, doc, _ = await api.call("DELETE", f"{A}/device-types/noise")
    assert (status, doc) == (204, None)
    status, _, _ = await api.call("GET", f"{A}/device-types/noise")
    assert status == 404


async def test_device_type_in_use_cannot_be_deleted(api: Api) -> None:
    assert (await api.call("POST", f"{A}/devices", json=device("d1")))[0] == 201
    status, doc, _ = await api.call("DELETE", f"{A}/device-types/th")
    assert status == 409
    assert doc["detail"]


async def test_device_lifecycle_never_returns_the_app_key(api: Api) -> None:
    body = device(
        "t-01",
        dev_eui="70B3D57ED0062B01",
        location={"latitude": 52.37, "longitude": 4.89},
        area="centrum",
        tags=["air"],
        app_key=APP_KEY,
    )
    status, doc, headers = await api.call("POST", f"{A}/devices", json=body)
    assert status == 201, doc
    created = DeviceOut.model_validate(doc)
    assert created.has_app_key
    assert created.dev_eui == "70b3d57ed0062b01"
    assert "app_key" not in doc
    assert "app_key_sha256" not in doc
    assert headers["Location"] == f"{A}/devices/t-01"
    status, doc, _ = await api.call("GET", f"{A}/devices/t-01", "sub_a")
    assert status == 200
    assert doc == created.model_dump(mode="json")
    replaced = {k: v for k, v in body.items() if k != "app_key"} | {"active": False}
    status, doc, _ = await api.call("PUT", f"{A}/devices/t-01", json=replaced)
    assert status == 200
    assert doc["active"] is False
    assert doc["has_app_key"], "an omitted app_key keeps the stored one"
    status, doc, _ = await api.call("DELETE", f"{A}/devices/t-01")
    assert status == 204
    status, doc, _ = await api.call("GET", f"{A}/devices/t-01")
    assert status == 404
    assert doc["instance"] == f"{A}/devices/t-01"


async def test_device_list_filters_and_pages_with_link_header(api: Api) -> None:
    for i in range(5):
        body = device(f"d{i}", area="oost" if i % 2 else "west", tags=[f"n{i}"], active=i != 4)
        assert (await api.call("POST", f"{A}/devices", json=body))[0] == 201
    _, doc, _ = await api.call("GET", f"{A}/devices", params={"area": "oost"})
    assert [d["id"] for d in doc["items"]] == ["d1", "d3"]
    _, doc, _ = await api.call("GET", f"{A}/devices", params={"tag": "n2"})
    assert [d["id"] for d in doc["items"]] == ["d2"]
    _, doc, _ = await api.call("GET", f"{A}/devices", params={"active": "false"})
    assert [d["id"] for d in doc["items"]] == ["d4"]
    _, doc, _ = await api.call("GET", f"{A}/devices", params={"type": "th", "limit": "1000000"})
    assert len(doc["items"]) == 5, "a limit over the cap is served as the cap"

    seen: list[str] = []
    url: str | None = f"{A}/devices?limit=2&area=oost"
    _, doc, headers = await api.call("GET", f"{A}/devices", params={"limit": "2"})
    page = DeviceList.model_validate(doc)
    seen += [d.id for d in page.items]
    assert page.next_cursor is not None
    link = headers["Link"]
    assert link.endswith('>; rel="next"')
    url = link[1 : link.index(">")]
    while url:
        _, doc, headers = await api.call("GET", url)
        seen += [d["id"] for d in doc["items"]]
        url = headers["Link"][1 : headers["Link"].index(">")] if "Link" in headers else None
        assert (doc["next_cursor"] is None) == (url is None)
    assert seen == [f"d{i}" for i in range(5)]


async def test_import_csv_creates_good_rows_and_names_bad_ones(api: Api) -> None:
    csv = (
        "id;dev_eui;name;type;latitude;longitude;colour\n"
        "c-01;70B3D57ED0062C01;One;th;52.1;4.1;red\n"
        "c-02;XYZ;Two;th;52.2;4.2;red\n"
        "c-03;70B3D57ED0062C03;Three;th;91;4.3;red\n"
        "c-04;70B3D57ED0062C04;Four;nosuch;52.4;4.4;red\n"
        "c-05;70B3D57ED0062C05;Five;th;52.5;4.5;red\n"
    )
    status, doc, _ = await api.call(
        "POST", f"{A}/devices/_import", data=csv.encode(), headers={"Content-Type": "text/csv"}
    )
    assert status == 200, doc
    report = ImportReportOut.model_validate(doc)
    assert (report.created, report.failed) == (2, 3)
    assert report.ignored_columns == ["colour"]
    bad = {r.id: r for r in report.rows if r.status == "error"}
    assert set(bad) == {"c-02", "c-03", "c-04"}
    assert bad["c-02"].errors[0].field == "dev_eui"
    assert bad["c-03"].errors[0].field == "location.latitude"
    assert bad["c-03"].line == 4
    assert bad["c-04"].errors, "a type that does not exist is named"
    _, doc, _ = await api.call("GET", f"{A}/devices")
    assert [d["id"] for d in doc["items"]] == ["c-01", "c-05"]


async def test_import_json_upserts(api: Api) -> None:
    rows = [device("j-01"), device("j-02", location={"latitude": 100, "longitude": 0}), 7]
    status, doc, _ = await api.call("POST", f"{A}/devices/_import", json=rows)
    assert status == 200, doc
    assert (doc["created"], doc["updated"], doc["failed"]) == (1, 0, 2)
    status, doc, _ = await api.call("POST", f"{A}/devices/_import", json=[device("j-01")])
    assert (doc["created"], doc["updated"]) == (0, 1)


async def test_import_that_cannot_be_read_is_400(api: Api) -> None:
    status, doc, _ = await api.call("POST", f"{A}/devices/_import", json={"not": "an array"})
    assert status == 400
    assert "array" in doc["detail"]


async def test_keys_secret_shown_once_then_revoked(api: Api) -> None:
    status, doc, headers = await api.call(
        "POST", f"{V1}/keys", "admin", json={"tenant": "beta", "role": "operator", "name": "ci"}
    )
    assert status == 201, doc
    created = ApiKeyCreated.model_validate(doc)
    assert headers["Cache-Control"] == "no-store"
    secret = created.secret
    status, doc, _ = await api.call("GET", f"{V1}/keys", "admin")
    listed = ApiKeyList.model_validate(doc)
    assert created.id in {k.id for k in listed.items}
    text = str(doc)
    assert secret not in text
    assert "secret" not in text
    status, _, _ = await api.call("GET", f"{B}/devices", None, headers={"X-API-Key": secret})
    assert status == 200
    status, doc, _ = await api.call("POST", f"{V1}/keys/{created.id}/revoke", "admin")
    assert status == 200
    assert doc["revoked_at"]
    status, doc, headers = await api.call(
        "GET", f"{B}/devices", None, headers={"Authorization": f"Bearer {secret}"}
    )
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert secret not in str(doc)


@pytest.mark.parametrize("who", ["op_a", "sub_a"])
async def test_keys_are_admin_only(api: Api, who: str) -> None:
    status, _, _ = await api.call(
        "POST", f"{V1}/keys", who, json={"tenant": "acme", "role": "admin", "name": "escalate"}
    )
    assert status == 403


async def test_subscriber_reads_but_cannot_write(api: Api) -> None:
    assert (await api.call("GET", f"{A}/devices", "sub_a"))[0] == 200
    assert (await api.call("GET", f"{A}/device-types/th", "sub_a"))[0] == 200
    assert (await api.call("POST", f"{A}/devices", "sub_a", json=device("s1")))[0] == 403
    assert (await api.call("DELETE", f"{A}/device-types/th", "sub_a"))[0] == 403


async def test_another_tenants_resources_are_not_found(api: Api) -> None:
    assert (await api.call("POST", f"{A}/devices", json=device("a-1")))[0] == 201
    calls = [
        ("GET", f"{A}/device-types", None),
        ("POST", f"{A}/device-types", {"id": "x", "name": "X"}),
        ("GET", f"{A}/device-types/th", None),
        ("PUT", f"{A}/device-types/th", {"id": "th", "name": "Mine now"}),
        ("DELETE", f"{A}/device-types/th", None),
        ("GET", f"{A}/devices", None),
        ("POST", f"{A}/devices", device("b-1")),
        ("GET", f"{A}/devices/a-1", None),
        ("PUT", f"{A}/devices/a-1", device("a-1", name="Mine now")),
        ("DELETE", f"{A}/devices/a-1", None),
        ("POST", f"{A}/devices/_import", [device("b-2")]),
    ]
    for method, path, body in calls:
        status, doc, _ = await api.call(method, path, "op_b", json=body)
        assert status == 404, (method, path, doc)
        assert "acme" not in doc["detail"] or "not found" in doc["detail"].lower()
    _, doc, _ = await api.call("GET", f"{A}/devices")
    assert [(d["id"], d["name"]) for d in doc["items"]] == [("a-1", "A-1")]
    _, doc, _ = await api.call("GET", f"{A}/device-types/th")
    assert doc["name"] == "Thermo"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_requests_are_counted_by_route_template(api: Api) -> None:
    route = f"{V1}/tenants/{{tenant}}/devices/{{id}}"
    before = _sample("cityhub_api_requests_total", route=route, method="GET", status="404")
    timed = _sample("cityhub_api_request_duration_seconds_count", route=route, method="GET")
    await api.call("GET", f"{A}/devices/nope")
    await api.call("GET", f"{A}/devices/nope-either")
    after = _sample("cityhub_api_requests_total", route=route, method="GET", status="404")
    assert after - before == 2
    assert _sample("cityhub_api_request_duration_seconds_count", route=route, method="GET") == (
        timed + 2
    )
    unmatched = _sample("cityhub_api_requests_total", route="unmatched", method="GET", status="404")
    await api.call("GET", f"{V1}/nowhere")
    assert (
        _sample("cityhub_api_requests_total", route="unmatched", method="GET", status="404")
        == unmatched + 1
    )
