"""``cityhub processing-log --tenant T [--activity A] [--subject S]``: a tenant's processing log
from the command line, directly on Kafka as an administrator (as ``cityhub activities`` does).

The command reads the whole ``processing_log`` topic into an index (bounded like the API's,
``CITYHUB_PRIVACY__PROCESSING_LOG_INDEX_MAX_RECORDS``), answers one query, and stops. Errors
print ``Error: ...`` and exit 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import click

from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import parse_rfc3339, rfc3339
from cityhub.streams.privacy.log_follower import ProcessingLogFollower
from cityhub.streams.privacy.log_index import LogPage
from cityhub.streams.privacy.log_service import SYSTEM, LogQuery, ProcessingLogQueries
from cityhub.streams.privacy.store import RegisterStore
from cityhub.streams.registry.cli.output import echo_json, json_option, more_hint, table
from cityhub.streams.registry.cli.session import build_spec, reported_errors
from cityhub.streams.registry.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from cityhub.streams.registry.store import RegistryStore

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHATTY = {"aiokafka": logging.CRITICAL, "cityhub": logging.WARNING}
"""One command, one outcome: the clients' retries and the stores' progress stay off the
terminal unless the log level is DEBUG."""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    loggers = {logging.getLogger(name): level for name, level in _CHATTY.items()}
    before = {logger: logger.level for logger in loggers}
    for logger, level in loggers.items():
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, level in before.items():
            logger.setLevel(level)


def _ms(text: str | None) -> int | None:
    if text is None:
        return None
    return (parse_rfc3339(text) - _EPOCH) // timedelta(milliseconds=1)


async def _query(
    tenant: str, query: LogQuery, activity: str | None, subject: str | None
) -> LogPage:
    settings = Settings()
    registry = RegistryStore(settings, client_id="cityhub-cli-registry")
    register = RegisterStore(settings, client_id="cityhub-cli-processing")
    follower = ProcessingLogFollower(settings, client_id="cityhub-cli-processing-log")
    await registry.start()
    try:
        await register.start()
        try:
            await follower.start()
            try:
                queries = ProcessingLogQueries(follower.index, registry.view, register.view)
                return queries.for_officer(
                    SYSTEM, tenant, query, activity=activity, subject=subject
                )
            finally:
                await follower.stop()
        finally:
            await register.stop()
    finally:
        await registry.stop()


@click.command("processing-log")
@click.option("--tenant", required=True, help="The tenant whose log to read.")
@click.option("--activity", default=None, help="Only this activity (its slug or URI).")
@click.option("--subject", default=None, help="Only this data subject (the tenant's pseudonym).")
@click.option("--from", "since", default=None, help="Only actions started at or after (RFC 3339).")
@click.option("--to", "until", default=None, help="Only actions started before (RFC 3339).")
@click.option(
    "--limit", type=click.IntRange(1, MAX_PAGE_SIZE), default=DEFAULT_PAGE_SIZE, show_default=True
)
@click.option("--cursor", default=None, help="Continue after the previous page.")
@json_option
def processing_log(
    tenant: str,
    activity: str | None,
    subject: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """A tenant's processing log (Logboek Dataverwerkingen records), newest first: who
    received or read which data subject's personal data, under which activity, when."""
    query = LogQuery(
        since=build_spec(lambda: _ms(since)),
        until=build_spec(lambda: _ms(until)),
        limit=limit,
        cursor=cursor,
    )
    with reported_errors(), _quiet():
        page = asyncio.run(_query(tenant, query, activity, subject))
    held_from = None if page.held_from is None else rfc3339(page.held_from / 1000)
    if as_json:
        echo_json(
            {
                "items": [r.model_dump(mode="json") for r in page.records],
                "next_cursor": page.next_cursor,
                "complete": page.complete,
                "held_from": held_from,
            }
        )
        return
    table(
        ("START", "ACTION", "ACTIVITY", "SUBJECT", "RECIPIENT", "ITEMS", "STATUS", "TRACE"),
        [
            (
                rfc3339(r.start_time / 1000),
                r.action,
                r.activity_id,
                r.subject or "",
                r.recipient or "",
                str(r.items),
                r.status_code.value.removeprefix("STATUS_CODE_"),
                r.trace_id,
            )
            for r in page.records
        ],
    )
    if not page.complete:
        click.echo(
            f"(incomplete: the index holds only records that started after {held_from}; "
            "raise CITYHUB_PRIVACY__PROCESSING_LOG_INDEX_MAX_RECORDS or narrow --from)",
            err=True,
        )
    more_hint(page.next_cursor)
