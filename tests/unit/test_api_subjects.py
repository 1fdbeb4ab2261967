"""Data subjects through the operator API: linked and unlinked by the tenant's operator and
admin keys, shown only to the device's own tenant, refused for another tenant (404, seen from
both sides), for a subscriber (403), for a non-personal type (400 naming the field), and never
echoed in an error. Over the in-memory registry, as tests/unit/test_api_routes.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cityhub.schemas.registry import Classification, DeviceTypeSpec
from cityhub.streams.api.models import DeviceList, DeviceOut
from cityhub.streams.registry.principals import Principal

from .test_api_support import Api, device, running_api

A = "/api/v1/tenants/acme"
B = "/api/v1/tenants/beta"
SUBJECT = "res-7f3a9c21"


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running_api() as running:
        for tenant in ("acme", "beta"):
            await running.registry.create_type(
                Principal.system(),
                tenant,
                DeviceTypeSpec(id="air", name="Air", classification=Classification.PERSONAL),
            )
        yield running


async def test_the_tenant_links_reads_and_unlinks(api: Api) -> None:
    body = device("a-1", type="air", data_subject=SUBJECT)
    status, doc, _ = await api.call("POST", f"{A}/devices", json=body)
    assert status == 201, doc
    assert DeviceOut.model_validate(doc).data_subject == SUBJECT
    for who in ("op_a", "admin", "sub_a"):
        status, doc, _ = await api.call("GET", f"{A}/devices/a-1", who=who)
        assert (status, doc["data_subject"]) == (200, SUBJECT)
    status, doc, _ = await api.call("GET", f"{A}/devices", who="sub_a")
    assert DeviceList.model_validate(doc).items[0].data_subject == SUBJECT
    # A PUT without the field keeps the link; with null it unlinks.
    status, doc, _ = await api.call("PUT", f"{A}/devices/a-1", json=device("a-1", type="air"))
    assert (status, doc["data_subject"]) == (200, SUBJECT)
    unlink = device("a-1", type="air", data_subject=None)
    status, doc, _ = await api.call("PUT", f"{A}/devices/a-1", who="admin", json=unlink)
    assert (status, doc["data_subject"]) == (200, None)
    assert api.registry.view.devices_of_subject("acme", SUBJECT) == []


async def test_another_tenant_can_neither_see_nor_link_nor_unlink(api: Api) -> None:
    await api.call("POST", f"{A}/devices", json=device("a-1", type="air", data_subject=SUBJECT))
    for who in ("op_b", "sub_b"):
        status, doc, _ = await api.call("GET", f"{A}/devices/a-1", who=who)
        assert status == 404, doc
        assert SUBJECT not in str(doc)
    relink = device("a-1", type="air", data_subject="res-beta-0001")
    status, _, _ = await api.call("PUT", f"{A}/devices/a-1", who="op_b", json=relink)
    assert status == 404
    unlink = device("a-1", type="air", data_subject=None)
    status, _, _ = await api.call("PUT", f"{A}/devices/a-1", who="op_b", json=unlink)
    assert status == 404
    assert [d.id for d in api.registry.view.devices_of_subject("acme", SUBJECT)] == ["a-1"]
    # From the other side: acme's operator cannot link a device of beta.
    await api.call("POST", f"{B}/devices", who="op_b", json=device("b-1", type="air"))
    status, _, _ = await api.call("PUT", f"{B}/devices/b-1", json=relink)
    assert status == 404
    assert api.registry.view.devices_of_subject("beta", "res-beta-0001") == []


async def test_an_admin_key_of_another_tenant_manages_but_never_sees_the_subject(
    api: Api,
) -> None:
    body = device("b-1", type="air", data_subject=SUBJECT)
    status, doc, _ = await api.call("POST", f"{B}/devices", who="op_b", json=body)
    assert (status, doc["data_subject"]) == (201, SUBJECT)
    status, doc, _ = await api.call("GET", f"{B}/devices/b-1", who="admin")
    assert status == 200
    assert "data_subject" not in doc
    status, doc, _ = await api.call("GET", f"{B}/devices", who="admin")
    assert "data_subject" not in doc["items"][0]
    # Nor may it act as them: no unlink, relink or link, by any route (a review unlinked a
    # resident's device this way, moved it to a public type and had its readings delivered).
    path = f"{B}/devices/b-1/data-subject"
    assert (await api.call("DELETE", path, who="admin"))[0] == 404
    assert (await api.call("PUT", path, who="admin", json={"data_subject": "res-evil0001"}))[
        0
    ] == 404
    for spec in (
        device("b-1", type="air", data_subject=None),
        device("b-1", type="air", data_subject="res-evil0001"),
    ):
        status, doc, _ = await api.call("PUT", f"{B}/devices/b-1", who="admin", json=spec)
        assert status == 403, doc
        assert "res-evil0001" not in str(doc)
    status, _, _ = await api.call(
        "POST",
        f"{B}/devices",
        who="admin",
        json=device("b-2", type="air", data_subject="res-x0001"),
    )
    assert status == 403
    rows = b'[{"id": "b-1", "name": "B1", "type": "air", "data_subject": null}]'
    status, doc = await _import_as_admin(api, rows)
    assert status == 200, doc
    assert doc["failed"] == 1
    assert doc["rows"][0]["errors"][0]["field"] == "data_subject"
    assert [d.id for d in api.registry.view.devices_of_subject("beta", SUBJECT)] == ["b-1"]
    # Nor may it change a linked device (another sensor's readings would be the resident's:
    # a review re-pointed one at an application of its own) or delete it (an unlink by another
    # way); a right guess of the subject is refused as a wrong one (no oracle).
    for spec in (
        device("b-1", type="air", dev_eui="70B3D57ED0AAAA01"),
        device("b-1", type="air", name="Renamed"),
        device("b-1", type="air", data_subject=SUBJECT),
    ):
        status, doc, _ = await api.call("PUT", f"{B}/devices/b-1", who="admin", json=spec)
        assert status == 403, doc
    assert (await api.call("DELETE", f"{B}/devices/b-1", who="admin"))[0] == 403
    assert [d.id for d in api.registry.view.devices_of_subject("beta", SUBJECT)] == ["b-1"]
    # A device of the personal type linked to nobody gets the very same answers, so that they
    # do not tell which devices are linked (a review counted them this way).
    await api.call("POST", f"{B}/devices", who="op_b", json=device("b-3", type="air"))
    renamed = device("b-3", type="air", name="Renamed")
    status, doc, _ = await api.call("PUT", f"{B}/devices/b-3", who="admin", json=renamed)
    assert status == 403, doc
    assert (await api.call("DELETE", f"{B}/devices/b-3", who="admin"))[0] == 403
    # Nor does an import move them to another type with answers that differ by their links.
    rows = b'[{"id": "b-1", "name": "h", "type": "th"}, {"id": "b-3", "name": "h", "type": "th"}]'
    status, doc = await _import_as_admin(api, rows)
    assert status == 200, doc
    linked, unlinked = doc["rows"]
    assert linked["errors"] == unlinked["errors"]
    assert [e["field"] for e in linked["errors"]] == ["data_subject"]
    # What it manages still works: a device of a type that is not personal.
    await api.call("POST", f"{B}/devices", who="op_b", json=device("b-4"))
    status, doc, _ = await api.call("PUT", f"{B}/devices/b-4", who="admin", json=device("b-4"))
    assert status == 200, doc
    assert (await api.call("DELETE", f"{B}/devices/b-4", who="admin"))[0] == 204
    # The device's own tenant's keys do all of it.
    assert (await api.call("DELETE", f"{B}/devices/b-1", who="op_b"))[0] == 204


async def _import_as_admin(api: Api, rows: bytes) -> tuple[int, Any]:
    """A JSON import into beta as acme's admin key: (status, report)."""
    status, doc, _ = await api.call(
        "POST",
        f"{B}/devices/_import",
        who="admin",
        data=rows,
        headers={"Content-Type": "application/json"},
    )
    return status, doc


