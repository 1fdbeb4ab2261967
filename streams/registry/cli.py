"""``cityhub tenants|keys|types|devices``: the registry from the command line.

The CLI talks to the registry topic directly, as ``Principal.system()``: whoever can reach Kafka
is an administrator already, and this is how the first admin API key is made. Each command
starts a store (which reads the registry topic into memory), does one thing, and stops it.

Output is a table for people, or JSON with ``--json``. A registry error prints ``Error: ...``
with the fields at fault and exits 1. Secrets are never printed, except an API key's secret once,
when it is created.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import orjson
from pydantic import ValidationError

from cityhub.schemas.errors import CityhubError
from cityhub.schemas.registry import (
    NETWORK_DECODER,
    ApiKey,
    Classification,
    Device,
    DeviceSpec,
    DeviceType,
    DeviceTypeSpec,
    FieldMapping,
    Location,
    Role,
    Tenant,
    TenantSpec,
    network_binding_fields,
)
from cityhub.schemas.settings import Settings
from cityhub.streams.registry.devices import ImportReport
from cityhub.streams.registry.importer import (
    content_type_for,
    describe_errors,
    field_errors,
    read_import,
)
from cityhub.streams.registry.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RecordStore, RegistryStore
from cityhub.streams.service_errors import FieldError, ServiceError

T = TypeVar("T")

store_factory: Callable[[Settings], RecordStore] = RegistryStore
"""How commands get their store; tests of the output swap in an ``InMemoryRegistryStore``."""

SYSTEM = Principal.system()


# --- running one operation ---------------------------------------------------------------------


def _fail(message: str, errors: Sequence[FieldError] = ()) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    for error in errors:
        click.echo(f"  {error.field}: {error.message}", err=True)
    sys.exit(1)


_SPEC_NAMES = {
    "TenantSpec": "tenant",
    "DeviceTypeSpec": "device type",
    "DeviceSpec": "device",
    "FieldMapping": "field mapping",
}


@contextmanager
def _reported_errors() -> Iterator[None]:
    """Registry, validation and broker errors as ``Error: ...`` and exit status 1, no traceback."""
    try:
        yield
    except ServiceError as exc:
        _fail(exc.detail, exc.errors)
    except ValidationError as exc:
        _fail(f"invalid {_SPEC_NAMES.get(exc.title, exc.title)}", field_errors(exc))
    except CityhubError as exc:
        _fail(str(exc))
    except (OSError, TimeoutError) as exc:
        _fail(f"cannot reach the registry on Kafka ({Settings().kafka.bootstrap_servers}): {exc}")
    except Exception as exc:
        # aiokafka's errors have no common base with ours; they are the broker's, not a bug here.
        if type(exc).__module__.startswith("aiokafka"):
            _fail(f"Kafka ({Settings().kafka.bootstrap_servers}): {type(exc).__name__}: {exc}")
        raise


def run(operation: Callable[[Registry], Awaitable[T]]) -> T:
    """Start a store, run ``operation`` on a registry over it, stop the store; errors exit 1."""

    async def session() -> T:
        store = store_factory(Settings())
        await store.start()
        try:
            return await operation(Registry(store))
        finally:
            await store.stop()

    with _reported_errors(), _quiet_clients():
        return asyncio.run(session())
    raise AssertionError("unreachable")  # pragma: no cover - _reported_errors exits


_CHATTY_LOGGERS = {
    "aiokafka": logging.CRITICAL,  # connection retries, repeated until the store gives up
    "cityhub.registry": logging.WARNING,
    "cityhub.topics": logging.WARNING,
}


@contextmanager
def _quiet_clients() -> Iterator[None]:
    """Below debug level, keep the Kafka client's retry logs and the store's progress off the
    terminal: one command, one outcome, and its ``Error:`` line says what went wrong."""
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger, quiet in zip(loggers, _CHATTY_LOGGERS.values(), strict=True):
        logger.setLevel(quiet)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _read(operation: Callable[[Registry], T]) -> T:
    """``run`` for a synchronous read of the view."""

    async def read(registry: Registry) -> T:
        return operation(registry)

    return run(read)


def _spec(build: Callable[[], T]) -> T:
    """Build a spec from options; validation errors exit 1 before Kafka is touched."""
    with _reported_errors():
        return build()
    raise AssertionError("unreachable")  # pragma: no cover - _reported_errors exits


# --- output -----------------------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


def json_option(command: F) -> F:
    """The ``--json`` flag: machine-readable output instead of a table."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        command
    )


