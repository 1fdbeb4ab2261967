"""``cityhub types``: device types, with their field mappings written FIELD=QUANTITY[:UNIT]..."""

from __future__ import annotations

import re
from typing import Any

import click
from pydantic import ValidationError

from cityhub.schemas.registry import (
    NETWORK_DECODER,
    Classification,
    DeviceType,
    DeviceTypeSpec,
    FieldMapping,
)
from cityhub.streams.registry.cli.output import (
    echo_json,
    field_lines,
    json_option,
    more_hint,
    table,
)
from cityhub.streams.registry.cli.session import SYSTEM, build_spec, run, run_read
from cityhub.streams.registry.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from cityhub.streams.registry.spec_errors import describe_errors, field_errors


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
@click.option(
    "--personal-data-category",
    default=None,
    help="For a personal type: the category processing activities name (default: the type id).",
)
@json_option
def types_create(
    tenant: str,
    type_id: str,
    name: str,
    decoder: str,
    classification: str,
    mappings: tuple[str, ...],
    only_mapped: bool,
    personal_data_category: str | None,
    as_json: bool,
) -> None:
    """Create device type TYPE_ID in a tenant."""
    fields = [_parse_mapping(m) for m in mappings]
    spec = build_spec(
        lambda: DeviceTypeSpec(
            id=type_id,
            name=name,
            decoder=decoder,
            fields=fields,
            only_mapped=only_mapped,
            classification=Classification(classification),
            personal_data_category=personal_data_category,
        )
    )
    created = run(lambda registry: registry.create_type(SYSTEM, tenant, spec))
    if as_json:
        echo_json(_type_doc(created))
    else:
        click.echo(f"Created device type {created.id} in tenant {created.tenant}.")


@types.command("get")
@click.option("--tenant", required=True)
@click.argument("type_id")
@json_option
def types_get(tenant: str, type_id: str, as_json: bool) -> None:
    """Show device type TYPE_ID."""
    found = run_read(lambda registry: registry.get_type(SYSTEM, tenant, type_id))
    if as_json:
        echo_json(_type_doc(found))
        return
    field_lines(
        [
            ("id", found.id),
            ("tenant", found.tenant),
            ("name", found.name),
            ("decoder", found.decoder),
            ("classification", found.classification.value),
            ("personal data category", found.personal_data_category or "-"),
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
    page = run_read(
        lambda registry: registry.list_types(SYSTEM, tenant, limit=limit, cursor=cursor)
    )
    if as_json:
        echo_json({"items": [_type_doc(t) for t in page.items], "next_cursor": page.next_cursor})
        return
    table(
        ("ID", "NAME", "DECODER", "CLASSIFICATION", "FIELDS"),
        [(t.id, t.name, t.decoder, t.classification.value, str(len(t.fields))) for t in page.items],
    )
    more_hint(page.next_cursor)


@types.command("delete")
@click.option("--tenant", required=True)
@click.argument("type_id")
def types_delete(tenant: str, type_id: str) -> None:
    """Delete device type TYPE_ID (refused while devices use it)."""
    run(lambda registry: registry.delete_type(SYSTEM, tenant, type_id))
    click.echo(f"Deleted device type {type_id} from tenant {tenant}.")
