"""A hub's log file on the real stack, in both log formats: what an unauthenticated client sends
(a request with control characters in a header, which aiohttp's server would log with the
offending bytes quoted over several lines) is logged as one line that quotes none of it
(``cityhub.streams.http_refusals``); an MQTT topic from outside stays on one line, escaped; with
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
"""A header value with an ANSI colour sequence and a NUL: aiohttp refuses it (400); its own log
record would quote it over four lines."""
REFUSED = (
    "refused an HTTP request that could not be parsed, from 127.0.0.1: BadHttpMessage (HTTP 400)"
)

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
        text = await asyncio.to_thread(log_text, hub, "could not be parsed")
    finally:
        await asyncio.to_thread(hub.stop)
    assert REFUSED in text, text[-3000:]
    raw = text.encode()
    assert b"\x1b" not in raw  # no escape sequence reaches a terminal
    assert b"\x00" not in raw
    assert b"\r" not in raw
    # Nothing of the request's text, escaped or not: a header could be a key or a cookie.
    assert "X-Evil" not in text
    assert "31mred" not in text
    assert "Invalid header value char" not in text
    lines = text.splitlines()
    if log_format == "json":
        docs = [json.loads(line) for line in lines]  # every line is one object
        assert all({"time", "level", "logger", "message"} <= set(doc) for doc in docs)
        loggers = {doc["logger"].split(".")[0] for doc in docs}
        assert {"cityhub", "aiokafka", "aiohttp"} <= loggers, loggers
        (refused,) = [d for d in docs if d["logger"] == "aiohttp.server"]
        assert refused["message"] == REFUSED
        assert refused["level"] == "WARNING"
        assert "exception" not in refused
    else:
        start = next(i for i, line in enumerate(lines) if "aiohttp.server" in line)
        assert TEXT_LINE.match(lines[start])
        assert lines[start].endswith(f"WARNING aiohttp.server: {REFUSED}")
        # No traceback under it: the next line is a record of its own, if any.
        assert all(TEXT_LINE.match(line) for line in lines[start + 1 : start + 2])


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