async def test_a_subscriber_may_not_link(api: Api) -> None:
    body = device("a-1", type="air", data_subject=SUBJECT)
    status, _, _ = await api.call("POST", f"{A}/devices", who="sub_a", json=body)
    assert status == 403


@pytest.mark.parametrize("subject", ["123456782", "Jan Jansen", "short", "0612345678"])
async def test_a_bad_subject_is_a_400_naming_the_field_without_echoing_it(
    api: Api, subject: str
) -> None:
    body = device("a-1", type="air", data_subject=subject)
    status, doc, _ = await api.call("POST", f"{A}/devices", json=body)
    assert status == 400, doc
    assert [e["field"] for e in doc["errors"]] == ["data_subject"]
    assert subject not in str(doc)


async def test_a_device_of_a_non_personal_type_cannot_be_linked(api: Api) -> None:
    status, doc, _ = await api.call(
        "POST", f"{A}/devices", json=device("t-1", data_subject=SUBJECT)
    )
    assert status == 400, doc
    assert [e["field"] for e in doc["errors"]] == ["data_subject"]
    await api.call("POST", f"{A}/devices", json=device("a-1", type="air", data_subject=SUBJECT))
    status, doc, _ = await api.call("PUT", f"{A}/devices/a-1", json=device("a-1", type="th"))
    assert status == 400, doc
    assert [e["field"] for e in doc["errors"]] == ["data_subject"]
    internal = {"id": "air", "name": "Air", "classification": "internal"}
    status, doc, _ = await api.call("PUT", f"{A}/device-types/air", json=internal)
    assert status == 409, doc
    assert SUBJECT not in str(doc)


