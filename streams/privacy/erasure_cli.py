"""``cityhub data-subjects erase --tenant T SUBJECT``: erase a data subject from the command
line, directly on Kafka as the platform's administrator (``Principal.system()``), as ``cityhub
activities`` and ``cityhub consents`` do.

The command starts the stores an erasure touches (registry, register, consents, subject keys),
a producer for the processing log, erases (``cityhub.streams.privacy.erasure``: keys shredded
first, then consents withdrawn, devices unlinked, the erasure logged) and stops them. It asks
for confirmation unless ``--yes`` is given: an erasure cannot be undone. Errors print
``Error: ...`` and exit 1. The output never repeats the subject's id.
"""

from __future__ import annotations

import asyncio

import click

from cityhub.connectors.kafka import create_producer
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.privacy.consent_service import Consents
from cityhub.streams.privacy.consent_store import ConsentStore
from cityhub.streams.privacy.erasure import Erasure, ErasureReport, history_rows
from cityhub.streams.privacy.keys_store import SubjectKeyStore
from cityhub.streams.privacy.log_writer import ProcessingLogWriter
from cityhub.streams.privacy.resident_token_service import ResidentTokens
from cityhub.streams.privacy.resident_tokens import ResidentTokenStore
from cityhub.streams.privacy.store import RegisterStore
from cityhub.streams.registry.cli.output import echo_json, field_lines, json_option
from cityhub.streams.registry.cli.session import SYSTEM, reported_errors
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.topic_admin import ensure_topics


async def _erase(settings: Settings, tenant: str, subject: str) -> ErasureReport:
    topics = Topics.for_prefix(settings.kafka.topic_prefix)
    registry = RegistryStore(settings, client_id="cityhub-cli-registry")
    register = RegisterStore(settings, client_id="cityhub-cli-processing")
    consents = ConsentStore(settings, client_id="cityhub-cli-consents")
    keys = SubjectKeyStore(settings, client_id="cityhub-cli-subject-keys")
    tokens = ResidentTokenStore(settings, client_id="cityhub-cli-resident-tokens")
    producer = create_producer(settings.kafka, client_id="cityhub-cli-processing-log")
    stores = (registry, register, consents, keys, tokens)
    started: list[
        RegistryStore | RegisterStore | ConsentStore | SubjectKeyStore | ResidentTokenStore
    ] = []
    producing = False
    try:
        for store in stores:
            await store.start()
            started.append(store)
        # Made with its long retention before anything is written to it.
        await ensure_topics(settings, only={topics.processing_log})
        await producer.start()
        producing = True
        erasure = Erasure(
            Registry(registry, subject_keys=keys),
            keys,
            consents=Consents(consents, register.view, registry.view),
            log_writer=ProcessingLogWriter(producer, topics.processing_log),
            tokens=ResidentTokens(tokens, registry.view),
            history=history_rows(settings),
            register_base_uri=settings.privacy.register_base_uri,
        )
        return await erasure.erase(SYSTEM, tenant, subject)
    finally:
        if producing:
            await producer.stop()
        for store in reversed(started):
            await store.stop()


@click.group("data-subjects")
def data_subjects() -> None:
    """Data subjects (the pseudonymous ids linked to personal devices): erasure."""


@data_subjects.command("erase")
@click.option("--tenant", required=True)
@click.argument("subject")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def data_subjects_erase(tenant: str, subject: str, yes: bool, as_json: bool) -> None:
    """Erase data subject SUBJECT of the tenant: shred their keys (their sealed values can never
    be read again, anywhere), withdraw their consents, unlink their devices, and log it."""
    if not yes:
        click.confirm(
            f"Erase this data subject of tenant {tenant}? Their personal values become unreadable "
            "for good",
            abort=True,
        )
    with reported_errors():
        report = asyncio.run(_erase(Settings(), tenant, subject))
    if as_json:
        echo_json(report.public())
        return
    if report.nothing_left:
        click.echo(f"Nothing left to erase of this data subject in tenant {tenant}.")
        return
    field_lines(
        [
            ("tenant", report.tenant),
            ("keys shredded", str(report.keys_shredded)),
            ("consents withdrawn", str(report.consents_withdrawn)),
            ("devices unlinked", ", ".join(report.devices_unlinked) or "none"),
            ("history rows deleted", str(report.history_rows_deleted)),
            ("erased at", report.erased_at),
            ("logged", "yes" if report.logged else "no"),
        ]
    )
