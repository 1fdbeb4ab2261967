"""``cityhub deadletters``: the dead letters from the command line."""

from __future__ import annotations

import math

import click

from cityhub.schemas.errors import InvalidTimestamp, Reason
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.deadletters.replay_plan import ReplayFilter
from cityhub.streams.deadletters.replayer import ReplayReport
from cityhub.streams.registry.cli import session
from cityhub.streams.registry.service import Registry

SHOWN = 50
"""Letters listed one per line; a longer list is cut (the counts cover them all)."""


@click.group()
def deadletters() -> None:
    """The dead letters: uplinks and records cityhub could not handle, with why."""


def _time(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_rfc3339(value).timestamp()
    except InvalidTimestamp as exc:
        raise click.BadParameter(f"{exc.detail} (e.g. 2026-12-04T08:00:00Z)") from None


@deadletters.command("replay")
@click.option(
    "--reason",
    "reasons",
    multiple=True,
    type=click.Choice([r.value for r in Reason]),
    help="Only letters of this reason (repeat for several).",
)
@click.option(
    "--device", "devices", multiple=True, help="Only this device: id or DevEUI (repeatable)."
)
@click.option("--tenant", default=None, help="Only the letters of this tenant's devices.")
@click.option("--since", callback=_time, help="Only letters written at or after (RFC 3339).")
@click.option("--until", callback=_time, help="Only letters written before (RFC 3339).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Replay at most this many.")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; write nothing.")
def replay_cmd(
    reasons: tuple[str, ...],
    devices: tuple[str, ...],
    tenant: str | None,
    since: float | None,
    until: float | None,
    limit: int | None,
    dry_run: bool,
) -> None:
    """Send the normaliser's dead letters through it again, once their cause is fixed (a
    device registered late, a decoder or mapping corrected): each letter's raw record goes back
    to the raw topic, as Kafka still holds it, else rebuilt from the letter.

    Replays produce the same event ids as the first time. Skipped, and said why: letters of
    personal devices, of devices still unknown, of uplinks a letter kept only part of, and all
    but the last letter of one uplink. Try it with --dry-run first."""
    from cityhub.streams.deadletters.replayer import replay

    selection = ReplayFilter(
        reasons=frozenset(reasons),
        devices=frozenset(devices),
        tenant=tenant,
        since=-math.inf if since is None else since,
        until=math.inf if until is None else until,
    )
    if selection.since >= selection.until:
        raise click.BadParameter("--since must be before --until", param_hint="--since")

    async def operation(registry: Registry) -> ReplayReport:
        return await replay(Settings(), registry.view, selection, dry_run=dry_run, limit=limit)

    _print(session.run(operation), dry_run=dry_run)


def _print(report: ReplayReport, *, dry_run: bool) -> None:
    for item in report.replays[:SHOWN]:
        source = "raw record" if item.from_raw else "rebuilt from the letter"
        click.echo(f"letter {item.letter}: partition {item.partition}, {source}")
    if len(report.replays) > SHOWN:
        click.echo(f"... and {len(report.replays) - SHOWN} more")
    verb = "would replay" if dry_run else "replayed"
    count = len(report.replays) if dry_run else report.written
    click.echo(
        f"{verb} {count} letter(s): {report.from_raw} as the raw topic holds them, "
        f"{len(report.replays) - report.from_raw} rebuilt from the letter"
    )
    for why, n in sorted(report.skipped_by_why().items()):
        click.echo(f"skipped {n}: {why}")
