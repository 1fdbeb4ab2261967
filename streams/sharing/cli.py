"""``cityhub sharing offers|agreements|show|revoke``: offers and agreements from the command
line, directly on Kafka as an administrator (``Principal.system()``), as ``cityhub activities``
does. For the operator who must see every tenant's agreements, or end one at once (a
revocation reaches every process within seconds); tenants use the API (docs/sharing.md).

Each command starts the stores it needs (the registry, the register, offers, agreements and the
usage topic), does one thing, and stops them. Errors print ``Error: ...`` and exit 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from cityhub.schemas.settings import Settings
from cityhub.schemas.sharing import Agreement, AgreementDecision
from cityhub.streams.privacy.store import RegisterStore
from cityhub.streams.registry.cli.output import echo_json, field_lines, json_option, table
from cityhub.streams.registry.cli.session import SYSTEM, reported_errors
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.sharing.service import ROLES, Sharing
from cityhub.streams.sharing.store import AgreementStore, OfferStore
from cityhub.streams.sharing.usage_publisher import UsageStore

T = TypeVar("T")


def run(operation: Callable[[Sharing], Awaitable[T]]) -> T:
    """Start the stores, run ``operation`` on the service over them, stop them; errors exit 1."""

    async def session() -> T:
        settings = Settings()
        registry = RegistryStore(settings, client_id="cityhub-cli-registry")
        register = RegisterStore(settings, client_id="cityhub-cli-processing")
        offers = OfferStore(settings, client_id="cityhub-cli-offers")
        agreements = AgreementStore(settings, client_id="cityhub-cli-agreements")
        usage = UsageStore(settings, client_id="cityhub-cli-agreement-usage")
        started: list[RegistryStore | RegisterStore | OfferStore | AgreementStore | UsageStore] = []
        try:
            for store in (registry, register, offers, agreements, usage):
                await store.start()
                started.append(store)
            service = Sharing(
                offers, agreements, registry.view, register.view, usage_of=usage.view.of
            )
            return await operation(service)
        finally:
            for store in reversed(started):
                await store.stop()

    with reported_errors():
        return asyncio.run(session())
    raise AssertionError("unreachable")  # pragma: no cover - reported_errors exits


def _doc(sharing: Sharing, agreement: Agreement) -> dict[str, Any]:
    return {**agreement.public(sharing.now()), "usage": sharing.usage(agreement.id).public()}


@click.group("sharing")
def sharing() -> None:
    """Offers and agreements between tenants (docs/sharing.md)."""


@sharing.command("offers")
@click.option("--tenant", default=None, help="Only this tenant's offers (withdrawn ones too).")
@json_option
def offers_list(tenant: str | None, as_json: bool) -> None:
    """List the offers of one tenant, or the listed offers of every tenant."""

    async def read(service: Sharing) -> list[dict[str, Any]]:
        found = (
            service.list_offers(SYSTEM, tenant)
            if tenant is not None
            else service.listed_offers(SYSTEM)
        )
        return [o.public() for o in found]

    docs = run(read)
    if as_json:
        echo_json({"items": docs})
        return
    table(
        ("REF", "KINDS", "CLASSIFICATION", "LICENCE", "LISTED", "WITHDRAWN_AT", "TITLE"),
        [
            (
                d["ref"],
                ",".join(d["kinds"]),
                d["classification"],
                d["licence"],
                "yes" if d["listed"] else "no",
                d["withdrawn_at"] or "",
                d["title"],
            )
            for d in docs
        ],
    )


@sharing.command("agreements")
@click.option("--tenant", default=None, help="Only the agreements this tenant is a party to.")
@click.option("--role", type=click.Choice(ROLES), default=None, help="The tenant's side.")
@json_option
def agreements_list(tenant: str | None, role: str | None, as_json: bool) -> None:
    """List agreements, with their status and uses."""

    async def read(service: Sharing) -> list[dict[str, Any]]:
        if tenant is None:
            found = service.all_agreements(SYSTEM)
        else:
            found = service.list_agreements(SYSTEM, tenant, role)
        return [_doc(service, a) for a in found]

    docs = run(read)
    if as_json:
        echo_json({"items": docs})
        return
    table(
        ("ID", "PROVIDER", "CONSUMER", "OFFER", "STATUS", "ENDS_AT", "DELIVERED", "READ"),
        [
            (
                d["id"],
                d["provider"],
                d["consumer"],
                d["offer"],
                d["status"],
                d["ends_at"],
                str(d["usage"]["delivered"]),
                str(d["usage"]["read"]),
            )
            for d in docs
        ],
    )


@sharing.command("show")
@click.argument("agreement_id")
@json_option
def agreements_show(agreement_id: str, as_json: bool) -> None:
    """Show one agreement with its history and uses."""

    async def read(service: Sharing) -> dict[str, Any]:
        return _doc(service, service.agreement_for_admin(SYSTEM, agreement_id))

    doc = run(read)
    if as_json:
        echo_json(doc)
        return
    field_lines(
        [
            ("id", doc["id"]),
            ("offer", doc["offer"]),
            ("provider", doc["provider"]),
            ("consumer", doc["consumer"]),
            ("purpose", doc["purpose"]),
            ("status", doc["status"]),
            ("starts at", doc["starts_at"] or "(at approval)"),
            ("ends at", doc["ends_at"]),
            ("delivered", str(doc["usage"]["delivered"])),
            ("read", str(doc["usage"]["read"])),
            *(
                (f"{e['state']}", f"{e['at']} by {e['by_tenant']}: {e['reason'] or ''}")
                for e in doc["history"]
            ),
        ]
    )


@sharing.command("revoke")
@click.argument("agreement_id")
@click.option("--by", "party", required=True, help="The party it is revoked for.")
@click.option("--reason", default=None, help="Why; shown to both parties.")
def agreements_revoke(agreement_id: str, party: str, reason: str | None) -> None:
    """End an approved agreement at once, for one of its parties."""

    async def revoke(service: Sharing) -> dict[str, Any]:
        done = await service.revoke(SYSTEM, party, agreement_id, AgreementDecision(reason=reason))
        return _doc(service, done)

    doc = run(revoke)
    click.echo(f"revoked {doc['id']} at {datetime.now(UTC).isoformat(timespec='seconds')}")
