"""``cityhub consents give|withdraw|list|verify``: consent records from the command line,
directly on Kafka as the platform's administrator (``Principal.system()``), as ``cityhub
activities`` does (``streams/privacy/cli.py``).

``give`` and ``withdraw`` act on a resident's documented behalf, so ``--evidence`` is required,
and are recorded with the acting key ``system``. ``verify`` reads the whole consents topic (every
record still on it, before compaction) and reports each record the view had to ignore (a broken
chain, a history cut back or rewritten, a tombstone, a record under another key); it exits 1 if
there is one. Errors print ``Error: ...`` with the fields at fault and exit 1.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import IO, TypeVar

import click

from cityhub.schemas.consent import ConsentEvent, ConsentRecord, Notice, verify
from cityhub.schemas.settings import Settings
from cityhub.streams.privacy.consent_service import Consents
from cityhub.streams.privacy.consent_store import ConsentStore
from cityhub.streams.privacy.store import RegisterStore
from cityhub.streams.registry.cli.output import echo_json, field_lines, json_option, table
from cityhub.streams.registry.cli.session import SYSTEM, build_spec, fail, reported_errors
from cityhub.streams.registry.store import RegistryStore

T = TypeVar("T")


def run(operation: Callable[[Consents], Awaitable[T]]) -> T:
    """Start the registry's, the register's and the consents' stores, run ``operation``, stop
    them; errors exit 1."""

    async def session() -> T:
        settings = Settings()
        stores = (
            RegistryStore(settings, client_id="cityhub-cli-registry"),
            RegisterStore(settings, client_id="cityhub-cli-processing"),
            ConsentStore(settings, client_id="cityhub-cli-consents"),
        )
        registry, register, consents = stores
        started = []
        try:
            for store in stores:
                await store.start()
                started.append(store)
            return await operation(Consents(consents, register.view, registry.view))
        finally:
            for store in reversed(started):
                await store.stop()

    with reported_errors():
        return asyncio.run(session())
    raise AssertionError("unreachable")  # pragma: no cover - reported_errors exits


@click.group("consents")
def consents() -> None:
    """Residents' consent records (ISO/IEC TS 27560, hash-chained)."""


def _show(record: ConsentRecord, as_json: bool) -> None:
    check = verify(record)
    if as_json:
        echo_json({**record.public(), "verified": check.public()})
        return
    consented = record.consented
    field_lines(
        [
            ("id", record.id),
            ("activity", f"{record.processing_activity.slug} ({record.processing_activity.id})"),
            ("status", f"{record.status.value} ({'active' if record.active else 'not active'})"),
            ("version consented", str(consented.activity_version) if consented else ""),
            ("changes", str(len(record.history))),
            ("head", record.head),
            ("chain", "verifies" if check.ok else f"BROKEN at {check.broken_at}: {check.reason}"),
        ]
    )
    table(
        ("SEQ", "STATUS", "AT", "BY", "EVIDENCE_OR_REASON"),
        [
            (
                str(e.seq),
                e.status.value,
                e.indicated_at,
                _by(e),
                e.evidence or e.reason or "",
            )
            for e in record.history
        ],
    )


def _by(event: ConsentEvent) -> str:
    who = event.acting_key_id or event.resident_credential
    return event.collection_method.value + (f" ({who})" if who else "")


def _notice(
    uri: str | None, sha256: str | None, version: str | None, language: str | None
) -> Notice | None:
    if uri is None and sha256 is None and version is None and language is None:
        return None
    return build_spec(
        lambda: Notice.model_validate(
            {"uri": uri, "sha256": sha256, "version": version, "language": language}
        )
    )