def _echo_json(doc: Any) -> None:
    click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    if not rows:
        click.echo("(none)")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in (headers, *rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _fields(pairs: Sequence[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        click.echo(f"{key + ':':<{width + 1}} {value}")


def _more(next_cursor: str | None) -> None:
    if next_cursor is not None:
        click.echo(f"(more: repeat with --cursor {next_cursor})", err=True)


def _location(location: Location | None) -> str:
    if location is None:
        return ""
    text = f"{location.latitude:g},{location.longitude:g}"
    return text if location.altitude is None else f"{text},{location.altitude:g}m"


def _tenant_doc(tenant: Tenant) -> dict[str, Any]:
    return tenant.model_dump(mode="json", exclude={"kind"})


def _type_doc(device_type: DeviceType) -> dict[str, Any]:
    return device_type.model_dump(mode="json", exclude={"kind"})


def _mapping_text(mapping: FieldMapping) -> str:
    text = f"{mapping.field}={mapping.quantity}"
    if mapping.unit:
        text += f":{mapping.unit}"
    if mapping.scale != 1.0:
        text += f"*{mapping.scale:g}"
    if mapping.offset != 0.0:
        text += f"+{mapping.offset:g}"
    return text


# --- tenants -----------------------------------------------------------------------------------


@click.group("tenants")
def tenants() -> None:
    """Operator organisations, which own device types and devices."""


@tenants.command("create")
@click.argument("tenant_id")
@click.option("--name", required=True, help="The organisation's name.")
@json_option
def tenants_create(tenant_id: str, name: str, as_json: bool) -> None:
    """Create tenant TENANT_ID."""
    spec = _spec(lambda: TenantSpec(id=tenant_id, name=name))
    tenant = run(lambda registry: registry.create_tenant(SYSTEM, spec))
    if as_json:
        _echo_json(_tenant_doc(tenant))
    else:
        click.echo(f"Created tenant {tenant.id} ({tenant.name}).")


@tenants.command("list")
@json_option
def tenants_list(as_json: bool) -> None:
    """List the tenants."""
    found = _read(lambda registry: registry.list_tenants(SYSTEM))
    if as_json:
        _echo_json([_tenant_doc(t) for t in found])
        return
    _table(("ID", "NAME", "CREATED"), [(t.id, t.name, t.created_at) for t in found])


# --- API keys ----------------------------------------------------------------------------------


@click.group("keys")
def keys() -> None:
    """API keys: each bound to a tenant and a role; the secret is shown once, at creation."""


@keys.command("create")
@click.option("--tenant", required=True, help="The tenant the key acts for.")
@click.option(
    "--role",
    required=True,
    type=click.Choice([r.value for r in Role]),
    help="admin: every tenant; operator: its tenant's types and devices; subscriber: read.",
)
@click.option("--name", required=True, help="What the key is for (a person, a service).")
@json_option
def keys_create(tenant: str, role: str, name: str, as_json: bool) -> None:
    """Create an API key and print its secret, once."""
    key, secret = run(lambda registry: registry.create_key(SYSTEM, tenant, Role(role), name))
    click.echo(
        "Warning: this is the only time the secret is shown; store it now (a password manager, "
        "a secret store). If it is lost, revoke the key and create another.",
        err=True,
    )
    if as_json:
        _echo_json({**key.public(), "secret": secret})
        return
    click.echo(f"Created API key {key.id} (tenant {key.tenant}, role {key.role.value}).")
    click.echo(f"Secret: {secret}")


def _key_row(key: ApiKey) -> tuple[str, ...]:
    return (key.id, key.tenant, key.role.value, key.name, key.created_at, key.revoked_at or "")


@keys.command("list")
@click.option("--tenant", default=None, help="Only this tenant's keys.")
@json_option
def keys_list(tenant: str | None, as_json: bool) -> None:
    """List API keys (never their secrets)."""
    found = _read(lambda registry: registry.list_keys(SYSTEM, tenant))
    if as_json:
        _echo_json([k.public() for k in found])
        return
    _table(("ID", "TENANT", "ROLE", "NAME", "CREATED", "REVOKED"), [_key_row(k) for k in found])


@keys.command("revoke")
@click.argument("key_id")
@json_option
def keys_revoke(key_id: str, as_json: bool) -> None:
    """Revoke API key KEY_ID: it authenticates nobody from now on."""
    key = run(lambda registry: registry.revoke_key(SYSTEM, key_id))
    if as_json:
        _echo_json(key.public())
    else:
        click.echo(f"Revoked API key {key.id} (tenant {key.tenant}) at {key.revoked_at}.")


# --- device types ------------------------------------------------------------------------------

_MAPPING = re.compile(
    r"^(?P<field>[^=]+)=(?P<quantity>[^:*+]+)(?::(?P<unit>[^*+]+))?"
    r"(?:\*(?P<scale>[^+]+))?(?:\+(?P<offset>.+))?$"
)


def _parse_mapping(text: str) -> FieldMapping:
    match = _MAPPING.match(text)
    if match is None:
        raise click.BadParameter(
            f"{text!r}: write FIELD=QUANTITY[:UNIT][*SCALE][+OFFSET], e.g. temp=temperature:Cel"
            " or raw_t=temperature:Cel*0.1+-40"
        )
    try:
        return FieldMapping(
            field=match["field"],
            quantity=match["quantity"],
            unit=match["unit"],
            scale=float(match["scale"]) if match["scale"] else 1.0,
            offset=float(match["offset"]) if match["offset"] else 0.0,
        )
    except (ValueError, ValidationError) as exc:
        reasons = (
            describe_errors(field_errors(exc)) if isinstance(exc, ValidationError) else str(exc)
        )
        raise click.BadParameter(f"{text!r}: {reasons}") from None


@click.group("types")
def types() -> None:
    """Device types: how a tenant's devices' payloads are decoded and read."""


@types.command("create")
@click.option("--tenant", required=True)
@click.argument("type_id")
@click.option("--name", required=True)
@click.option(
    "--decoder",
    default=NETWORK_DECODER,
    show_default=True,
    help="'network' (the network server's decoded payload), or a registered decoder's name.",
)
@click.option(
    "--classification",
    type=click.Choice([c.value for c in Classification]),
    default=Classification.INTERNAL.value,
    show_default=True,
)
@click.option(
    "--field",
    "mappings",
    multiple=True,
    metavar="FIELD=QUANTITY[:UNIT][*SCALE][+OFFSET]",
    help="Map a decoded field to a quantity (repeat for more).",
)
@click.option("--only-mapped", is_flag=True, help="Keep only the mapped fields.")
@json_option
def types_create(
    tenant: str,
    type_id: str,
    name: str,
    decoder: str,
    classification: str,
    mappings: tuple[str, ...],
    only_mapped: bool,
    as_json: bool,
) -> None:
    """Create device type TYPE_ID in a tenant."""
    fields = [_parse_mapping(m) for m in mappings]
    spec = _spec(
        lambda: DeviceTypeSpec(
            id=type_id,
            name=name,
            decoder=decoder,
            fields=fields,
            only_mapped=only_mapped,
            classification=Classification(classification),
        )
    )
    created = run(lambda registry: registry.create_type(SYSTEM, tenant, spec))
    if as_json:
        _echo_json(_type_doc(created))
    else:
        click.echo(f"Created device type {created.id} in tenant {created.tenant}.")


@types.command("get")
@click.option("--tenant", required=True)
@click.argument("type_id")
@json_option
def types_get(tenant: str, type_id: str, as_json: bool) -> None:
    """Show device type TYPE_ID."""
    found = _read(lambda registry: registry.get_type(SYSTEM, tenant, type_id))
    if as_json:
        _echo_json(_type_doc(found))
        return
    _fields(
        [
            ("id", found.id),
            ("tenant", found.tenant),
            ("name", found.name),
            ("decoder", found.decoder),
            ("classification", found.classification.value),
            ("fields", " ".join(_mapping_text(m) for m in found.fields)),
            ("only mapped", str(found.only_mapped).lower()),
            ("created", found.created_at),
            ("updated", found.updated_at),
        ]
    )


@types.command("list")
@click.option("--tenant", required=True)
@click.option("--limit", type=click.IntRange(1, MAX_PAGE_SIZE), default=DEFAULT_PAGE_SIZE)
@click.option("--cursor", default=None, help="Where the previous page ended.")
@json_option
def types_list(tenant: str, limit: int, cursor: str | None, as_json: bool) -> None:
    """List a tenant's device types."""
    page = _read(lambda registry: registry.list_types(SYSTEM, tenant, limit=limit, cursor=cursor))
    if as_json:
        _echo_json({"items": [_type_doc(t) for t in page.items], "next_cursor": page.next_cursor})
        return
    _table(
        ("ID", "NAME", "DECODER", "CLASSIFICATION", "FIELDS"),
        [(t.id, t.name, t.decoder, t.classification.value, str(len(t.fields))) for t in page.items],
    )
    _more(page.next_cursor)


@types.command("delete")
@click.option("--tenant", required=True)
@click.argument("type_id")
def types_delete(tenant: str, type_id: str) -> None:
    """Delete device type TYPE_ID (refused while devices use it)."""
    run(lambda registry: registry.delete_type(SYSTEM, tenant, type_id))
    click.echo(f"Deleted device type {type_id} from tenant {tenant}.")


# --- devices -----------------------------------------------------------------------------------


@click.group("devices")
def devices() -> None:
    """Devices: registered sensors, with their type, location, area and tags."""


def _device_row(device: Device) -> tuple[str, ...]:
    return (
        device.id,
        device.type,
        device.dev_eui or "",
        device.name,
        device.area or "",
        _location(device.location),
        " ".join(device.tags),
        "yes" if device.active else "no",
    )


_DEVICE_HEADERS = ("ID", "TYPE", "DEV_EUI", "NAME", "AREA", "LOCATION", "TAGS", "ACTIVE")


@devices.command("create")
@click.option("--tenant", required=True)
@click.argument("device_id")
@click.option("--type", "type_id", required=True, help="The device type's id, in the tenant.")
@click.option("--dev-eui", default=None, help="16 hex digits, for a LoRaWAN device.")
@click.option("--name", default=None, help="Defaults to the id.")
@click.option("--lat", type=float, default=None, help="Latitude, degrees (WGS 84).")
@click.option("--lon", type=float, default=None, help="Longitude, degrees (WGS 84).")
@click.option("--alt", type=float, default=None, help="Altitude, metres.")
@click.option("--area", default=None, help="A neighbourhood or district code.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeat for more).")
@click.option("--inactive", is_flag=True, help="Register it inactive: its messages are refused.")
@click.option(
    "--network",
    default=None,
    help=(
        "Bind it to its network-server application: tts:<application>[@<tenant>] or "
        "chirpstack:<application UUID>. Uplinks from anywhere else are then refused."
    ),
)
@json_option
def devices_create(
    tenant: str,
    device_id: str,
    type_id: str,
    dev_eui: str | None,
    name: str | None,
    lat: float | None,
    lon: float | None,
    alt: float | None,
    area: str | None,
    tags: tuple[str, ...],
    inactive: bool,
    network: str | None,
    as_json: bool,
) -> None:
    """Register device DEVICE_ID in a tenant."""
    if (lat is None) != (lon is None) or (alt is not None and lat is None):
        _fail("give --lat and --lon together (and --alt only with them)")
    location: dict[str, float | None] | None = (
        None if lat is None else {"latitude": lat, "longitude": lon, "altitude": alt}
    )
    spec = _spec(
        lambda: DeviceSpec.model_validate(
            {
                "id": device_id,
                "name": name or device_id,
                "type": type_id,
                "dev_eui": dev_eui,
                "location": location,
                "area": area,
                "tags": list(tags),
                "active": not inactive,
                "network": _network_option(network),
            }
        )
    )
    created = run(lambda registry: registry.create_device(SYSTEM, tenant, spec))
    if as_json:
        _echo_json(created.public())
    else:
        click.echo(f"Registered device {created.id} in tenant {created.tenant}.")


def _network_option(text: str | None) -> dict[str, str] | None:
    """The ``--network`` short form as a binding's fields; exits 1 if it has not that shape (the
    fields themselves are checked with the device)."""
    if text is None:
        return None
    try:
        return network_binding_fields(text)
    except ValueError as exc:
        _fail(str(exc))


@devices.command("update")
@click.option("--tenant", required=True)
@click.argument("device_id")
@click.option("--type", "type_id", default=None, help="Another device type of the tenant.")
@click.option("--dev-eui", default=None, help="16 hex digits.")
@click.option("--no-dev-eui", is_flag=True, help="Remove the DevEUI (a plain MQTT sensor).")
@click.option("--name", default=None)
@click.option("--lat", type=float, default=None, help="Latitude, degrees (WGS 84).")
@click.option("--lon", type=float, default=None, help="Longitude, degrees (WGS 84).")
@click.option("--alt", type=float, default=None, help="Altitude, metres.")
@click.option("--area", default=None, help="A neighbourhood or district code.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeat for more); replaces the tags.")
@click.option("--active/--inactive", default=None, help="Switch it on or off.")
@click.option(
    "--network",
    default=None,
    help="Bind it: tts:<application>[@<tenant>] or chirpstack:<application UUID>.",
)
@click.option("--unbind", is_flag=True, help="Remove the network binding.")
@json_option
def devices_update(
    tenant: str,
    device_id: str,
    type_id: str | None,
    dev_eui: str | None,
    no_dev_eui: bool,
    name: str | None,
    lat: float | None,
    lon: float | None,
    alt: float | None,
    area: str | None,
    tags: tuple[str, ...],
    active: bool | None,
    network: str | None,
    unbind: bool,
    as_json: bool,
) -> None:
    """Change the options given of device DEVICE_ID; everything else stays (its key too)."""
    if network is not None and unbind:
        _fail("give --network or --unbind, not both")
    if dev_eui is not None and no_dev_eui:
        _fail("give --dev-eui or --no-dev-eui, not both")
    if (lat is None) != (lon is None) or (alt is not None and lat is None):
        _fail("give --lat and --lon together (and --alt only with them)")
    changes: dict[str, Any] = {
        "type": type_id,
        "dev_eui": dev_eui,
        "name": name,
        "area": area,
        "active": active,
        "network": _network_option(network),
        "location": None if lat is None else {"latitude": lat, "longitude": lon, "altitude": alt},
        "tags": list(tags) if tags else None,
    }
    changes = {key: value for key, value in changes.items() if value is not None}
    if no_dev_eui:
        changes["dev_eui"] = None
    if unbind:
        changes["network"] = None
    if not changes:
        _fail("nothing to change: give at least one option (see --help)")

    async def update(registry: Registry) -> Device:
        current = registry.get_device(SYSTEM, tenant, device_id).public()
        doc = {key: current[key] for key in DeviceSpec.model_fields if key in current}
        spec = DeviceSpec.model_validate({**doc, **changes})  # no app_key: the stored one stays
        return await registry.replace_device(SYSTEM, tenant, device_id, spec)

    updated = run(update)
    if as_json:
        _echo_json(updated.public())
    else:
        click.echo(f"Updated device {updated.id} in tenant {updated.tenant}.")


@devices.command("get")
@click.option("--tenant", required=True)
@click.argument("device_id")
@json_option
def devices_get(tenant: str, device_id: str, as_json: bool) -> None:
    """Show device DEVICE_ID (never its key; only whether it has one)."""
    found = _read(lambda registry: registry.get_device(SYSTEM, tenant, device_id))
    if as_json:
        _echo_json(found.public())
        return
    _fields(
        [
            ("id", found.id),
            ("tenant", found.tenant),
            ("name", found.name),
            ("type", found.type),
            ("dev_eui", found.dev_eui or ""),
            ("location", _location(found.location)),
            ("area", found.area or ""),
            ("tags", " ".join(found.tags)),
            ("active", "yes" if found.active else "no"),
            ("network", found.network.describe() if found.network else "any"),
            ("app key", "set" if found.app_key_sha256 else "none"),
            ("created", found.created_at),
            ("updated", found.updated_at),
        ]
    )


@devices.command("list")
@click.option("--tenant", required=True)
@click.option("--type", "type_id", default=None, help="Only devices of this type.")
@click.option("--area", default=None, help="Only devices in this area.")
@click.option("--tag", default=None, help="Only devices with this tag.")
@click.option("--active/--inactive", default=None, help="Only active (or inactive) devices.")
@click.option("--limit", type=click.IntRange(1, MAX_PAGE_SIZE), default=DEFAULT_PAGE_SIZE)
@click.option("--cursor", default=None, help="Where the previous page ended.")
@json_option
def devices_list(
    tenant: str,
    type_id: str | None,
    area: str | None,
    tag: str | None,
    active: bool | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List a tenant's devices, in id order."""
    page = _read(
        lambda registry: registry.list_devices(
            SYSTEM,
            tenant,
            type_id=type_id,
            area=area,
            tag=tag,
            active=active,
            limit=limit,
            cursor=cursor,
        )
    )
    if as_json:
        _echo_json({"items": [d.public() for d in page.items], "next_cursor": page.next_cursor})
        return
    _table(_DEVICE_HEADERS, [_device_row(d) for d in page.items])
    _more(page.next_cursor)


@devices.command("delete")
@click.option("--tenant", required=True)
@click.argument("device_id")
def devices_delete(tenant: str, device_id: str) -> None:
    """Delete device DEVICE_ID."""
    run(lambda registry: registry.delete_device(SYSTEM, tenant, device_id))
    click.echo(f"Deleted device {device_id} from tenant {tenant}.")


@devices.command("import")
@click.option("--tenant", required=True)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--default-type",
    default=None,
    help="Device type of rows without one (The Things Stack's exports have no 'type' column).",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv", "json"]),
    default=None,
    help="Defaults to the file's extension: .json is JSON, anything else CSV.",
)
@click.option(
    "--tts-tenant",
    default=None,
    help=(
        "The Things Stack tenant (the @tenant of its topics) that TTS JSON end devices are "
        "bound to with their application; leave out for a single-tenant TTS."
    ),
)
@json_option
def devices_import(
    tenant: str,
    file: Path,
    default_type: str | None,
    file_format: str | None,
    tts_tenant: str | None,
    as_json: bool,
) -> None:
    """Create or update the devices of a CSV or JSON FILE; report each bad row and why.

    CSV: The Things Stack's device import columns (id, dev_eui, join_eui, name, app_key, ...;
    ';' or ',' separated) plus type, area, tags, latitude, longitude, altitude, active and
    network (tts:<application>[@<tenant>] or chirpstack:<application UUID>). JSON: an array of
    device objects, or of The Things Stack's end devices (`ttn-lw-cli end-devices list`), each
    bound to its application. Exits 1 if any row failed; the good rows are imported.
    """
    content_type = {"csv": "text/csv", "json": "application/json"}.get(
        file_format or "", content_type_for(file.name)
    )
    with _reported_errors():
        parsed = read_import(
            file.read_bytes(), content_type, default_type=default_type, tts_tenant=tts_tenant
        )
    if parsed.ignored_columns:
        click.echo(f"Note: ignored unknown columns: {', '.join(parsed.ignored_columns)}", err=True)
    report = run(lambda registry: registry.import_devices(SYSTEM, tenant, parsed.rows))
    rows = _report_rows(report, parsed.lines, parsed.ids)
    if as_json:
        _echo_json(
            {
                "created": report.created,
                "updated": report.updated,
                "failed": report.failed,
                "rows": rows,
            }
        )
    else:
        click.echo(
            f"Imported {file.name} into tenant {tenant}: {report.created} created, "
            f"{report.updated} updated, {report.failed} failed."
        )
        unit = "item" if content_type == "application/json" else "line"
        for row in rows:
            if row["status"] != "error":
                continue
            where = f"row {row['row']} ({unit} {row['line']}, id {row['id'] or '?'})"
            click.echo(
                f"{where}: " + "; ".join(f"{e['field']}: {e['message']}" for e in row["errors"])
            )
    if report.failed:
        sys.exit(1)


def _report_rows(
    report: ImportReport, lines: Sequence[int], ids: Sequence[str | None]
) -> list[dict[str, Any]]:
    """The report's rows with the file line and the id each came from."""
    out = []
    for result in report.rows:
        index = result.row - 1
        in_file = 0 <= index < len(lines)
        out.append(
            {
                "row": result.row,
                "line": lines[index] if in_file else None,
                "id": result.id or (ids[index] if in_file else None),
                "status": result.status,
                "errors": [{"field": e.field, "message": e.message} for e in result.errors],
            }
        )
    return out


REGISTRY_GROUPS: tuple[click.Group, ...] = (tenants, keys, types, devices)
"""The click groups to mount on the ``cityhub`` command."""


def mount(main: click.Group) -> None:
    """Add ``tenants``, ``keys``, ``types`` and ``devices`` to the ``cityhub`` command."""
    for group in REGISTRY_GROUPS:
        main.add_command(group)