async def test_the_import_links_through_the_api(api: Api) -> None:
    body = f"id,name,type,data_subject\na-1,A1,air,{SUBJECT}\n"
    status, doc, _ = await api.call(
        "POST", f"{A}/devices/_import", data=body, headers={"Content-Type": "text/csv"}
    )
    assert (status, doc["created"]) == (200, 1), doc
    assert [d.id for d in api.registry.view.devices_of_subject("acme", SUBJECT)] == ["a-1"]


async def test_the_data_subject_route_links_and_unlinks_without_the_whole_spec(api: Api) -> None:
    await api.call("POST", f"{A}/devices", json=device("a-1", type="air", area="west"))
    path = f"{A}/devices/a-1/data-subject"
    status, doc, _ = await api.call("PUT", path, json={"data_subject": SUBJECT})
    assert status == 200, doc
    assert (doc["data_subject"], doc["area"]) == (SUBJECT, "west")
    assert [d.id for d in api.registry.view.devices_of_subject("acme", SUBJECT)] == ["a-1"]
    for who in ("op_b", "sub_b"):
        status, _, _ = await api.call("PUT", path, who=who, json={"data_subject": "res-beta-0001"})
        assert status == 404
        status, _, _ = await api.call("DELETE", path, who=who)
        assert status == 404
    status, _, _ = await api.call("DELETE", path, who="sub_a")
    assert status == 403
    status, doc, _ = await api.call("PUT", path, json={"data_subject": "123456782"})
    assert status == 400, doc
    assert [e["field"] for e in doc["errors"]] == ["data_subject"]
    assert "123456782" not in str(doc)
    status, _, _ = await api.call("DELETE", path, who="admin")
    assert status == 204
    assert api.registry.view.devices_of_subject("acme", SUBJECT) == []
    await api.call("POST", f"{A}/devices", json=device("t-1"))
    status, doc, _ = await api.call(
        "PUT", f"{A}/devices/t-1/data-subject", json={"data_subject": SUBJECT}
    )
    assert status == 400, doc
    assert [e["field"] for e in doc["errors"]] == ["data_subject"]
    status, _, _ = await api.call(
        "PUT", f"{A}/devices/nope/data-subject", json={"data_subject": SUBJECT}
    )
    assert status == 404
