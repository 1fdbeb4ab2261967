"""``cityhub devices import``: a CSV or JSON file of devices, each bad row reported with why."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from cityhub.streams.registry.cli.output import echo_json, json_option
from cityhub.streams.registry.cli.session import SYSTEM, reported_errors, run
from cityhub.streams.registry.devices import ImportReport
from cityhub.streams.registry.importer import content_type_for, read_import


@click.command("import")
@click.option("--tenant", required=True)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--default-type",
    default=None,
    help="Device type of rows without one (The Things Stack's exports have no 'type' column).",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv", "json"]),
    default=None,
    help="Defaults to the file's extension: .json is JSON, anything else CSV.",
)
@click.option(
    "--tts-tenant",
    default=None,
    help=(
        "The Things Stack tenant (the @tenant of its topics) that TTS JSON end devices are "
        "bound to with their application; leave out for a single-tenant TTS."
    ),
)
@json_option
def devices_import(
    tenant: str,
    file: Path,
    default_type: str | None,
    file_format: str | None,
    tts_tenant: str | None,
    as_json: bool,
) -> None:
    """Create or update the devices of a CSV or JSON FILE; report each bad row and why.

    CSV: The Things Stack's device import columns (id, dev_eui, join_eui, name, app_key, ...;
    ';' or ',' separated) plus type, area, tags, latitude, longitude, altitude, active and
    network (tts:<application>[@<tenant>] or chirpstack:<application UUID>). JSON: an array of
    device objects, or of The Things Stack's end devices (`ttn-lw-cli end-devices list`), each
    bound to its application. Exits 1 if any row failed; the good rows are imported.
    """
    content_type = {"csv": "text/csv", "json": "application/json"}.get(
        file_format or "", content_type_for(file.name)
    )
    with reported_errors():
        parsed = read_import(
            file.read_bytes(), content_type, default_type=default_type, tts_tenant=tts_tenant
        )
    if parsed.ignored_columns:
        click.echo(f"Note: ignored unknown columns: {', '.join(parsed.ignored_columns)}", err=True)
    report = run(lambda registry: registry.import_devices(SYSTEM, tenant, parsed.rows))
    rows = _report_rows(report, parsed.lines, parsed.ids)
    if as_json:
        echo_json(
            {
                "created": report.created,
                "updated": report.updated,
                "failed": report.failed,
                "rows": rows,
            }
        )
    else:
        click.echo(
            f"Imported {file.name} into tenant {tenant}: {report.created} created, "
            f"{report.updated} updated, {report.failed} failed."
        )
        unit = "item" if content_type == "application/json" else "line"
        for row in rows:
            if row["status"] != "error":
                continue
            where = f"row {row['row']} ({unit} {row['line']}, id {row['id'] or '?'})"
            click.echo(
                f"{where}: " + "; ".join(f"{e['field']}: {e['message']}" for e in row["errors"])
            )
    if report.failed:
        sys.exit(1)


def _report_rows(
    report: ImportReport, lines: Sequence[int], ids: Sequence[str | None]
) -> list[dict[str, Any]]:
    """The report's rows with the file line and the id each came from."""
    out = []
    for result in report.rows:
        index = result.row - 1
        in_file = 0 <= index < len(lines)
        out.append(
            {
                "row": result.row,
                "line": lines[index] if in_file else None,
                "id": result.id or (ids[index] if in_file else None),
                "status": result.status,
                "errors": [{"field": e.field, "message": e.message} for e in result.errors],
            }
        )
    return out
