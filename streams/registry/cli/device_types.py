"""``cityhub types``: device types, with their field mappings written FIELD=QUANTITY[:UNIT]..."""

from __future__ import annotations

import re
from typing import Any

import click
from pydantic import ValidationError

from cityhub.schemas.quality import QualitySpec
from cityhub.schemas.registry import (
    NETWORK_DECODER,
    Classification,
    DeviceType,
    DeviceTypeSpec,
    FieldMapping,
    NgsiLdAttribute,
    NgsiLdSpec,
    SmartDataModel,
)
from cityhub.streams.registry.cli.output import (
    IntervalParam,
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


def _ngsi_text(spec: NgsiLdSpec | None) -> str:
    if spec is None:
        return "-"
    attributes = " ".join(
        f"{a.quantity}={a.attribute}" + (f":{a.unit_code}" if a.unit_code else "")
        for a in spec.attributes
    )
    return " ".join(part for part in (spec.model or "", attributes) if part) or "-"


_NGSI_ATTRIBUTE = re.compile(r"^(?P<quantity>[^=]+)=(?P<attribute>[^:]+)(?::(?P<unit_code>.+))?$")


def _parse_ngsi_attribute(text: str) -> NgsiLdAttribute:
    match = _NGSI_ATTRIBUTE.match(text)
    if match is None:
        raise click.BadParameter(
            f"{text!r}: write QUANTITY=ATTRIBUTE[:UNITCODE], e.g. pm2_5=pm25:GQ"
        )
    try:
        return NgsiLdAttribute.model_validate(
            {k: v for k, v in match.groupdict().items() if v is not None}
        )
    except ValidationError as exc:
        raise click.BadParameter(f"{text!r}: {describe_errors(field_errors(exc))}") from None


def _ngsi_spec(model: str | None, attributes: tuple[str, ...]) -> NgsiLdSpec | None:
    if model is None and not attributes:
        return None
    return NgsiLdSpec(
        model=None if model is None else SmartDataModel(model),
        attributes=[_parse_ngsi_attribute(a) for a in attributes],
    )


@click.group("types")
def types() -> None:
    """Device types: how a tenant's devices' payloads are decoded and read."""


class QualityParam(click.ParamType):
    """``--quality``: a type's quality configuration as JSON (docs/quality.md)."""

    name = "JSON"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> QualitySpec:
        if isinstance(value, QualitySpec):
            return value
        try:
            return QualitySpec.model_validate_json(str(value))
        except ValidationError as exc:
            errors = field_errors(exc, model=QualitySpec, root="--quality")
            self.fail(describe_errors(errors), param, ctx)


QUALITY_HELP = (
    'Quality limits and fault fields as JSON, e.g. \'{"limits": {"pm2_5": {"max": 500}}, '
    '"fault_fields": ["status"]}\' (docs/quality.md); default: the hub\'s.'
)


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
@click.option(
    "--ngsi-model",
    type=click.Choice([m.value for m in SmartDataModel]),
    default=None,
    help="The Smart Data Model of its NGSI-LD entities (default: what its quantities suggest).",
)
@click.option(
    "--ngsi-attribute",
    "ngsi_attributes",
    multiple=True,
    metavar="QUANTITY=ATTRIBUTE[:UNITCODE]",
    help="The NGSI-LD attribute (and UN/CEFACT unit code) of a quantity (repeat for more).",
)
@click.option(
    "--expected-interval",
    "expected_interval",
    type=IntervalParam(),
    default=None,
    help="How often its devices report (900, 15m, 1h); default: the hub's setting.",
)
@click.option("--quality", type=QualityParam(), default=None, help=QUALITY_HELP)
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
    ngsi_model: str | None,
    ngsi_attributes: tuple[str, ...],
    expected_interval: int | None,
    quality: QualitySpec | None,
    as_json: bool,
) -> None:
    """Create device type TYPE_ID in a tenant."""
    fields = [_parse_mapping(m) for m in mappings]
    ngsi_ld = _ngsi_spec(ngsi_model, ngsi_attributes)
    spec = build_spec(
        lambda: DeviceTypeSpec(
            id=type_id,
            name=name,
            decoder=decoder,
            fields=fields,
            only_mapped=only_mapped,
            classification=Classification(classification),
            personal_data_category=personal_data_category,
            ngsi_ld=ngsi_ld,
            expected_interval_seconds=expected_interval,
            quality=quality,
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
            ("ngsi-ld", _ngsi_text(found.ngsi_ld)),
            ("expected interval", interval_text(found.expected_interval_seconds)),
            ("quality", "-" if found.quality is None else found.quality.model_dump_json()),
            ("created", found.created_at),
            ("updated", found.updated_at),
        ]
    )


@types.command("update")
@click.option("--tenant", required=True)
@click.argument("type_id")
@click.option("--name", default=None)
@click.option(
    "--expected-interval",
    "expected_interval",
    type=IntervalParam(),
    default=None,
    help="How often its devices report (900, 15m, 1h).",
)
@click.option("--no-expected-interval", is_flag=True, help="Use the hub's default interval again.")
@click.option("--quality", type=QualityParam(), default=None, help=QUALITY_HELP)
@click.option("--no-quality", is_flag=True, help="Use the hub's quality limits again.")
@json_option
def types_update(
    tenant: str,
    type_id: str,
    name: str | None,
    expected_interval: int | None,
    no_expected_interval: bool,
    quality: QualitySpec | None,
    no_quality: bool,
    as_json: bool,
) -> None:
    """Change the options given of device type TYPE_ID; everything else stays."""
    if expected_interval is not None and no_expected_interval:
        fail("give --expected-interval or --no-expected-interval, not both")
    if quality is not None and no_quality:
        fail("give --quality or --no-quality, not both")
    changes: dict[str, Any] = {} if name is None else {"name": name}
    if expected_interval is not None or no_expected_interval:
        changes["expected_interval_seconds"] = expected_interval
    if quality is not None or no_quality:
        changes["quality"] = None if quality is None else quality.model_dump(exclude_unset=True)
    if not changes:
        fail("nothing to change: give at least one option (see --help)")

    async def update(registry: Registry) -> DeviceType:
        current = _type_doc(registry.get_type(SYSTEM, tenant, type_id))
        doc = {key: current[key] for key in DeviceTypeSpec.model_fields if key in current}
        spec = DeviceTypeSpec.model_validate({**doc, **changes})
        return await registry.replace_type(SYSTEM, tenant, type_id, spec)

    updated = run(update)
    if as_json:
        echo_json(_type_doc(updated))
    else:
        click.echo(f"Updated device type {updated.id} in tenant {updated.tenant}.")


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
