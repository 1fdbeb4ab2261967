"""Log records rendered safely, as text or JSON lines, for every logger of a cityhub process.

Log messages carry strings from outside: MQTT topics, device ids, HTTP request lines, exception
texts that quote them. Rendered raw, a newline in one forges a second log record, a carriage
return or an ANSI escape sequence (``ESC [ ...``) rewrites what an operator's terminal shows,
a U+2028 splits a line for some viewers, and a 10 MB topic fills the disk. So every record goes
through :class:`SafeFormatter`, which promises:

- **One record, one line** (its message): every character that is not printable (control
  characters, newline, tab, DEL, C1 controls, U+2028/U+2029, bidirectional overrides and other
  format characters, lone surrogates) is written as a Python-style escape (``\\n``, ``\\x1b``,
  ``\\u2028``). Printable text of any script stays as it is.
- **Bounded**: each ``%`` argument is cut to ``MAX_ARG_CHARS`` characters before it is merged
  into the message, and the escaped message to ``MAX_MESSAGE_CHARS``; a cut says how much was
  left out (``…[+1234 chars]``).
- **Exceptions kept readable, not forgeable**: a traceback's frame lines (cityhub's and its
  libraries' code) stay one per line; every other line of it, above all the exception's own
  message, is escaped onto one line and bounded like a message.

Two formats (setting ``log_format``, ``CITYHUB_LOG_FORMAT``):

- ``text`` (default): ``2026-12-03 10:36:15,123 INFO cityhub.delivery: message``, the
  traceback (if any) on the lines after it; a line about a message ends in
  `` trace=<trace id>``;
- ``json``: one object per line, ``{"time": RFC 3339 UTC, "level", "logger", "message"}`` and
  ``"exception"`` (the traceback as one string) when there is one; a line about a message adds
  ``"trace_id"``, ``"span_id"`` and, where known, ``"device"``.

A line is *about a message* when it is written inside ``cityhub.schemas.log_context``'s
``about_message`` (a stage handling a record or a batch); see ``docs/logging.md``.

:func:`install` puts one handler with this formatter on the root logger, so that aiokafka,
aiohttp and every other library log through this one too.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import traceback
from collections.abc import Mapping
from numbers import Number
from types import TracebackType
from typing import IO, Any, Literal, TypeAlias

from cityhub.schemas import log_context
from cityhub.schemas.timefmt import rfc3339

MAX_ARG_CHARS = 1000
"""Most characters of one ``%`` argument of a log call (before escaping)."""
MAX_MESSAGE_CHARS = 4000
"""Most characters of a record's message once escaped (and of each line of an exception)."""
MAX_TRACEBACK_LINES = 200
"""Most lines of one rendered traceback (a deep recursion is cut, its end kept)."""
MAX_DEVICE_CHARS = 200
"""Most characters of a JSON line's ``device`` (a device id comes from outside)."""

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]


def _escape_char(ch: str) -> str:
    named = _ESCAPES.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _cut_marker(left_out: int) -> str:
    return f"…[+{left_out} chars]"


