"""``cityhub activities list|show|create|update|end``: the register of processing activities
from the command line, directly on Kafka as an administrator (``Principal.system()``), as
``cityhub devices`` does (``streams/registry/cli/``).

Each command starts the registry's store (to know the tenants) and the register's, does one
thing, and stops them. Errors print ``Error: ...`` with the fields at fault and exit 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from cityhub.schemas.processing import (
    ActivityEnd,
    ActivitySpec,
    ActivityUpdate,
    ProcessingActivity,
    parse_legal_basis,
)
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.privacy.service import ProcessingRegister
from cityhub.streams.privacy.store import RegisterStore
from cityhub.streams.registry.cli.output import (
    echo_json,
    field_lines,
    json_option,
    more_hint,
    table,
)
from cityhub.streams.registry.cli.session import (
    SYSTEM,
    build_spec,
    fail,
    reported_errors,
)
from cityhub.streams.registry.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from cityhub.streams.registry.store import RegistryStore

T = TypeVar("T")


def run(operation: Callable[[ProcessingRegister], Awaitable[T]]) -> T:
    """Start the registry's and the register's stores, run ``operation``, stop them; errors
    exit 1."""

    async def session() -> T:
        settings = Settings()
        registry = RegistryStore(settings, client_id="cityhub-cli-registry")
        register = RegisterStore(settings, client_id="cityhub-cli-processing")
        await registry.start()
        try:
            await register.start()
            try:
                service = ProcessingRegister(
                    register, registry.view, base_uri=settings.privacy.register_base_uri
                )
                return await operation(service)
            finally:
                await register.stop()
        finally:
            await registry.stop()

    with reported_errors():
        return asyncio.run(session())
    raise AssertionError("unreachable")  # pragma: no cover - reported_errors exits


@click.group("activities")
def activities() -> None:
    """The public register of processing activities (verwerkingsregister)."""


def _show(activity: ProcessingActivity, as_json: bool) -> None:
    if as_json:
        echo_json(activity.public())
        return
    current = activity.current
    field_lines(
        [
            ("id", activity.id),
            ("version", str(current.version)),
            ("name", current.name),
            ("purpose", current.purpose),
            ("purpose iri", current.purpose_iri or ""),
            ("legal basis", f"{current.legal_basis.value} ({current.legal_basis.iri})"),
            ("personal data", ", ".join(current.personal_data_categories)),
            ("retention", current.retention),
            ("controller", current.controller),
            ("recipients", ", ".join(current.recipients)),
            ("valid from", current.valid_from),
            ("valid to", current.valid_to or ""),
            ("recorded at", current.recorded_at),
            ("earlier versions", str(len(activity.versions) - 1)),
        ]
    )


@activities.command("list")
@click.option("--tenant", default=None, help="Only this tenant's activities.")
@click.option("--legal-basis", default=None, help="Only this legal basis (e.g. Consent).")
@click.option("--valid-at", default=None, help="Only activities valid at this RFC 3339 time.")
@click.option(
    "--limit", type=click.IntRange(1, MAX_PAGE_SIZE), default=DEFAULT_PAGE_SIZE, show_default=True
)
@click.option("--cursor", default=None, help="Continue after the previous page.")
@json_option
def activities_list(
    tenant: str | None,
    legal_basis: str | None,
    valid_at: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List the register's activities, of every tenant or one."""
    basis = build_spec(lambda: None if legal_basis is None else parse_legal_basis(legal_basis))
    when = build_spec(lambda: None if valid_at is None else parse_rfc3339(valid_at))

    async def read(register: ProcessingRegister) -> Any:
        return register.list(
            tenant=tenant, legal_basis=basis, valid_at=when, limit=limit, cursor=cursor
        )

    page = run(read)
    if as_json:
        echo_json(
            {
                "items": [a.public(history=False) for a in page.items],
                "next_cursor": page.next_cursor,
            }
        )
        return
    table(
        ("TENANT", "SLUG", "VERSION", "LEGAL_BASIS", "VALID_FROM", "VALID_TO", "NAME"),
        [
            (
                a.tenant,
                a.slug,
                str(a.current.version),
                a.current.legal_basis.value,
                a.current.valid_from,
                a.current.valid_to or "",
                a.current.name,
            )
            for a in page.items
        ],
    )
    more_hint(page.next_cursor)


