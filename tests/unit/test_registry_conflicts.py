"""Conflicts seen from another tenant: tenant beta's operator key probes acme's device ids and
DevEUIs. Uniqueness across tenants forces a 409, and the 409 says no more: the same problem
document, word for word and field for field, whether acme's device has the id (or DevEUI) or
acme's write in flight holds it, and nothing of acme's (its name, its device ids). Acme's own
conflicts may say more."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from cityhub.streams.registry.reservations import EUI_NOT_AVAILABLE, ID_NOT_AVAILABLE

from .test_api_support import Api, device, running_api

V1 = "/api/v1"
A = f"{V1}/tenants/acme"
B = f"{V1}/tenants/beta"
ACME_EUI = "70B3D57ED00000A1"
HELD_EUI = "70B3D57ED00000A2"
FREE_EUI = "70B3D57ED00000B9"


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    """acme has device a-1 (DevEUI ACME_EUI); beta has device b-1."""
    async with running_api() as running:
        status, doc, _ = await running.call(
            "POST", f"{A}/devices", "op_a", json=device("a-1", dev_eui=ACME_EUI)
        )
        assert status == 201, doc
        status, doc, _ = await running.call("POST", f"{B}/devices", "op_b", json=device("b-1"))
        assert status == 201, doc
        yield running


@contextlib.contextmanager
def acme_writing(api: Api, *tokens: str) -> Iterator[None]:
    """acme's write in flight holds ``tokens`` (``device/<id>``, ``eui/<eui>``) meanwhile."""
    with api.registry.reservations.hold("acme", *tokens):
        yield


def leaks_nothing_of_acme(doc: Any) -> None:
    text = json.dumps(doc)
    for secret in ("acme", "a-1", "a-held", ACME_EUI.lower(), HELD_EUI.lower()):
        assert secret not in text.lower(), (secret, text)


async def test_an_id_taken_or_held_by_another_tenant_gets_one_answer(api: Api) -> None:
    taken = await api.call("POST", f"{B}/devices", "op_b", json=device("a-1"))
    with acme_writing(api, "device/a-held"):
        held = await api.call("POST", f"{B}/devices", "op_b", json=device("a-held"))
    (status, doc, _), (status_held, doc_held, _) = taken, held
    assert status == status_held == 409
    assert doc["detail"] == doc_held["detail"] == ID_NOT_AVAILABLE
    assert doc["errors"] == doc_held["errors"] == [{"field": "id", "message": ID_NOT_AVAILABLE}]
    assert set(doc) == set(doc_held)
    assert {k: v for k, v in doc.items() if k != "instance"} == {
        k: v for k, v in doc_held.items() if k != "instance"
    }
    leaks_nothing_of_acme(doc)
    leaks_nothing_of_acme(doc_held)


async def test_a_dev_eui_taken_or_held_by_another_tenant_gets_one_answer(api: Api) -> None:
    answers = [await api.call("POST", f"{B}/devices", "op_b", json=device("b-2", dev_eui=ACME_EUI))]
    with acme_writing(api, f"eui/{HELD_EUI.lower()}"):
        answers.append(
            await api.call("POST", f"{B}/devices", "op_b", json=device("b-3", dev_eui=HELD_EUI))
        )
    # Replacing beta's own device with acme's DevEUI: the same again.
    answers.append(
        await api.call("PUT", f"{B}/devices/b-1", "op_b", json=device("b-1", dev_eui=ACME_EUI))
    )
    with acme_writing(api, f"eui/{HELD_EUI.lower()}"):
        answers.append(
            await api.call("PUT", f"{B}/devices/b-1", "op_b", json=device("b-1", dev_eui=HELD_EUI))
        )
    for status, doc, _ in answers:
        assert status == 409
        assert doc["detail"] == EUI_NOT_AVAILABLE
        assert doc["errors"] == [{"field": "dev_eui", "message": EUI_NOT_AVAILABLE}]
        leaks_nothing_of_acme(doc)
    assert (
        len({json.dumps({k: v for k, v in d.items() if k != "instance"}) for _, d, _ in answers})
        == 1
    )


async def test_import_rows_cannot_tell_taken_from_held_either(api: Api) -> None:
    rows = [
        device("a-1"),  # acme's device
        device("a-held"),  # held by acme's write in flight
        device("b-4", dev_eui=ACME_EUI),  # acme's DevEUI
        device("b-5", dev_eui=HELD_EUI),  # held by acme's write in flight
        device("b-6", dev_eui=FREE_EUI),  # free: created
    ]
    with acme_writing(api, "device/a-held", f"eui/{HELD_EUI.lower()}"):
        status, doc, _ = await api.call("POST", f"{B}/devices/_import", "op_b", json=rows)
    assert status == 200, doc
    by_id = {r["id"]: r for r in doc["rows"]}
    assert (
        by_id["a-1"]["errors"]
        == by_id["a-held"]["errors"]
        == [{"field": "id", "message": ID_NOT_AVAILABLE}]
    )
    assert (
        by_id["b-4"]["errors"]
        == by_id["b-5"]["errors"]
        == [{"field": "dev_eui", "message": EUI_NOT_AVAILABLE}]
    )
    assert by_id["b-6"]["status"] == "created"
    for row in doc["rows"]:
        assert "acme" not in json.dumps(row)
        assert ACME_EUI.lower() not in json.dumps(row).lower()


async def test_acme_s_own_conflicts_say_more(api: Api) -> None:
    status, doc, _ = await api.call("POST", f"{A}/devices", "op_a", json=device("a-1"))
    assert status == 409
    assert "already exists in tenant 'acme'" in doc["detail"]
    assert doc["errors"] == [{"field": "id", "message": "already exists"}]
    status, doc, _ = await api.call(
        "POST", f"{A}/devices", "op_a", json=device("a-2", dev_eui=ACME_EUI)
    )
    assert status == 409
    assert "device 'a-1'" in doc["detail"]  # its own device, named
    with acme_writing(api, "device/a-3"):
        status, doc, _ = await api.call("POST", f"{A}/devices", "op_a", json=device("a-3"))
    assert status == 409
    assert "another request is writing" in doc["detail"]  # its own write: try again


async def test_a_free_id_and_dev_eui_are_taken_gladly(api: Api) -> None:
    status, doc, _ = await api.call(
        "POST", f"{B}/devices", "op_b", json=device("b-9", dev_eui=FREE_EUI)
    )
    assert status == 201, doc


async def test_another_tenant_s_device_is_not_found_as_a_missing_one_is(api: Api) -> None:
    theirs = await api.call("GET", f"{B}/devices/a-1", "op_b")
    missing = await api.call("GET", f"{B}/devices/a-404", "op_b")
    assert theirs[0] == missing[0] == 404
    assert theirs[1]["detail"].replace("a-1", "X") == missing[1]["detail"].replace("a-404", "X")
    leaks_nothing_of_acme({k: v for k, v in theirs[1].items() if k not in ("detail", "instance")})
