"""Log lines about a message name its trace (``cityhub.schemas.log_context`` and the formatter of
``cityhub.streams.logsetup``): JSON fields ``trace_id``, ``span_id``, ``device``; `` trace=<id>``
at the end of a text line; nothing on lines written outside a message's context."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from cityhub.schemas import log_context
from cityhub.schemas.log_context import about_message
from cityhub.schemas.trace_context import new_trace
from cityhub.streams.logsetup import SafeFormatter, install

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def record(msg: str = "delivery of %s failed", *args: object) -> logging.LogRecord:
    return logging.LogRecord(
        "cityhub.delivery", logging.INFO, __file__, 1, msg, args or ("t",), None
    )


def test_json_names_the_trace_span_and_device_of_the_message() -> None:
    with about_message(PARENT.encode(), device="dev-1"):
        line = SafeFormatter("json").format(record())
    doc = json.loads(line)
    assert doc["trace_id"] == TRACE_ID
    assert doc["span_id"] == "b7ad6b7169203331"
    assert doc["device"] == "dev-1"
    assert doc["message"] == "delivery of t failed"


def test_text_ends_in_the_trace_id() -> None:
    with about_message(PARENT):
        line = SafeFormatter("text").format(record())
    assert line.endswith(f"cityhub.delivery: delivery of t failed trace={TRACE_ID}")


def test_a_line_outside_a_message_names_none() -> None:
    doc = json.loads(SafeFormatter("json").format(record()))
    assert set(doc) == {"time", "level", "logger", "message"}
    assert "trace=" not in SafeFormatter("text").format(record())


@pytest.mark.parametrize("value", [None, "", "garbage", PARENT.upper(), b"\xff" * 55])
def test_an_invalid_traceparent_names_no_trace(value: str | bytes | None) -> None:
    with about_message(value, device="dev-1") as about:
        assert about is None
        doc = json.loads(SafeFormatter("json").format(record()))
    assert "trace_id" not in doc
    assert "device" not in doc


def test_a_hostile_device_id_stays_one_safe_bounded_field() -> None:
    hostile = "dev\n2026-12-03 ERROR forged\x1b[31m" + "x" * 10_000
    with about_message(PARENT, device=hostile):
        text = SafeFormatter("text").format(record())
        doc = json.loads(SafeFormatter("json").format(record()))
    assert "\n" not in text  # the text line names the trace only, never the device
    assert doc["device"].startswith("dev\\n2026-12-03 ERROR forged\\x1b[31m")
    assert len(doc["device"]) < 300


def test_contexts_nest_and_the_outer_one_comes_back() -> None:
    inner = new_trace()
    with about_message(PARENT) as outer:
        with about_message(inner):
            about = log_context.current()
            assert about is not None
            assert about.trace == inner
        assert log_context.current() == outer
    assert log_context.current() is None


def test_the_context_is_restored_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), about_message(PARENT):
        raise RuntimeError("boom")
    assert log_context.current() is None


async def test_tasks_started_inside_inherit_it_and_others_do_not_see_it() -> None:
    async def current_trace() -> str | None:
        about = log_context.current()
        return None if about is None else about.trace_id

    outside = asyncio.create_task(current_trace())
    with about_message(PARENT):
        inside = asyncio.create_task(current_trace())
        assert await inside == TRACE_ID
    assert await outside is None


def test_every_logger_of_the_process_writes_it_through_the_installed_handler() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        install("INFO", "json", stream)
        with about_message(PARENT, device="dev-1"):
            logging.getLogger("aiokafka").warning("a library's line about it")
        logging.getLogger("cityhub.delivery").info("a line about nothing")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["trace_id"], first["device"]) == (TRACE_ID, "dev-1")
    assert "trace_id" not in second
