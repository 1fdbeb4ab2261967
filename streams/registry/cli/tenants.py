"""``cityhub tenants``: the operator organisations."""

from __future__ import annotations

from typing import Any

import click

from cityhub.schemas.registry import Tenant, TenantSpec
from cityhub.streams.registry.cli.output import echo_json, json_option, table
from cityhub.streams.registry.cli.session import SYSTEM, build_spec, run, run_read


def _tenant_doc(tenant: Tenant) -> dict[str, Any]:
    return tenant.model_dump(mode="json", exclude={"kind"})


@click.group("tenants")
def tenants() -> None:
    """Operator organisations, which own device types and devices."""


@tenants.command("create")
@click.argument("tenant_id")
@click.option("--name", required=True, help="The organisation's name.")
@json_option
def tenants_create(tenant_id: str, name: str, as_json: bool) -> None:
    """Create tenant TENANT_ID."""
    spec = build_spec(lambda: TenantSpec(id=tenant_id, name=name))
    tenant = run(lambda registry: registry.create_tenant(SYSTEM, spec))
    if as_json:
        echo_json(_tenant_doc(tenant))
    else:
        click.echo(f"Created tenant {tenant.id} ({tenant.name}).")


@tenants.command("list")
@json_option
def tenants_list(as_json: bool) -> None:
    """List the tenants."""
    found = run_read(lambda registry: registry.list_tenants(SYSTEM))
    if as_json:
        echo_json([_tenant_doc(t) for t in found])
        return
    table(("ID", "NAME", "CREATED"), [(t.id, t.name, t.created_at) for t in found])