@activities.command("show")
@click.argument("tenant")
@click.argument("slug")
@json_option
def activities_show(tenant: str, slug: str, as_json: bool) -> None:
    """Show one activity (with --json: every earlier version too)."""

    async def read(register: ProcessingRegister) -> ProcessingActivity:
        return register.get(tenant, slug)

    _show(run(read), as_json)


def _statement_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--name", default=None),
        click.option("--purpose", default=None, help="The purpose, in plain words."),
        click.option("--purpose-iri", default=None, help="The purpose as a DPV IRI."),
        click.option(
            "--legal-basis",
            default=None,
            help="Consent, Contract, LegalObligation, VitalInterest, PublicTask or "
            "LegitimateInterest (or its DPV IRI).",
        ),
        click.option(
            "--category", "categories", multiple=True, help="Personal data category (repeat)."
        ),
        click.option("--retention", default=None, help="ISO 8601 duration, e.g. P30D."),
        click.option("--controller", default=None),
        click.option("--recipient", "recipients", multiple=True, help="A recipient (repeat)."),
        click.option("--valid-from", default=None, help="RFC 3339; default: now."),
        click.option("--valid-to", default=None, help="RFC 3339; default: until ended."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _given(fields: dict[str, Any]) -> dict[str, Any]:
    """The statement options that were given (an empty repeated option is not given)."""
    doc = {k: v for k, v in fields.items() if v is not None and v != ()}
    for key in ("categories", "recipients"):
        if key in doc:
            doc["personal_data_categories" if key == "categories" else key] = list(doc.pop(key))
    return doc


@activities.command("create")
@click.option("--tenant", required=True)
@click.argument("slug")
@_statement_options
@json_option
def activities_create(tenant: str, slug: str, as_json: bool, **fields: Any) -> None:
    """Record activity SLUG in a tenant (version 1)."""
    spec = build_spec(lambda: ActivitySpec.model_validate({"slug": slug, **_given(fields)}))
    created = run(lambda register: register.create(SYSTEM, tenant, spec))
    if as_json:
        echo_json(created.public())
    else:
        click.echo(f"Recorded {created.id} (version 1).")


@activities.command("update")
@click.option("--tenant", required=True)
@click.argument("slug")
@_statement_options
@click.option(
    "--base-version", type=int, default=None, help="Refuse if the current version is another."
)
@json_option
def activities_update(
    tenant: str, slug: str, base_version: int | None, as_json: bool, **fields: Any
) -> None:
    """Record a new version of activity SLUG: the options given replace the current
    version's values, the others are kept."""
    changes = _given(fields)
    if not changes:
        fail("give at least one option to change")

    async def update(register: ProcessingRegister) -> ProcessingActivity:
        current = register.get(tenant, slug).current
        doc = current.model_dump(
            mode="json", exclude={"version", "recorded_at", "valid_to", "valid_from"}
        )
        doc["valid_from"] = current.valid_from
        doc["valid_to"] = current.valid_to
        doc.update(changes)
        doc["base_version"] = base_version if base_version is not None else current.version
        return await register.update(SYSTEM, tenant, slug, ActivityUpdate.model_validate(doc))

    updated = run(update)
    if as_json:
        echo_json(updated.public())
    else:
        click.echo(f"Recorded {updated.id} version {updated.current.version}.")


@activities.command("end")
@click.option("--tenant", required=True)
@click.argument("slug")
@click.option("--valid-to", default=None, help="RFC 3339; default: now.")
@click.option("--base-version", type=int, default=None)
@json_option
def activities_end(
    tenant: str, slug: str, valid_to: str | None, base_version: int | None, as_json: bool
) -> None:
    """End activity SLUG (a new version with its valid_to); nothing is deleted."""
    spec = build_spec(
        lambda: ActivityEnd.model_validate({"valid_to": valid_to, "base_version": base_version})
    )
    ended = run(lambda register: register.end(SYSTEM, tenant, slug, spec))
    if as_json:
        echo_json(ended.public())
    else:
        click.echo(f"Ended {ended.id} at {ended.current.valid_to}.")
