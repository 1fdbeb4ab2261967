"""A device's network-server binding through the registry: the model's validation, the view's
compact entries, the service, the import (The Things Stack's JSON export, the CSV column) and the
CLI. Pure: the in-memory store, no broker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from pydantic import ValidationError

from cityhub.schemas.registry import (
    Device,
    DeviceSpec,
    DeviceTypeSpec,
    NetworkBinding,
    NetworkServer,
    TenantSpec,
    parse_network_binding,
)
from cityhub.streams.registry import cli
from cityhub.streams.registry.cli import session as cli_session
from cityhub.streams.registry.importer import read_import
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.spec_errors import describe_errors
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.registry.view import DeviceEntry, RegistryView, entry_from_json
from cityhub.streams.service_errors import FieldError, Invalid

ADMIN = Principal.system()
CS_APP = "17c82e96-be03-4f38-aef3-f83d48582d97"
T = "2026-11-29T01:00:00.000Z"


# --- the model --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("tts:city-air@city", ("tts", "city-air", "city")),
        ("tts:city-air", ("tts", "city-air", None)),
        (" TTS:abc ", ("tts", "abc", None)),
        (f"chirpstack:{CS_APP}", ("chirpstack", CS_APP, None)),
        (f"chirpstack:{CS_APP.upper()}", ("chirpstack", CS_APP, None)),
        ("chirpstack:17c82e96be034f38aef3f83d48582d97", ("chirpstack", CS_APP, None)),
    ],
)
def test_short_forms_parse_to_a_canonical_binding(
    text: str, want: tuple[str, str, str | None]
) -> None:
    binding = parse_network_binding(text)
    assert (binding.server.value, binding.application, binding.tenant) == want
    assert parse_network_binding(binding.describe()) == binding


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        ({"server": "mqtt", "application": "abc"}, "server", "'tts' or 'chirpstack'"),
        ({"server": "tts", "application": "Ab"}, "application", "The Things Stack application"),
        ({"server": "tts", "application": "a--bc"}, "application", "single dashes"),
        ({"server": "tts", "application": "a" * 37}, "application", "3 to 36"),
        ({"server": "tts", "application": "abc", "tenant": "X y"}, "tenant", "tenant id"),
        ({"server": "chirpstack", "application": "city-air"}, "application", "UUID"),
        ({"server": "chirpstack", "application": CS_APP, "tenant": "t1"}, "tenant", "left out"),
        ({"server": "tts"}, "application", "Field required"),
        ({"server": "tts", "application": "abc", "extra": 1}, "extra", "Extra inputs"),
    ],
)
def test_bindings_are_validated_field_by_field(
    doc: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        NetworkBinding.model_validate(doc)
    (error,) = info.value.errors()
    assert error["loc"] == (field,)
    assert message in error["msg"]


@pytest.mark.parametrize("text", ["tts", "tts:", "city-air@city", ""])
def test_a_short_form_without_server_and_application_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="tts:<application>"):
        parse_network_binding(text)


def test_a_device_record_without_network_still_reads() -> None:
    doc: dict[str, Any] = {
        "kind": "device", "tenant": "city", "id": "d", "name": "d", "type": "aq",
        "dev_eui": None, "location": None, "area": None, "tags": [], "active": True,
        "created_at": T, "updated_at": T,
    }  # fmt: skip
    assert Device.model_validate(doc).network is None
    assert entry_from_json(doc).network is None


# --- the view ---------------------------------------------------------------------------------
def _record(device_id: str, network: Any) -> bytes:
    doc: dict[str, Any] = {
        "kind": "device", "tenant": "city", "id": device_id, "name": device_id, "type": "aq",
        "dev_eui": None, "location": None, "area": None, "tags": [], "active": True,
        "network": network, "created_at": T, "updated_at": T,
    }  # fmt: skip
    return json.dumps(doc).encode()


def test_devices_of_one_application_share_one_binding_object() -> None:
    view = RegistryView()
    network = {"server": "tts", "application": "city-air", "tenant": "city"}
    for i in range(100):
        view.apply(f"device/d{i}", _record(f"d{i}", network), i)
    entries = [view.device_by_id(f"d{i}") for i in range(100)]
    assert all(e is not None and e.network is not None for e in entries)
    assert len({id(e.network) for e in entries if e is not None}) == 1
    first = entries[0]
    assert first is not None
    assert first.to_device().network == NetworkBinding.model_validate(network)
    # an entry made from a record shares it too
    assert DeviceEntry.from_device(first.to_device()).network is first.network


@pytest.mark.parametrize(
    "network",
    [
        "tts:city-air",
        {"server": "tts"},
        {"server": "tts", "application": 5},
        {"server": "tts", "application": "Bad App"},
        {"server": "tts", "application": "abc", "colour": "red"},
    ],
)
def test_a_malformed_binding_on_the_topic_is_skipped_not_fatal(network: Any) -> None:
    view = RegistryView()
    view.apply("device/d", _record("d", network), 0)
    assert view.malformed == 1
    assert view.device_by_id("d") is None


# --- the service ------------------------------------------------------------------------------
async def _registry() -> Registry:
    registry = Registry(InMemoryRegistryStore())
    await registry.create_tenant(ADMIN, TenantSpec(id="city", name="City"))
    await registry.create_type(ADMIN, "city", DeviceTypeSpec(id="aq", name="Air"))
    return registry


async def test_create_replace_and_list_carry_the_binding() -> None:
    registry = await _registry()
    spec = DeviceSpec.model_validate(
        {"id": "aq-1", "name": "Air 1", "type": "aq", "dev_eui": "70B3D57ED0000001",
         "network": {"server": "tts", "application": "city-air", "tenant": "city"}}
    )  # fmt: skip
    created = await registry.create_device(ADMIN, "city", spec)
    assert created.public()["network"] == {
        "server": "tts",
        "application": "city-air",
        "tenant": "city",
    }
    entry = registry.view.device_by_id("aq-1")
    assert entry is not None
    assert entry.network == spec.network
    listed = registry.list_devices(ADMIN, "city").items
    assert [d.network for d in listed] == [spec.network]
    # PUT semantics: a replace without network unbinds
    await registry.replace_device(ADMIN, "city", "aq-1", spec.model_copy(update={"network": None}))
    entry = registry.view.device_by_id("aq-1")
    assert entry is not None
    assert entry.network is None


# --- the import -------------------------------------------------------------------------------
def _tts_end_device(device_id: str, dev_eui: str, app: str = "city-air", **kw: Any) -> Any:
    """An end device as ``ttn-lw-cli end-devices list --all`` prints it (abridged)."""
    return {
        "ids": {
            "device_id": device_id,
            "application_ids": {"application_id": app},
            "dev_eui": dev_eui,
            "join_eui": "70B3D57ED0000000",
        },
        "created_at": "2025-01-07T10:00:00.123Z",
        "updated_at": "2025-01-07T10:00:00.123Z",
        "name": f"Sensor {device_id}",
        "description": "on the town hall roof",
        "attributes": {"vendor": "acme"},
        "version_ids": {"brand_id": "acme", "model_id": "aq"},
        "network_server_address": "city.eu1.cloud.thethings.industries",
        "lorawan_version": "MAC_V1_0_3",
        "frequency_plan_id": "EU_863_870_TTN",
        "supports_join": True,
        "locations": {"user": {"latitude": 52.37, "longitude": 4.89, "source": "SOURCE_REGISTRY"}},
        **kw,
    }


def test_a_tts_json_export_binds_each_device_to_its_application_and_the_given_tenant() -> None:
    body = json.dumps(
        [
            _tts_end_device("aq-1", "70B3D57ED0000001"),
            _tts_end_device(
                "aq-2", "70B3D57ED0000002", "city-noise",
                root_keys={"app_key": {"key": "0123456789ABCDEF0123456789ABCDEF"}},
            ),
            _tts_end_device("aq-3", "70B3D57ED0000003", type="noise", area="west"),
        ]
    ).encode()  # fmt: skip

    parsed = read_import(body, "application/json", default_type="aq", tts_tenant="city")

    rows = [r for r in parsed.rows if isinstance(r, DeviceSpec)]
    assert len(rows) == 3, [
        describe_errors(r) for r in parsed.rows if not isinstance(r, DeviceSpec)
    ]
    first, second, third = rows
    assert (first.id, first.dev_eui, first.name, first.type) == (
        "aq-1",
        "70b3d57ed0000001",
        "Sensor aq-1",
        "aq",
    )
    assert first.network == NetworkBinding(
        server=NetworkServer.TTS, application="city-air", tenant="city"
    )
    assert first.location is not None
    assert (first.location.latitude, first.location.longitude) == (52.37, 4.89)
    assert second.network is not None
    assert second.network.application == "city-noise"
    assert second.app_key is not None
    assert (third.type, third.area) == ("noise", "west")  # cityhub's own fields beside TTS's
    assert parsed.ids == ["aq-1", "aq-2", "aq-3"]


def test_a_tts_json_export_without_tenant_binds_to_a_single_tenant_deployment() -> None:
    body = json.dumps([_tts_end_device("aq-1", "70B3D57ED0000001")]).encode()
    (row,) = read_import(body, "application/json", default_type="aq").rows
    assert isinstance(row, DeviceSpec)
    assert row.network is not None
    assert row.network.tenant is None


def test_an_explicit_network_in_a_tts_export_wins_and_a_bad_one_is_a_row_error() -> None:
    chirpstack = {"server": "chirpstack", "application": CS_APP}
    body = json.dumps(
        [
            _tts_end_device("aq-1", "70B3D57ED0000001", network=chirpstack),
            _tts_end_device("aq-2", "70B3D57ED0000002", "Not An Id"),
            _tts_end_device("aq-3", "70B3D57ED0000003", locations="roof"),
            {"ids": {"application_ids": "city-air"}, "name": "x"},
        ]
    ).encode()
    first, second, third, fourth = read_import(body, "application/json", default_type="aq").rows
    assert isinstance(first, DeviceSpec)
    assert first.network == NetworkBinding.model_validate(chirpstack)
    assert isinstance(second, list)
    assert [e.field for e in second] == ["network.application"]
    assert isinstance(third, list)
    assert [e.field for e in third] == ["locations"]
    assert isinstance(fourth, list)
    assert {e.field for e in fourth} == {"ids.application_ids", "id"}


def test_a_bad_tts_tenant_refuses_the_whole_import() -> None:
    body = json.dumps([_tts_end_device("aq-1", "70B3D57ED0000001")]).encode()
    with pytest.raises(
        Invalid, match=r"ttsTenant, the CLI.s --tts-tenant\): must be a The Things Stack tenant id"
    ):
        read_import(body, "application/json", default_type="aq", tts_tenant="Not A Tenant")


def test_the_csv_network_column() -> None:
    body = (
        "id;dev_eui;type;network\n"
        "aq-1;70B3D57ED0000001;aq;tts:city-air@city\n"
        f"aq-2;70B3D57ED0000002;aq;chirpstack:{CS_APP.upper()}\n"
        "aq-3;70B3D57ED0000003;aq;\n"
        "aq-4;70B3D57ED0000004;aq;city-air\n"
        "aq-5;70B3D57ED0000005;aq;tts:City Air\n"
    ).encode()
    parsed = read_import(body, "text/csv")
    first, second, third, fourth, fifth = parsed.rows
    assert isinstance(first, DeviceSpec)
    assert first.network is not None
    assert first.network.describe() == "tts:city-air@city"
    assert isinstance(second, DeviceSpec)
    assert second.network is not None
    assert second.network.application == CS_APP
    assert isinstance(third, DeviceSpec)
    assert third.network is None
    assert isinstance(fourth, list)
    assert fourth == [
        FieldError(
            "network",
            "a network binding reads tts:<application>[@<tenant>] or chirpstack:<application "
            "UUID>, got 'city-air'",
        )
    ]
    assert isinstance(fifth, list)
    assert [e.field for e in fifth] == ["network.application"]
    assert parsed.ignored_columns == ()


# --- the CLI ----------------------------------------------------------------------------------
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


def test_cli_binds_on_create_and_update_and_unbinds(cityhub: click.Group) -> None:
    invoke(cityhub, "tenants", "create", "city", "--name", "City")
    invoke(cityhub, "types", "create", "--tenant", "city", "aq", "--name", "Air")
    invoke(
        cityhub, "devices", "create", "--tenant", "city", "aq-1", "--type", "aq",
        "--dev-eui", "70B3D57ED0000001", "--network", "tts:city-air@city", "--area", "west",
    )  # fmt: skip

    def shown() -> dict[str, Any]:
        out = invoke(cityhub, "devices", "get", "--tenant", "city", "aq-1", "--json").stdout
        return json.loads(out)  # type: ignore[no-any-return]

    assert shown()["network"] == {"server": "tts", "application": "city-air", "tenant": "city"}
    table = invoke(cityhub, "devices", "get", "--tenant", "city", "aq-1").stdout
    assert "tts:city-air@city" in table

    invoke(cityhub, "devices", "update", "--tenant", "city", "aq-1", "--network",
           f"chirpstack:{CS_APP}")  # fmt: skip
    doc = shown()
    assert doc["network"] == {"server": "chirpstack", "application": CS_APP, "tenant": None}
    assert (doc["area"], doc["dev_eui"]) == ("west", "70b3d57ed0000001")  # the rest stays

    invoke(cityhub, "devices", "update", "--tenant", "city", "aq-1", "--unbind", "--inactive")
    doc = shown()
    assert (doc["network"], doc["active"], doc["area"]) == (None, False, "west")


def test_cli_refuses_bad_bindings_with_the_field_at_fault(cityhub: click.Group) -> None:
    invoke(cityhub, "tenants", "create", "city", "--name", "City")
    invoke(cityhub, "types", "create", "--tenant", "city", "aq", "--name", "Air")
    bad = invoke(
        cityhub, "devices", "create", "--tenant", "city", "aq-1", "--type", "aq",
        "--network", "chirpstack:city-air", expect=1,
    )  # fmt: skip
    assert "network.application: must be the ChirpStack application's UUID" in bad.stderr
    bad = invoke(
        cityhub, "devices", "create", "--tenant", "city", "aq-1", "--type", "aq",
        "--network", "city-air", expect=1,
    )  # fmt: skip
    assert "tts:<application>[@<tenant>]" in bad.stderr
    invoke(cityhub, "devices", "create", "--tenant", "city", "aq-1", "--type", "aq")
    both = invoke(
        cityhub, "devices", "update", "--tenant", "city", "aq-1", "--unbind",
        "--network", "tts:abc", expect=1,
    )  # fmt: skip
    assert "not both" in both.stderr
    nothing = invoke(cityhub, "devices", "update", "--tenant", "city", "aq-1", expect=1)
    assert "nothing to change" in nothing.stderr
    missing = invoke(
        cityhub, "devices", "update", "--tenant", "city", "nope", "--area", "x", expect=1
    )
    assert "not found" in missing.stderr


def test_cli_import_of_a_tts_export_binds_with_the_tts_tenant(
    cityhub: click.Group, tmp_path: Path
) -> None:
    invoke(cityhub, "tenants", "create", "city", "--name", "City")
    invoke(cityhub, "types", "create", "--tenant", "city", "aq", "--name", "Air")
    export = tmp_path / "end-devices.json"
    export.write_text(json.dumps([_tts_end_device("aq-1", "70B3D57ED0000001")]))
    invoke(
        cityhub, "devices", "import", "--tenant", "city", str(export),
        "--default-type", "aq", "--tts-tenant", "city",
    )  # fmt: skip
    out = invoke(cityhub, "devices", "get", "--tenant", "city", "aq-1", "--json").stdout
    assert json.loads(out)["network"] == {
        "server": "tts",
        "application": "city-air",
        "tenant": "city",
    }
    bad = invoke(
        cityhub, "devices", "import", "--tenant", "city", str(export),
        "--default-type", "aq", "--tts-tenant", "Not A Tenant", expect=1,
    )  # fmt: skip
    assert "--tts-tenant): must be a The Things Stack tenant id" in bad.stderr
