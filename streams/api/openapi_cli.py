"""``cityhub openapi``: the OpenAPI document the API serves, written without starting anything.

It is the document ``GET /api/v1/openapi.json`` answers for the same settings and body caps
(``build_api`` builds it with the same ``build_openapi`` call; a test compares the two), so that
``make lint`` can lint what clients read without a running hub.
"""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from cityhub.schemas.settings import Settings
from cityhub.streams.api.openapi import build_openapi

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""``build_api``'s and ``cityhub api``'s default cap of a JSON body."""


def served_document(
    settings: Settings, *, max_body_bytes: int, max_import_bytes: int | None
) -> bytes:
    """The document as JSON, as an API process with ``settings`` and these caps serves it."""
    document = build_openapi(
        max_body_bytes=max_body_bytes,
        max_import_bytes=max_import_bytes or settings.quotas.import_max_bytes,
        contact=settings.http.contact,
    )
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


@click.command("openapi")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the document to this file (its folder is made); default: standard output.",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1024),
    default=DEFAULT_MAX_BODY_BYTES,
    show_default=True,
    help="As given to `cityhub api` (the document states the caps).",
)
@click.option(
    "--max-import-bytes",
    type=click.IntRange(min=1024),
    default=None,
    help="As given to `cityhub api`; default: CITYHUB_QUOTAS__IMPORT_MAX_BYTES.",
)
def openapi_cmd(output: Path | None, max_body_bytes: int, max_import_bytes: int | None) -> None:
    """Write the API's OpenAPI document (GET /api/v1/openapi.json) for these settings, without
    starting the API: `make lint` lints it against the NL API Design Rules."""
    document = served_document(
        Settings(), max_body_bytes=max_body_bytes, max_import_bytes=max_import_bytes
    )
    if output is None:
        click.echo(document.decode(), nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(document)
