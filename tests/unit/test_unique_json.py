"""Client JSON with a member named twice in one object is refused, in a request body and in a
bulk import, through the API; everything else parses as before."""

from __future__ import annotations

import orjson
import pytest

from cityhub.streams.unique_json import DuplicateMember, TooDeep, loads_unique

from .test_api_support import Api, running_api

DEVICES = "/api/v1/tenants/acme/devices"


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ('{"id": "a", "id": "b"}', "id"),
        ('[{"x": 1}, {"y": 1, "y": 2}]', "y"),
        ('{"outer": {"k": 1, "k": 1}}', "k"),  # the same value twice too
        ('{"\\u0069d": 1, "id": 2}', "id"),  # the same name, escaped once
    ],
)
def test_a_repeated_member_is_refused_naming_it(text: str, name: str) -> None:
    with pytest.raises(DuplicateMember) as refused:
        loads_unique(text)
    assert refused.value.name == name


@pytest.mark.parametrize(
    "text", ['{"id": "a", "ID": "b"}', '[{"id": 1}, {"id": 2}]', '"x"', "3", "null", "[]", "{}"]
)
def test_distinct_members_parse_as_orjson_parses_them(text: str) -> None:
    assert loads_unique(text) == orjson.loads(text)


def test_invalid_json_is_orjsons_error_and_deep_nesting_is_refused() -> None:
    for text in ("{", '{"a": NaN}', b'{"a": "\xff"}'):
        with pytest.raises(orjson.JSONDecodeError):
            loads_unique(text)
    with pytest.raises((TooDeep, orjson.JSONDecodeError)):
        loads_unique("[" * 1020 + "]" * 1020)


async def test_the_api_refuses_a_body_or_an_import_that_repeats_a_member() -> None:
    async with running_api() as api:
        await _refused_body(api)
        await _refused_import(api)


async def _refused_body(api: Api) -> None:
    body = b'{"id": "dup-1", "id": "dup-2", "name": "x", "type": "th"}'
    status, doc, _ = await api.call(
        "POST", DEVICES, "op_a", data=body, headers={"Content-Type": "application/json"}
    )
    assert status == 400, doc
    assert "'id' more than once" in doc["detail"]
    for device_id in ("dup-1", "dup-2"):
        assert (await api.call("GET", f"{DEVICES}/{device_id}", "op_a"))[0] == 404


async def _refused_import(api: Api) -> None:
    body = b'[{"id": "imp-1", "name": "x", "type": "th", "name": "y"}]'
    status, doc, _ = await api.call(
        "POST",
        f"{DEVICES}/_import",
        "op_a",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert status == 400, doc
    assert "'name' more than once" in doc["detail"]
