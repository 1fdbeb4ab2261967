"""``cityhub resident-tokens issue|list|revoke``: residents' access tokens from the command line,
directly on Kafka as the platform's administrator (``Principal.system()``), as ``cityhub
consents`` does.

``issue`` prints the secret once (with ``--json`` in the ``secret`` field): hand it to the
resident and do not keep it; cityhub keeps only its fingerprint. Errors print ``Error: ...`` with
the fields at fault and exit 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from cityhub.schemas.settings import Settings
from cityhub.streams.privacy.resident_token_service import ResidentTokens, TokenSpec
from cityhub.streams.privacy.resident_tokens import ResidentToken, ResidentTokenStore
from cityhub.streams.registry.cli.output import echo_json, field_lines, json_option, table
from cityhub.streams.registry.cli.session import SYSTEM, build_spec, reported_errors
from cityhub.streams.registry.store import RegistryStore

T = TypeVar("T")


def run(operation: Callable[[ResidentTokens], Awaitable[T]]) -> T:
    """Start the registry's and the tokens' stores, run ``operation``, stop them; errors exit 1."""

    async def session() -> T:
        settings = Settings()
        registry = RegistryStore(settings, client_id="cityhub-cli-registry")
        tokens = ResidentTokenStore(settings, client_id="cityhub-cli-resident-tokens")
        await registry.start()
        try:
            await tokens.start()
            try:
                return await operation(ResidentTokens(tokens, registry.view))
            finally:
                await tokens.stop()
        finally:
            await registry.stop()

    with reported_errors():
        return asyncio.run(session())
    raise AssertionError("unreachable")  # pragma: no cover - reported_errors exits


@click.group("resident-tokens")
def resident_tokens() -> None:
    """Residents' access tokens: each opens one data subject's own data (/api/v1/me)."""


def _fields(token: ResidentToken) -> list[tuple[str, str]]:
    return [
        ("id", token.id),
        ("tenant", token.tenant),
        ("name", token.name),
        ("created at", token.created_at),
        ("created by", token.created_by),
        ("expires at", token.expires_at or "(until revoked)"),
        ("revoked at", token.revoked_at or ""),
    ]


@resident_tokens.command("issue")
@click.option("--tenant", required=True)
@click.argument("subject")
@click.option("--name", default="", help="A label for your own bookkeeping.")
@click.option(
    "--valid-days", type=click.IntRange(1, 3660), default=None, help="Default: until revoked."
)
@json_option
def issue(tenant: str, subject: str, name: str, valid_days: int | None, as_json: bool) -> None:
    """Issue a token for data subject SUBJECT (linked to a device of the tenant); the secret is
    printed this once."""
    spec = build_spec(lambda: TokenSpec(name=name, valid_days=valid_days))

    async def write(tokens: ResidentTokens) -> tuple[ResidentToken, str]:
        return await tokens.issue(SYSTEM, tenant, subject, spec)

    token, secret = run(write)
    if as_json:
        echo_json({**token.public(), "secret": secret})
        return
    field_lines([*_fields(token), ("secret", secret)])
    click.echo("Hand the secret to the resident; it is not shown again.", err=True)


@resident_tokens.command("list")
@click.option("--tenant", required=True)
@click.argument("subject")
@json_option
def list_tokens(tenant: str, subject: str, as_json: bool) -> None:
    """List SUBJECT's tokens, revoked and expired ones too (never a secret)."""

    async def read(tokens: ResidentTokens) -> list[ResidentToken]:
        return tokens.list(SYSTEM, tenant, subject)

    found = run(read)
    if as_json:
        echo_json({"items": [t.public() for t in found]})
        return
    table(
        ("ID", "NAME", "CREATED_AT", "EXPIRES_AT", "REVOKED_AT"),
        [(t.id, t.name, t.created_at, t.expires_at or "", t.revoked_at or "") for t in found],
    )


@resident_tokens.command("revoke")
@click.option("--tenant", required=True)
@click.argument("subject")
@click.argument("token_id")
@json_option
def revoke(tenant: str, subject: str, token_id: str, as_json: bool) -> None:
    """Revoke token TOKEN_ID of SUBJECT: it opens nothing from the next request on."""

    async def write(tokens: ResidentTokens) -> ResidentToken:
        return await tokens.revoke(SYSTEM, tenant, subject, token_id)

    token = run(write)
    if as_json:
        echo_json(token.public())
        return
    field_lines(_fields(token))


__all__ = ["resident_tokens"]
