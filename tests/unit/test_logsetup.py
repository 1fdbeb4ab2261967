"""Log records rendered safely (``cityhub.streams.logsetup``): strings from outside cannot add
lines, move an operator's terminal or fill a disk, in text and in JSON; exceptions stay
readable but their messages cannot forge lines either; the formatter is the root logger's for
every library."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityhub.streams.logsetup import (
    MAX_ARG_CHARS,
    MAX_MESSAGE_CHARS,
    SafeFormatter,
    _escape_each,
    escape,
    install,
)

HOSTILE = "a\nb\rc\x1b[31mred\x1b[0m\x00z\u2028\u2029\u202e\x7f\x85\ud800" + "x" * 10_000
"""Newline, carriage return, an ANSI colour sequence, NUL, the Unicode line and paragraph
separators, a right-to-left override, DEL, a C1 NEL, a lone surrogate and 10 000 characters."""

BOUND = MAX_MESSAGE_CHARS + 200
"""A rendered message line: the message's bound plus the time, level, logger and a marker."""

TERMINAL_CONTROL = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("cityhub.bridge", logging.WARNING, __file__, 1, msg, args, exc_info)


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def assert_one_safe_line(line: str) -> None:
    assert "\n" not in line
    assert "\r" not in line
    assert not TERMINAL_CONTROL.search(line), repr(TERMINAL_CONTROL.search(line))
    assert line.isprintable()
    assert len(line) <= BOUND


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("as_argument", [True, False])
def test_a_hostile_message_renders_as_one_bounded_line(log_format: str, as_argument: bool) -> None:
    formatter = SafeFormatter(log_format)  # type: ignore[arg-type]
    rec = record("topic %s refused", HOSTILE) if as_argument else record(HOSTILE)
    line = formatter.format(rec)
    assert_one_safe_line(line)
    message = json.loads(line)["message"] if log_format == "json" else line
    assert "a\\nb\\rc\\x1b[31mred" in message
    assert "\\x00z\\u2028\\u2029\\u202e\\x7f\\x85\\ud800" in message
    assert "chars]" in message  # cut, and says so
    assert rec.getMessage().startswith("topic a\nb" if as_argument else "a\nb")  # not changed


def test_an_argument_is_capped_before_it_joins_the_message() -> None:
    line = SafeFormatter().format(record("%s|%s", "y" * 5000, "tail"))
    assert "y" * MAX_ARG_CHARS + "…[+4000 chars]|tail" in line


def test_printable_text_of_any_script_stays_as_it_is() -> None:
    text = "Zürich 温度 🌡 Łódź: pm2_5 = 12.5 µg/m³"
    assert escape(text) == text
    assert text in SafeFormatter().format(record("%s", text))
    assert json.loads(SafeFormatter("json").format(record("%s", text)))["message"] == text


def test_escapes_are_never_cut_in_half() -> None:
    escaped = escape("\x1b" * 100, limit=10)
    assert escaped.startswith("\\x1b\\x1b…")
    assert escaped.endswith("…[+98 chars]")


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_text_escapes_to_one_printable_line(text: str) -> None:
    escaped = escape(text, limit=200)
    assert escaped.isprintable()
    assert len(escaped) <= 200 + len("…[+300 chars]")
    if text.isprintable() and len(text) <= 200:
        assert escaped == text


@given(st.text(max_size=80), st.integers(min_value=1, max_value=60))
@settings(max_examples=500, deadline=None)
def test_the_fast_path_escapes_as_one_character_at_a_time_does(text: str, limit: int) -> None:
    assert escape(text, limit) == _escape_each(text, limit)


def test_numbers_keep_their_formats_and_mappings_work() -> None:
    formatter = SafeFormatter()
    assert formatter.format(record("%d items in %.2f s", 3, 0.5)).endswith("3 items in 0.50 s")
    mapped = logging.LogRecord(
        "cityhub", logging.INFO, __file__, 1, "%(topic)s!", ({"topic": "t\n1"},), None
    )
    assert formatter.format(mapped).endswith("t\\n1!")
    # Arguments that do not fit the message keep the record, and stay escaped.
    assert "did not fit" in formatter.format(record("%d", "x\n"))
    assert "\n" not in formatter.format(record("%d", "x\n"))


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_exception_message_cannot_forge_lines(log_format: str) -> None:
    cause = raised(ValueError("topic v3/x\n2026-12-03 10:00:00,000 ERROR cityhub: forged\x1b[2J"))
    try:
        raise RuntimeError("outer\r\nline") from cause
    except RuntimeError as exc:
        rendered = SafeFormatter(log_format).format(  # type: ignore[arg-type]
            record("failed on %s", "t\n", exc=exc)
        )
    if log_format == "json":
        doc = json.loads(rendered)
        assert "\n" not in rendered
        head, traceback = doc["message"], doc["exception"]
    else:
        head, _, traceback = rendered.partition("\n")
    assert head.endswith("failed on t\\n")
    lines = traceback.split("\n")
    for line in lines:
        assert_one_safe_line(line)
    assert "ValueError: topic v3/x\\n2026-12-03 10:00:00,000 ERROR cityhub: forged\\x1b[2J" in lines
    assert "RuntimeError: outer\\r\\nline" in lines
    assert not any(line.startswith("2026-12-03") for line in lines)
    # Frames keep their own lines: file and code.
    assert any(line.startswith('  File "') and "test_logsetup.py" in line for line in lines)
    assert any("raise RuntimeError" in line for line in lines)


def test_json_lines_carry_time_level_logger_message() -> None:
    line = SafeFormatter("json").format(record("hello %s", "world"))
    doc = json.loads(line)
    assert set(doc) == {"time", "level", "logger", "message"}
    assert doc["level"] == "WARNING"
    assert doc["logger"] == "cityhub.bridge"
    assert doc["message"] == "hello world"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["time"])
    assert datetime.fromisoformat(doc["time"]).utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert line.isascii()


def test_the_formatter_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="text' or 'json"):
        SafeFormatter("yaml")  # type: ignore[arg-type]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("name", ["cityhub.bridge", "faust.worker", "aiokafka.consumer", "mode"])
def test_install_serves_every_library_s_loggers(name: str) -> None:
    stream = io.StringIO()
    install("info", "json", stream)
    logging.getLogger(name).warning("seen %s", "on\nline")
    logging.getLogger(name).debug("below the level")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert (doc["logger"], doc["message"]) == (name, "seen on\\nline")
