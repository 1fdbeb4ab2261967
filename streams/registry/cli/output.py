"""How registry commands print: a table for people, or JSON with ``--json``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
import orjson

from cityhub.schemas.expected_interval import parse_expected_interval
from cityhub.schemas.plain_text import escaped

F = TypeVar("F", bound=Callable[..., Any])


def json_option(command: F) -> F:
    """The ``--json`` flag: machine-readable output instead of a table."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        command
    )


_DEVICE_FILTERS = (
    click.option("--tenant", required=True),
    click.option("--type", "type_id", default=None, help="Only devices of this type."),
    click.option("--area", default=None, help="Only devices in this area."),
    click.option("--tag", default=None, help="Only devices with this tag."),
    click.option("--active/--inactive", default=None, help="Only active (or inactive) devices."),
)


def device_filters(command: F) -> F:
    """``--tenant`` and the filters of a device listing (``devices list``, ``devices export``):
    ``type_id``, ``area``, ``tag``, ``active``."""
    for option in reversed(_DEVICE_FILTERS):
        command = option(command)
    return command


def echo_json(doc: Any) -> None:
    """Print ``doc`` as indented JSON."""
    click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


def printable(text: str) -> str:
    """``text`` safe for a terminal: each character that is not printable (controls, where
    terminal escapes start; separators; invisible format characters such as bidi overrides,
    zero widths and tag characters; spaces other than the plain one) as its ``\\uXXXX``
    escape. What tenants wrote (names, notes, reasons) reaches an administrator's terminal
    through these commands: an escape sequence there could clear the screen, retitle the window
    or hide a link (a review stored some through the API)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else escaped(c) for c in text)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` under ``headers`` in aligned columns, or ``(none)``; every cell
    ``printable``."""
    if not rows:
        click.echo("(none)")
        return
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in (headers, *rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def field_lines(pairs: Sequence[tuple[str, str]]) -> None:
    """Print one record as ``name: value`` lines, the values aligned and ``printable``."""
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        click.echo(f"{key + ':':<{width + 1}} {printable(value)}")


def more_hint(next_cursor: str | None) -> None:
    """Tell on stderr how to get the next page, if there is one."""
    if next_cursor is not None:
        click.echo(f"(more: repeat with --cursor {next_cursor})", err=True)


class IntervalParam(click.ParamType):
    """``--expected-interval``: whole seconds, or with a unit (``900``, ``15m``, ``1h``, ``1d``);
    the bounds are checked with the spec."""

    name = "SECONDS|15m|1h|1d"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            seconds = parse_expected_interval(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if seconds is None:
            self.fail("give a number of seconds (or use --no-expected-interval)", param, ctx)
        return seconds


def interval_text(seconds: int | None) -> str:
    """An interval as ``get`` shows it: ``900 s`` or ``-`` (the type's or the default)."""
    return "-" if seconds is None else f"{seconds} s"