@consents.command("give")
@click.option("--tenant", required=True)
@click.argument("subject")
@click.argument("activity")
@click.option(
    "--evidence",
    required=True,
    help="A reference to the resident's documented decision (a signed form's number).",
)
@click.option("--notice-uri", default=None, help="Where the notice shown is published.")
@click.option("--notice-sha256", default=None, help="SHA-256 (hex) of the notice's text.")
@click.option(
    "--notice-file",
    type=click.File("rb"),
    default=None,
    help="The notice's text as shown: its SHA-256 is recorded.",
)
@click.option("--notice-version", default=None)
@click.option("--notice-language", default=None, help="BCP 47, e.g. nl or en-GB.")
@json_option
def consents_give(
    tenant: str,
    subject: str,
    activity: str,
    evidence: str,
    notice_uri: str | None,
    notice_sha256: str | None,
    notice_file: IO[bytes] | None,
    notice_version: str | None,
    notice_language: str | None,
    as_json: bool,
) -> None:
    """Record SUBJECT's consent to ACTIVITY on their documented behalf. Without a notice, the
    notice is the activity's public entry in the register at its current version."""
    if notice_file is not None:
        if notice_sha256 is not None:
            fail("give --notice-sha256 or --notice-file, not both")
        notice_sha256 = hashlib.sha256(notice_file.read()).hexdigest()
    notice = _notice(notice_uri, notice_sha256, notice_version, notice_language)
    record = run(
        lambda service: service.give(
            SYSTEM, tenant, subject, activity, evidence=evidence, notice=notice
        )
    )
    _show(record, as_json)


@consents.command("withdraw")
@click.option("--tenant", required=True)
@click.argument("subject")
@click.argument("activity")
@click.option("--evidence", required=True, help="A reference to the resident's decision.")
@click.option("--reason", default=None, help="Why, in a few words (optional).")
@json_option
def consents_withdraw(
    tenant: str, subject: str, activity: str, evidence: str, reason: str | None, as_json: bool
) -> None:
    """Record the withdrawal of SUBJECT's consent to ACTIVITY on their documented behalf."""
    record = run(
        lambda service: service.withdraw(
            SYSTEM, tenant, subject, activity, evidence=evidence, reason=reason
        )
    )
    _show(record, as_json)


@consents.command("list")
@click.option("--tenant", required=True)
@click.argument("subject")
@json_option
def consents_list(tenant: str, subject: str, as_json: bool) -> None:
    """List SUBJECT's consent records in a tenant."""

    async def read(service: Consents) -> list[ConsentRecord]:
        return service.of_subject(SYSTEM, tenant, subject)

    records = run(read)
    if as_json:
        echo_json({"items": [{**r.public(), "verified": verify(r).public()} for r in records]})
        return
    table(
        ("ACTIVITY", "STATUS", "SINCE", "VERSION", "CHANGES", "CHAIN"),
        [
            (
                r.processing_activity.slug,
                r.status.value,
                r.last.indicated_at,
                str(r.consented.activity_version) if r.consented else "",
                str(len(r.history)),
                "verifies" if verify(r).ok else "BROKEN",
            )
            for r in records
        ],
    )


@consents.command("verify")
@click.option("--tenant", default=None, help="Only records of this tenant.")
@click.option("--subject", default=None, help="Only records of this data subject.")
@json_option
def consents_verify(tenant: str | None, subject: str | None, as_json: bool) -> None:
    """Read every record on the consents topic and report those that cannot be trusted; exit 1
    if there is one."""

    def matches(key: str) -> bool:
        parts = key.split("/")
        return (tenant is None or parts[1:2] == [tenant]) and (
            subject is None or parts[2:3] == [subject]
        )

    async def audit(service: Consents) -> tuple[int, int, list[dict[str, object]]]:
        view = service.view
        held = [
            r
            for r in view.all_records()
            if (tenant is None or r.tenant == tenant)
            and (subject is None or r.data_subject == subject)
        ]
        broken = [r for r in held if not verify(r).ok]  # never: the view took only good ones
        found = [asdict(x) for x in view.recent_rejections() if matches(x.key)]
        found += [{"key": r.id, "reason": "chain", "detail": verify(r).reason} for r in broken]
        return len(held), sum(r.active for r in held), found

    held, active, rejected = run(audit)
    if as_json:
        echo_json({"records": held, "active": active, "rejected": rejected})
    else:
        click.echo(f"{held} record(s) verify, {active} active; {len(rejected)} ignored.")
        if rejected:
            table(
                ("OFFSET", "REASON", "KEY", "DETAIL"),
                [
                    (str(x.get("offset", "")), str(x["reason"]), str(x["key"]), str(x["detail"]))
                    for x in rejected
                ],
            )
    if rejected:
        fail(
            f"{len(rejected)} record(s) on the consents topic cannot be trusted "
            f"({', '.join(sorted({str(x['reason']) for x in rejected}))}); the view ignored them"
        )
