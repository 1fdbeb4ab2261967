"""The hub's HTTP servers (``server_part``) with real sockets on loopback, so that a change in
aiohttp's handling shows here. Slow and silent clients (slowloris): a connection without a whole
request's headers within the idle timeout, from its opening or from its last response, is
closed; a request in progress (a live stream) is never cut. A stopping server ends its live
streams at once, saying why, instead of waiting for them (for ever)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from cityhub.schemas.settings import HttpSettings
from cityhub.streams.delivery import guarded_stream
from cityhub.streams.delivery.guarded_stream import SERVER_STOPS, StreamEnded, guarded, write
from cityhub.streams.runtime.host import server_part

TIMEOUT = 1.0
Served = tuple[int, asyncio.Task[None], web.Application]


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for i in range(6):  # 3 s: three idle timeouts
        await response.write(f"data: {i}\n\n".encode())
        await asyncio.sleep(0.5)
    return response


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


STALLS = web.AppKey("stalls", list)


async def _flood(request: web.Request) -> web.StreamResponse:
    """A live stream with ever more to send, written as the API's are."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    try:
        while True:
            await write(request, response, b"data: " + b"x" * 65536 + b"\n\n")
    except ConnectionError as exc:
        request.app[STALLS].append(str(exc))
    return response


async def _guarded(request: web.Request) -> web.StreamResponse:
    """A live stream with nothing to send, as the API's and the console's are written."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b": connected\n\n")
    nothing: asyncio.Queue[bytes] = asyncio.Queue()
    async for item in guarded(request, response, nothing.get, lambda: None, keepalive=b":\n\n"):
        if isinstance(item, StreamEnded):
            await response.write(f": closed: {item.why}\n\n".encode())
            break
    return response


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    """A server part on a free loopback port: the port, the task running it, its app."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = int(s.getsockname()[1])
    app = web.Application()
    app.router.add_get("/", _hello)
    app.router.add_get("/stream", _stream)
    app.router.add_get("/guarded", _guarded)
    app.router.add_get("/flood", _flood)
    app[STALLS] = []
    task = asyncio.create_task(
        server_part("test", app, "127.0.0.1", free, idle_timeout=TIMEOUT).run()
    )
    for _ in range(100):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", free)
            writer.close()
            break
        await asyncio.sleep(0.05)
    try:
        yield free, task, app
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def port(served: Served) -> int:
    return served[0]


async def _closed_after(reader: asyncio.StreamReader, limit: float) -> float:
    """Seconds until the server closes the connection (reads what it sends meanwhile)."""
    started = time.monotonic()
    while await asyncio.wait_for(reader.read(65536), limit):
        pass
    return time.monotonic() - started


async def test_a_connection_that_sends_nothing_is_closed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await _closed_after(reader, 10) < TIMEOUT + 2
    writer.close()


async def test_headers_sent_a_byte_at_a_time_do_not_hold_the_connection(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    with contextlib.suppress(ConnectionError):
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)
            if reader.at_eof() or time.monotonic() - started > 8:
                break
    await _closed_after(reader, 10)
    assert time.monotonic() - started < TIMEOUT + 3
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed_after_its_response(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"hello"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    assert await _closed_after(reader, 10) < TIMEOUT + 2
    writer.close()


async def test_a_live_stream_outlasts_the_timeout(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    while b"data: 5" not in received:
        chunk = await asyncio.wait_for(reader.read(65536), 5)
        assert chunk, f"closed mid-stream after {received!r}"
        received += chunk
    writer.close()


def test_the_api_setting_is_bounded() -> None:
    assert HttpSettings().idle_timeout_seconds == 75.0
    with pytest.raises(ValueError, match="idle_timeout_seconds"):
        HttpSettings(idle_timeout_seconds=0)


async def test_a_stopping_server_ends_its_live_streams_at_once(
    served: Served,
) -> None:
    port, server, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /guarded HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b": connected"), 5)
    started = time.monotonic()
    server.cancel()  # the process stops: run_parts cancels its parts
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(server, 10)
    assert time.monotonic() - started < 3  # aiohttp would have waited 60 s, then cancelled
    rest = await asyncio.wait_for(reader.read(65536), 5)
    assert f": closed: {SERVER_STOPS}".encode() in rest
    writer.close()


async def test_a_reader_that_stopped_reading_loses_its_stream(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, _, app = served
    # A review: a client that never read held its live stream (and its slot of the caps) for
    # ever once the socket's buffers were full.
    monkeypatch.setattr(guarded_stream, "STALLED_WRITE_S", 1.0)
    _, writer = await asyncio.open_connection("127.0.0.1", port, limit=1024)
    writer.transport.pause_reading()  # take nothing: the kernel's buffers fill, then it stalls
    writer.write(b"GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")
    stalls = app[STALLS]
    async with asyncio.timeout(20):
        while not stalls:
            await asyncio.sleep(0.1)
    assert "took nothing of the stream for 1 s" in stalls[0]
    writer.close()
