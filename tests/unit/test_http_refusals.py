"""Requests aiohttp cannot parse are logged without their text: a malformed header line that
carries an API key must not put the key into the log. Real aiohttp server on loopback, raw
bytes over a socket, as curl or nc would send them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY

from cityhub.streams import http_refusals
from cityhub.streams.http_refusals import AIOHTTP_SERVER_LOGGER, MalformedRequestFilter

SECRET = "chk_0123456789abcdef_" + "S" * 43

MALFORMED = {
    # A control character in a header value.
    "control": f"GET /x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {SECRET}\x01\r\n\r\n",
    # A space before the colon.
    "space": f"GET /x HTTP/1.1\r\nHost: h\r\nAuthorization : Bearer {SECRET}\r\n\r\n",
    # A header line longer than aiohttp takes.
    "long": f"GET /x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {SECRET}{'x' * 9000}\r\n\r\n",
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Iterator[Clock]:
    """aiohttp's server logger with only a filter of this test's, on a clock it sets."""
    logger = logging.getLogger(AIOHTTP_SERVER_LOGGER)
    saved = logger.filters[:]
    fake = Clock()
    logger.filters = [MalformedRequestFilter(interval=10.0, clock=fake)]
    try:
        yield fake
    finally:
        logger.filters = saved


async def send_raw(server: TestServer, data: str) -> bytes:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(data.encode())
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def refused(kind: str) -> float:
    value = REGISTRY.get_sample_value("cityhub_http_malformed_requests_total", {"kind": kind})
    return value or 0.0


def rendered(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter()
    return "\n".join(formatter.format(r) for r in records)


async def test_a_malformed_header_is_refused_and_logged_without_its_text(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/x", ok)
    async with TestServer(app) as server:
        for name, data in MALFORMED.items():
            caplog.clear()
            before = sum(refused(k) for k in ("BadHttpMessage", "LineTooLong", "InvalidHeader"))
            with caplog.at_level(logging.DEBUG, AIOHTTP_SERVER_LOGGER):
                answer = await send_raw(server, data)
            clock.now += 60  # past the interval: every case gets its line
            assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), name
            text = rendered(caplog.records)
            assert SECRET[:20] not in text, name
            assert "Traceback" not in text, name
            [record] = caplog.records
            assert record.levelno == logging.WARNING
            assert "could not be parsed, from 127.0.0.1" in record.getMessage()
            after = sum(refused(k) for k in ("BadHttpMessage", "LineTooLong", "InvalidHeader"))
            assert after == before + 1, name


async def test_a_flood_of_them_gives_one_line_per_interval_and_counts_all(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    async with TestServer(web.Application()) as server:
        with caplog.at_level(logging.DEBUG, AIOHTTP_SERVER_LOGGER):
            for _ in range(5):
                await send_raw(server, MALFORMED["space"])
            clock.now += 10
            await send_raw(server, MALFORMED["space"])
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[1].endswith("; 4 more since the last such line")


def test_other_records_pass_unchanged_and_install_adds_one_filter() -> None:
    record = logging.LogRecord(
        AIOHTTP_SERVER_LOGGER, logging.ERROR, __file__, 1, "Error handling request", (), None
    )
    try:
        raise RuntimeError("a handler's own failure")
    except RuntimeError as exc:
        record.exc_info = (RuntimeError, exc, exc.__traceback__)
    assert MalformedRequestFilter().filter(record)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    logger = logging.getLogger(AIOHTTP_SERVER_LOGGER)
    saved = logger.filters[:]
    try:
        logger.filters = []
        http_refusals.install()
        http_refusals.install()
        assert len(logger.filters) == 1
    finally:
        logger.filters = saved
