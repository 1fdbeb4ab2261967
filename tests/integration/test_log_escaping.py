"""A hub's log file on the real stack, in both log formats: what an unauthenticated client sends
(a request with control characters in a header, which aiohttp's server logs with the offending
bytes quoted over several lines) stays on one line per message and escaped; with
CITYHUB_LOG_FORMAT=json every line of the file is one JSON object, aiokafka's and aiohttp's
records included."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import pytest

from .hub import Hub, publish

pytestmark = pytest.mark.integration

HOSTILE_REQUEST = (
    b"GET /api/v1/tenants HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Evil: a\x1b[31mred\x00\r\n\r\n"
)
"""A header value with an ANSI colour sequence and a NUL: aiohttp refuses it (400) and logs an
error whose exception message quotes it over four lines."""

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [^ ]+: ")


async def send_raw(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(200), 10)
    finally:
        writer.close()
        await writer.wait_closed()


def log_text(hub: Hub, until: str, timeout: float = 10.0) -> str:
    """The hub's log file once ``until`` is in it (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        logs = sorted(hub.workdir.glob(f"{hub.command}-*.log"))
        text = logs[-1].read_text(errors="replace") if logs else ""
        if until in text:
            break
        time.sleep(0.2)
    return text


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_hostile_input_is_logged_escaped(tmp_path: Path, log_format: str) -> None:
    hub = Hub(tmp_path, command="run", extra_env={"CITYHUB_LOG_FORMAT": log_format})
    await asyncio.to_thread(hub.start)
    try:
        answer = await send_raw(hub.port, HOSTILE_REQUEST)
        assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), answer
        text = await asyncio.to_thread(log_text, hub, "Invalid header value char")
    finally:
        await asyncio.to_thread(hub.stop)
    assert "Invalid header value char" in text, text[-3000:]
    raw = text.encode()
    assert b"\x1b" not in raw  # no escape sequence reaches a terminal
    assert b"\x00" not in raw
    assert b"\r" not in raw
    lines = text.splitlines()
    if log_format == "json":
        docs = [json.loads(line) for line in lines]  # every line is one object
        assert all({"time", "level", "logger", "message"} <= set(doc) for doc in docs)
        loggers = {doc["logger"].split(".")[0] for doc in docs}
        assert {"cityhub", "aiokafka", "aiohttp"} <= loggers, loggers
        (refused,) = [d for d in docs if d["logger"] == "aiohttp.server"]
        assert refused["message"] == "Error handling request from 127.0.0.1"
        exception = refused["exception"].split("\n")
    else:
        start = next(i for i, line in enumerate(lines) if "aiohttp.server" in line)
        assert TEXT_LINE.match(lines[start])
        assert lines[start].endswith("ERROR aiohttp.server: Error handling request from 127.0.0.1")
        exception = []
        for line in lines[start + 1 :]:
            if TEXT_LINE.match(line):
                break
            exception.append(line)
    # The exception's own message, quoting the header over several lines, is one line here.
    (message,) = [line for line in exception if "BadHttpMessage" in line]
    assert message.startswith("aiohttp.http_exceptions.BadHttpMessage: 400, message:\\n")
    assert "Invalid header value char:\\n" in message
    assert not any(line.strip().startswith("b'X-Evil") for line in exception)


async def test_an_mqtt_topic_from_outside_is_logged_escaped(tmp_path: Path) -> None:
    """Mosquitto refuses C0 and C1 control characters in topics, but lets through what can
    still forge or hide a line on an operator's screen: U+2028 (a line break for many viewers)
    and U+202E (reverses what follows). The bridge's warning about a topic no format reads
    shows them escaped."""
    hub = Hub(
        tmp_path,
        command="bridge",
        extra_env={
            "CITYHUB_BRIDGE__SUBSCRIPTIONS": json.dumps(
                [{"filter": f"cityhub/mystery-{tmp_path.name[-6:]}/#", "format": "no-such"}]
            )
        },
    )
    await asyncio.to_thread(hub.start)
    topic = f"cityhub/mystery-{tmp_path.name[-6:]}/a\u202egnp.exe\u20282026-01-01 INFO forged"
    try:
        await publish([(topic, b"{}")])
        text = await asyncio.to_thread(log_text, hub, "no ingest format reads")
    finally:
        await asyncio.to_thread(hub.stop)
    (line,) = [x for x in text.splitlines() if "no ingest format reads" in x]
    assert "\u202e" not in text
    assert "\u2028" not in text
    assert "a\\u202egnp.exe\\u20282026-01-01 INFO forged" in line
