"""``cityhub devices create|update|get|list|delete``: devices one by one (``import``: in bulk,
``device_import.py``)."""

from __future__ import annotations

from typing import Any

import click

from cityhub.schemas.registry import Device, DeviceSpec, Location, network_binding_fields
from cityhub.streams.registry.cli.device_export import devices_export
from cityhub.streams.registry.cli.device_import import devices_import
from cityhub.streams.registry.cli.output import (
    IntervalParam,
    device_filters,
    echo_json,
    field_lines,
    interval_text,
    json_option,
    more_hint,
    table,
)
from cityhub.streams.registry.cli.session import SYSTEM, build_spec, fail, run, run_read
from cityhub.streams.registry.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from cityhub.streams.registry.service import Registry


@click.group("devices")
def devices() -> None:
    """Devices: registered sensors, with their type, location, area and tags."""


devices.add_command(devices_import)
devices.add_command(devices_export)


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


def _location(location: Location | None) -> str:
    if location is None:
        return ""
    text = f"{location.latitude:g},{location.longitude:g}"
    return text if location.altitude is None else f"{text},{location.altitude:g}m"


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
@click.option(
    "--data-subject",
    "data_subject",
    default=None,
    help="Link it (a device of a personal type) to this data subject's pseudonymous id.",
)
@click.option(
    "--expected-interval",
    "expected_interval",
    type=IntervalParam(),
    default=None,
    help="How often it reports (900, 15m, 1h), overriding its type's.",
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
    data_subject: str | None,
    expected_interval: int | None,
    as_json: bool,
) -> None:
    """Register device DEVICE_ID in a tenant."""
    if (lat is None) != (lon is None) or (alt is not None and lat is None):
        fail("give --lat and --lon together (and --alt only with them)")
    location: dict[str, float | None] | None = (
        None if lat is None else {"latitude": lat, "longitude": lon, "altitude": alt}
    )
    spec = build_spec(
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
                "data_subject": data_subject,
                "expected_interval_seconds": expected_interval,
            }
        )
    )
    created = run(lambda registry: registry.create_device(SYSTEM, tenant, spec))
    if as_json:
        echo_json(created.public(with_subject=True))
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
        fail(str(exc))


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
@click.option(
    "--data-subject",
    "data_subject",
    default=None,
    help="Link it (a device of a personal type) to this data subject's pseudonymous id.",
)
@click.option("--no-data-subject", is_flag=True, help="Unlink its data subject.")
@click.option(
    "--expected-interval",
    "expected_interval",
    type=IntervalParam(),
    default=None,
    help="How often it reports (900, 15m, 1h), overriding its type's.",
)
@click.option("--no-expected-interval", is_flag=True, help="Use its type's interval again.")
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
    data_subject: str | None,
    no_data_subject: bool,
    expected_interval: int | None,
    no_expected_interval: bool,
    as_json: bool,
) -> None:
    """Change the options given of device DEVICE_ID; everything else stays (its key and its
    data subject too)."""
    if network is not None and unbind:
        fail("give --network or --unbind, not both")
    if data_subject is not None and no_data_subject:
        fail("give --data-subject or --no-data-subject, not both")
    if dev_eui is not None and no_dev_eui:
        fail("give --dev-eui or --no-dev-eui, not both")
    if expected_interval is not None and no_expected_interval:
        fail("give --expected-interval or --no-expected-interval, not both")
    if (lat is None) != (lon is None) or (alt is not None and lat is None):
        fail("give --lat and --lon together (and --alt only with them)")
    changes: dict[str, Any] = {
        "type": type_id,
        "dev_eui": dev_eui,
        "name": name,
        "area": area,
        "active": active,
        "network": _network_option(network),
        "location": None if lat is None else {"latitude": lat, "longitude": lon, "altitude": alt},
        "tags": list(tags) if tags else None,
        "data_subject": data_subject,
        "expected_interval_seconds": expected_interval,
    }
    changes = {key: value for key, value in changes.items() if value is not None}
    if no_data_subject:
        changes["data_subject"] = None
    if no_dev_eui:
        changes["dev_eui"] = None
    if unbind:
        changes["network"] = None
    if no_expected_interval:
        changes["expected_interval_seconds"] = None
    if not changes:
        fail("nothing to change: give at least one option (see --help)")

    async def update(registry: Registry) -> Device:
        current = registry.get_device(SYSTEM, tenant, device_id).public()
        # Neither app_key nor data_subject unless changed: the stored ones stay.
        doc = {key: current[key] for key in DeviceSpec.model_fields if key in current}
        spec = DeviceSpec.model_validate({**doc, **changes})
        return await registry.replace_device(SYSTEM, tenant, device_id, spec)

    updated = run(update)
    if as_json:
        echo_json(updated.public(with_subject=True))
    else:
        click.echo(f"Updated device {updated.id} in tenant {updated.tenant}.")


@devices.command("get")
@click.option("--tenant", required=True)
@click.argument("device_id")
@json_option
def devices_get(tenant: str, device_id: str, as_json: bool) -> None:
    """Show device DEVICE_ID (never its key; only whether it has one; its data subject, as
    the CLI is the platform operator's)."""
    found = run_read(lambda registry: registry.get_device(SYSTEM, tenant, device_id))
    if as_json:
        echo_json(found.public(with_subject=True))
        return
    field_lines(
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
            ("data subject", found.data_subject or "none"),
            ("expected interval", interval_text(found.expected_interval_seconds)),
            ("created", found.created_at),
            ("updated", found.updated_at),
        ]
    )


@devices.command("list")
@device_filters
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
    page = run_read(
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
        echo_json({"items": [d.public() for d in page.items], "next_cursor": page.next_cursor})
        return
    table(_DEVICE_HEADERS, [_device_row(d) for d in page.items])
    more_hint(page.next_cursor)


@devices.command("delete")
@click.option("--tenant", required=True)
@click.argument("device_id")
def devices_delete(tenant: str, device_id: str) -> None:
    """Delete device DEVICE_ID."""
    run(lambda registry: registry.delete_device(SYSTEM, tenant, device_id))
    click.echo(f"Deleted device {device_id} from tenant {tenant}.")
