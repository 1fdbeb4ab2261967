"""``cityhub keys``: API keys; a key's secret is printed once, when it is created."""

from __future__ import annotations

import click

from cityhub.schemas.registry import ApiKey, Role
from cityhub.streams.registry.cli.output import echo_json, json_option, table
from cityhub.streams.registry.cli.session import SYSTEM, run, run_read


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
        echo_json({**key.public(), "secret": secret})
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
    found = run_read(lambda registry: registry.list_keys(SYSTEM, tenant))
    if as_json:
        echo_json([k.public() for k in found])
        return
    table(("ID", "TENANT", "ROLE", "NAME", "CREATED", "REVOKED"), [_key_row(k) for k in found])


@keys.command("revoke")
@click.argument("key_id")
@json_option
def keys_revoke(key_id: str, as_json: bool) -> None:
    """Revoke API key KEY_ID: it authenticates nobody from now on."""
    key = run(lambda registry: registry.revoke_key(SYSTEM, key_id))
    if as_json:
        echo_json(key.public())
    else:
        click.echo(f"Revoked API key {key.id} (tenant {key.tenant}) at {key.revoked_at}.")
