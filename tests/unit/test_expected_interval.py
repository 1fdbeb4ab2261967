"""The expected reporting interval (issue 14): the one accessor that says which value applies,
its bounds on specs, the registry view's compact entry, the import column, the CLI options and
the operator API."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from pydantic import ValidationError

from cityhub.schemas.expected_interval import (
    DEFAULT_EXPECTED_INTERVAL_SECONDS,
    MAX_EXPECTED_INTERVAL_SECONDS,
    expected_interval,
    parse_expected_interval,
    shared_interval,
)
from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec
from cityhub.schemas.settings import Settings
from cityhub.streams.api.models import DeviceOut, DeviceTypeOut
from cityhub.streams.registry import cli
from cityhub.streams.registry.cli import session as cli_session
from cityhub.streams.registry.importer import parse_import
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.registry.view import DeviceEntry, RegistryView

from .test_api_support import Api, device, running_api


@dataclass
class Named:
    expected_interval_seconds: int | None


# --- the accessor ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("device_value", "type_value", "expected"),
    [(60, 300, 60), (None, 300, 300), (None, None, 900), (60, None, 60)],
)
def test_the_device_overrides_its_type_which_overrides_the_default(
    device_value: int | None, type_value: int | None, expected: int
) -> None:
    assert expected_interval(Named(device_value), Named(type_value), 900) == expected


def test_an_unknown_device_or_a_deleted_type_falls_through() -> None:
    assert expected_interval(None, None, 120) == 120
    assert expected_interval(None, Named(300), 120) == 300
    assert expected_interval(Named(None), None, 120) == 120


def test_the_setting_defaults_to_fifteen_minutes() -> None:
    assert Settings().health.default_expected_interval_seconds == 900
    assert DEFAULT_EXPECTED_INTERVAL_SECONDS == 900
    with pytest.raises(ValidationError):
        Settings.model_validate({"health": {"default_expected_interval_seconds": 0}})


# --- specs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("good", [1, 60, 900, MAX_EXPECTED_INTERVAL_SECONDS])
def test_specs_take_whole_seconds_within_bounds(good: int) -> None:
    assert DeviceTypeSpec(id="t", name="T", expected_interval_seconds=good)
    spec = DeviceSpec.model_validate(
        {"id": "d", "name": "D", "type": "t", "expected_interval_seconds": good}
    )
    assert spec.expected_interval_seconds == good


@pytest.mark.parametrize("bad", [0, -60, MAX_EXPECTED_INTERVAL_SECONDS + 1, "60", 1.5, True, 1e9])
def test_specs_refuse_other_values(bad: object) -> None:
    with pytest.raises(ValidationError):
        DeviceTypeSpec.model_validate({"id": "t", "name": "T", "expected_interval_seconds": bad})
    with pytest.raises(ValidationError):
        DeviceSpec.model_validate(
            {"id": "d", "name": "D", "type": "t", "expected_interval_seconds": bad}
        )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("900", 900),
        ("15m", 900),
        ("1h", 3600),
        (" 2d ", 172800),
        ("30S", 30),
        ("", None),
        ("-", None),
    ],
)
def test_parse_expected_interval(text: str, seconds: int | None) -> None:
    assert parse_expected_interval(text) == seconds


@pytest.mark.parametrize("text", ["abc", "1.5h", "-5", "15 min", "٣", "9999999999", "m"])
def test_parse_expected_interval_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="whole seconds"):
        parse_expected_interval(text)


# --- the registry view ----------------------------------------------------------------------
def device_doc(i: int, **over: Any) -> dict[str, Any]:
    return {
        "kind": "device", "tenant": "city", "id": f"dev-{i:06d}", "name": f"Sensor {i}",
        "type": "aq", "dev_eui": None, "location": None, "area": None, "tags": [],
        "active": True, "created_at": "2026-12-04T00:00:00Z",
        "updated_at": "2026-12-04T00:00:00Z", **over,
    }  # fmt: skip


def put(view: RegistryView, doc: dict[str, Any], offset: int = 0) -> None:
    view.apply(f"device/{doc['id']}", json.dumps(doc).encode(), offset)


def test_the_view_keeps_the_override_and_shares_its_int() -> None:
    view = RegistryView()
    put(view, device_doc(1, expected_interval_seconds=3600), 0)
    put(view, device_doc(2, expected_interval_seconds=3600), 1)
    put(view, device_doc(3), 2)
    a, b, c = (view.device_by_id(f"dev-00000{i}") for i in (1, 2, 3))
    assert a is not None
    assert b is not None
    assert c is not None
    assert a.expected_interval_seconds == 3600
    assert a.expected_interval_seconds is b.expected_interval_seconds
    assert c.expected_interval_seconds is None
    assert a.to_device().expected_interval_seconds == 3600
    assert DeviceEntry.from_device(a.to_device()) == a


@pytest.mark.parametrize("bad", ["60", 0, 1.5, True, MAX_EXPECTED_INTERVAL_SECONDS + 1, [60]])
def test_a_record_with_a_bad_interval_is_malformed_not_fatal(bad: object) -> None:
    view = RegistryView()
    put(view, device_doc(1, expected_interval_seconds=bad))
    assert view.malformed == 1
    assert view.device_by_id("dev-000001") is None


def test_shared_interval_is_bounded_and_checked() -> None:
    assert shared_interval(None) is None
    assert shared_interval(int("70000")) is shared_interval(int("70000"))
    with pytest.raises(ValueError):
        shared_interval(False)


def test_an_override_costs_a_pointer_per_device() -> None:
    n = 2000

    def load(**over: Any) -> int:
        raw = [json.dumps(device_doc(i, **over)).encode() for i in range(n)]
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            view = RegistryView()
            for offset, r in enumerate(raw):
                view.apply(f"device/dev-{offset:06d}", r, offset)
            used: int = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        assert view.device_count() == n
        return used

    without, with_override = load(), load(expected_interval_seconds=3600)
    # The slot is there either way; the shared int adds nothing per device (slack for noise).
    assert with_override - without < n * 8, (without, with_override)


# --- import ---------------------------------------------------------------------------------
def test_the_csv_column_takes_seconds_or_units_and_names_bad_cells() -> None:
    body = b"id;type;expected_interval\na;aq;900\nb;aq;1h\nc;aq;\nd;aq;soon\ne;aq;0\nf;aq;40d\n"
    rows = parse_import(body, "text/csv", default_type=None, max_rows=100)
    values = [r.expected_interval_seconds if isinstance(r, DeviceSpec) else None for r in rows]
    assert values[:3] == [900, 3600, None]
    for bad in rows[3:]:
        assert not isinstance(bad, DeviceSpec)
        assert [e.field for e in bad] == ["expected_interval_seconds"]
    assert "whole seconds" in next(iter(rows[3])).message  # type: ignore[union-attr]
    assert "from 1 to 2678400" in next(iter(rows[4])).message  # type: ignore[union-attr]


def test_the_json_import_takes_the_field_also_beside_a_tts_end_device() -> None:
    body = json.dumps(
        [
            {"id": "a", "name": "A", "type": "aq", "expected_interval_seconds": 120},
            {"id": "b", "name": "B", "type": "aq", "expected_interval_seconds": "2m"},
            {
                "ids": {"device_id": "c", "application_ids": {"application_id": "city-air"}},
                "type": "aq",
                "expected_interval_seconds": 600,
            },
        ]
    ).encode()
    rows = parse_import(body, "application/json", default_type=None, max_rows=10)
    assert isinstance(rows[0], DeviceSpec)
    assert rows[0].expected_interval_seconds == 120
    assert not isinstance(rows[1], DeviceSpec)
    assert isinstance(rows[2], DeviceSpec)
    assert rows[2].expected_interval_seconds == 600


# --- the CLI --------------------------------------------------------------------------------
@pytest.fixture
def cityhub(monkeypatch: pytest.MonkeyPatch) -> click.Group:
    store = InMemoryRegistryStore()
    monkeypatch.setattr(cli_session, "store_factory", lambda settings: store)
    main = click.Group("cityhub")
    cli.mount(main)
    return main


def invoke(main: click.Group, *args: str, expect: int = 0) -> Result:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == expect, result.output
    return result


def test_cli_sets_changes_and_clears_the_intervals(cityhub: click.Group) -> None:
    invoke(cityhub, "tenants", "create", "acme", "--name", "Acme")
    made = invoke(
        cityhub, "types", "create", "--tenant", "acme", "air", "--name", "Air",
        "--expected-interval", "10m", "--json",
    )  # fmt: skip
    assert json.loads(made.stdout)["expected_interval_seconds"] == 600
    invoke(
        cityhub, "devices", "create", "--tenant", "acme", "a-1", "--type", "air",
        "--expected-interval", "120",
    )  # fmt: skip
    shown = invoke(cityhub, "devices", "get", "--tenant", "acme", "a-1").stdout
    assert "expected interval  120 s" in " ".join(shown.split("\n")) or "120 s" in shown
    out = invoke(cityhub, "devices", "update", "--tenant", "acme", "a-1", "--name", "A", "--json")
    assert json.loads(out.stdout)["expected_interval_seconds"] == 120, "kept when not named"
    out = invoke(
        cityhub, "devices", "update", "--tenant", "acme", "a-1", "--no-expected-interval", "--json"
    )
    assert json.loads(out.stdout)["expected_interval_seconds"] is None
    out = invoke(
        cityhub, "types", "update", "--tenant", "acme", "air", "--expected-interval", "1h",
        "--json",
    )  # fmt: skip
    doc = json.loads(out.stdout)
    assert (doc["expected_interval_seconds"], doc["name"]) == (3600, "Air")
    out = invoke(cityhub, "types", "update", "--tenant", "acme", "air", "--no-expected-interval")
    assert "Updated device type air" in out.stdout
    assert "expected interval" in invoke(cityhub, "types", "get", "--tenant", "acme", "air").stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("types", "update", "--tenant", "acme", "air"), "nothing to change"),
        (("types", "create", "--tenant", "acme", "x", "--name", "X", "--expected-interval", "0"),
         "from 1 to 2678400"),
        (("devices", "create", "--tenant", "acme", "d", "--type", "air",
          "--expected-interval", "often"), "whole seconds"),
        (("devices", "update", "--tenant", "acme", "d", "--expected-interval", "1",
          "--no-expected-interval"), "not both"),
    ],
)  # fmt: skip
def test_cli_refuses_bad_intervals(cityhub: click.Group, args: tuple[str, ...], says: str) -> None:
    invoke(cityhub, "tenants", "create", "acme", "--name", "Acme")
    invoke(cityhub, "types", "create", "--tenant", "acme", "air", "--name", "Air")
    result = CliRunner().invoke(cityhub, list(args))
    assert result.exit_code != 0
    assert says in result.output


# --- the API --------------------------------------------------------------------------------
@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running_api() as running:
        yield running


A = "/api/v1/tenants/acme"


async def test_api_stores_and_returns_the_intervals(api: Api) -> None:
    body = {"id": "slow", "name": "Slow", "expected_interval_seconds": 3600}
    status, doc, _ = await api.call("POST", f"{A}/device-types", json=body)
    assert status == 201, doc
    assert DeviceTypeOut.model_validate(doc).expected_interval_seconds == 3600
    status, doc, _ = await api.call(
        "POST", f"{A}/devices", json=device("d1", type="slow", expected_interval_seconds=60)
    )
    assert status == 201, doc
    assert DeviceOut.model_validate(doc).expected_interval_seconds == 60
    status, doc, _ = await api.call("GET", f"{A}/devices/d1", "sub_a")
    assert (status, doc["expected_interval_seconds"]) == (200, 60)


@pytest.mark.parametrize("bad", [0, "15m", 2.5, None, -1, 10**12])
async def test_api_refuses_bad_intervals_with_a_400_naming_the_field(api: Api, bad: object) -> None:
    body = {"id": "slow", "name": "Slow", "expected_interval_seconds": bad}
    status, doc, _ = await api.call("POST", f"{A}/device-types", json=body)
    if bad is None:
        assert status == 201, doc
        return
    assert status == 400, doc
    assert doc["errors"][0]["field"] == "expected_interval_seconds"
    assert doc["type"].endswith("/invalid-body") or doc["status"] == 400