def escape(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` with every non-printable character escaped (``\\n``, ``\\x1b``, ``\\u2028``),
    cut to at most ``limit`` characters plus a marker saying how many were left out. The result
    is printable: one line, no terminal control sequence. An escape is never cut in half."""
    if text.isprintable():  # the common case, at C speed
        if len(text) <= limit:
            return text
        return text[:limit] + _cut_marker(len(text) - limit)
    # Escaped text is never shorter than the text: what fits comes from its first `limit`.
    escaped = text[:limit].translate(_bmp_escapes())
    if len(escaped) <= limit and escaped.isprintable():
        return escaped if len(text) <= limit else escaped + _cut_marker(len(text) - limit)
    return _escape_each(text, limit)  # many escapes, or a non-printable beyond the BMP


@functools.cache
def _bmp_escapes() -> dict[int, str]:
    """The escapes of the Basic Multilingual Plane's non-printable characters, for
    ``str.translate`` (built once, about 10 000 entries, when a message first needs it)."""
    return {c: _escape_char(chr(c)) for c in range(0x10000) if not chr(c).isprintable()}


def _escape_each(text: str, limit: int) -> str:
    out: list[str] = []
    size = 0
    for i, ch in enumerate(text):
        piece = ch if ch.isprintable() else _escape_char(ch)
        if size + len(piece) > limit:
            out.append(_cut_marker(len(text) - i))
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def cap(text: str, limit: int = MAX_ARG_CHARS) -> str:
    """``text`` cut to ``limit`` characters plus a marker (not escaped: that comes later)."""
    return text if len(text) <= limit else text[:limit] + _cut_marker(len(text) - limit)


class _Capped:
    """Stands in for a log argument whose ``str`` or ``repr`` may be long: both are capped."""

    __slots__ = ("_value",)

    def __init__(self, value: object) -> None:
        self._value = value

    def __str__(self) -> str:
        return cap(str(self._value))

    def __repr__(self) -> str:
        return cap(repr(self._value))


def _capped_arg(value: object) -> object:
    # Numbers keep their type so that %d and %.2f still work; everything else is text to %s/%r.
    if value is None or isinstance(value, bool | Number):
        return value
    if isinstance(value, str):
        return cap(value)
    return _Capped(value)


def capped_args(args: Any) -> Any:
    """A log record's ``args`` with each argument's text capped (a tuple, or a mapping for
    ``%(name)s`` formats)."""
    if isinstance(args, Mapping):
        return {key: _capped_arg(value) for key, value in args.items()}
    if isinstance(args, tuple):
        return tuple(_capped_arg(value) for value in args)
    return args


def safe_message(record: logging.LogRecord) -> str:
    """The record's message with its arguments capped, escaped and bounded (the record is not
    changed: other handlers may see it too)."""
    msg = record.msg if isinstance(record.msg, str) else str(record.msg)
    args = record.args
    if args:
        try:
            msg = msg % capped_args(args)
        except (TypeError, ValueError, KeyError):
            # What logging itself would raise and report on stderr; keep the record instead.
            msg = f"{msg} (log arguments did not fit the message: {args!r})"
    return escape(msg)


def safe_traceback(exc_info: ExcInfo) -> str:
    """The traceback of ``exc_info``: frame lines as they are (one per line, non-printables
    escaped), every other line (the exception's message, notes, chain headings) escaped onto
    one bounded line. At most ``MAX_TRACEBACK_LINES`` lines, the last ones kept."""
    _, value, tb = exc_info
    lines: list[str] = []
    try:
        rendered = traceback.TracebackException(type(value), value, tb, compact=True)
        chunks = list(rendered.format())
        frames = _frame_chunks(rendered)
    except Exception as exc:  # a broken __str__ must not lose the record
        chunks = [f"(the traceback could not be rendered: {type(exc).__name__})"]
        frames = set()
    for chunk in chunks:
        if chunk in frames:
            # A frame: '  File "...", line N, in f' and the source lines under it: code, not
            # input, so its lines stay lines.
            lines.extend(escape(line) for line in chunk.rstrip("\n").split("\n"))
        elif chunk.strip("\n"):
            lines.append(escape(chunk.strip("\n")))
    if len(lines) > MAX_TRACEBACK_LINES:
        left_out = len(lines) - MAX_TRACEBACK_LINES
        lines = [*lines[:1], f"…[{left_out} lines left out]", *lines[-MAX_TRACEBACK_LINES + 1 :]]
    return "\n".join(lines)


def _frame_chunks(rendered: traceback.TracebackException) -> set[str]:
    """The frame texts of a traceback and of the exceptions chained to it or grouped in it."""
    frames: set[str] = set()
    pending = [rendered]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        frames.update(current.stack.format())
        linked = [current.__cause__, current.__context__, *(current.exceptions or ())]
        pending.extend(t for t in linked if t is not None)
    return frames


class SafeFormatter(logging.Formatter):
    """Renders records as ``text`` or ``json`` lines with the guarantees in the module
    docstring."""

    def __init__(self, log_format: LogFormat = "text") -> None:
        if log_format not in ("text", "json"):
            raise ValueError(f"log format must be 'text' or 'json', got {log_format!r}")
        super().__init__(TEXT_FORMAT)
        self.log_format = log_format

    def format(self, record: logging.LogRecord) -> str:
        message = safe_message(record)
        exception = None
        if record.exc_info and record.exc_info[1] is not None:
            exception = safe_traceback(record.exc_info)
        elif record.exc_text:
            exception = "\n".join(escape(line) for line in record.exc_text.splitlines())
        if record.stack_info:
            stack = "\n".join(escape(line) for line in record.stack_info.splitlines())
            exception = stack if exception is None else f"{exception}\n{stack}"
        about = log_context.current()
        if self.log_format == "json":
            doc: dict[str, str] = {
                "time": rfc3339(record.created),
                "level": record.levelname,
                "logger": escape(record.name, 200),
                "message": message,
            }
            if about is not None:
                doc["trace_id"] = about.trace_id
                doc["span_id"] = about.span_id
                if about.device is not None:
                    doc["device"] = escape(about.device, MAX_DEVICE_CHARS)
            if exception is not None:
                doc["exception"] = exception
            # ensure_ascii: the line is plain ASCII whatever the text, so no viewer reads a
            # character of it as a line break.
            return json.dumps(doc, ensure_ascii=True, separators=(",", ":"))
        line = (
            f"{self.formatTime(record)} {escape(record.levelname, 20)} "
            f"{escape(record.name, 200)}: {message}"
        )
        if about is not None:
            # Ids are hex (parsed, never raw input): nothing to escape. At the end, so that a
            # reader of the message is not interrupted and grep finds it in one place.
            line = f"{line} trace={about.trace_id}"
        return line if exception is None else f"{line}\n{exception}"


def install(
    level: str | int, log_format: LogFormat = "text", stream: IO[str] | None = None
) -> None:
    """Make every logger of the process (cityhub's, aiokafka's, aiohttp's) write
    through one handler with a :class:`SafeFormatter` on ``stream`` (stderr), at ``level``."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(SafeFormatter(log_format))
    logging.basicConfig(
        level=level.upper() if isinstance(level, str) else level,
        handlers=[handler],
        force=True,
    )
