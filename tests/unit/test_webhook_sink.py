"""WebhookSink against a real HTTP receiver on loopback (``aiohttp.web`` on 127.0.0.1, a free
port). Fake resolvers stand in for DNS: no test looks a name up, every connection goes to
127.0.0.x. Signatures are checked by the independent ``standardwebhooks`` package."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from cityhub.connectors.sinks.errors import DeliveryFailed, FailureKind, excerpt
from cityhub.connectors.sinks.webhook import (
    WebhookSink,
    is_retriable_status,
    parse_retry_after,
)
from cityhub.connectors.sinks.webhook_signing import generate_webhook_secret

pytestmark = pytest.mark.timeout(60)

SECRET = generate_webhook_secret()
BODY = b'{"type":"observations","data":[{"quantity":"pm2_5","value":12.5}]}'
LOOPBACK = ["127.0.0.1"]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]


@dataclass
class Receiver:
    """Records every request; each path answers in its own way."""

    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    streamed: int = 0
    stream_ended: asyncio.Event = field(default_factory=asyncio.Event)
    close_each: bool = False
    sni: list[str | None] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else ("", 0)
        self.seen.append(
            Seen(
                request.path,
                {k.lower(): v for k, v in request.headers.items()},
                await request.read(),
                (peer[0], peer[1]),
            )
        )
        name = request.match_info["name"]
        response: web.StreamResponse
        if name == "ok":
            response = web.Response(status=204)
        elif name == "accepted":
            response = web.Response(status=202, text="queued")
        elif name == "fail500":
            response = web.Response(status=500, text="database down")
        elif name == "busy":
            response = web.Response(status=429, headers={"Retry-After": "7"}, text="slow down")
        elif name == "unavailable":
            when = datetime.now(UTC) + timedelta(seconds=120)
            response = web.Response(
                status=503, headers={"Retry-After": format_datetime(when, usegmt=True)}
            )
        elif name == "missing":
            response = web.Response(status=404, text="no such hook")
        elif name == "gone":
            response = web.Response(status=410, text="unsubscribed")
        elif name == "timeout408":
            response = web.Response(status=408)
        elif name == "moved":
            response = web.Response(status=302, headers={"Location": f"{self.base}/ok"})
        elif name == "hang":
            # Bounded: the test sets `release` when it is done with this request.
            await asyncio.wait_for(self.release.wait(), timeout=30)
            response = web.Response(status=204)
        elif name in ("huge", "hugefail"):
            return await self._endless(request, 200 if name == "huge" else 500)
        elif name == "slowbody":
            return await self._slow_body(request)
        else:
            response = web.Response(status=400, text=f"unknown test path {name}")
        if self.close_each:
            response.force_close()
        return response

    async def _endless(self, request: web.Request, status: int) -> web.StreamResponse:
        """Streams 64 KiB chunks, up to 1 GiB (a bounded loop), until the client goes away."""
        response = web.StreamResponse(status=status)
        response.content_type = "text/plain"
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            for _ in range(16384):
                await response.write(chunk)
                self.streamed += len(chunk)
        except (OSError, RuntimeError):
            pass  # the client closed the connection
        finally:
            self.stream_ended.set()
        return response

    async def _slow_body(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.content_length = 100
        await response.prepare(request)
        await response.write(b"partial")
        await asyncio.wait_for(self.release.wait(), timeout=30)
        return response


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/hooks/{name}", rec.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    rec.port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    yield rec
    rec.release.set()
    await runner.cleanup()
    sock.close()


@pytest.fixture
async def sinks() -> AsyncIterator[Callable[..., WebhookSink]]:
    """Makes sinks and closes them after the test (leaked sockets fail the run)."""
    made: list[WebhookSink] = []

    def make(url: str, **kwargs: object) -> WebhookSink:
        kwargs.setdefault("allowed_hosts", LOOPBACK)
        sink = WebhookSink(url, kwargs.pop("secret", SECRET), **kwargs)  # type: ignore[arg-type]
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.close()


class FakeDns:
    """Answers each look-up with the next list of addresses (the last one repeats)."""

    def __init__(self, *answers: Sequence[str] | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append((host, port))
        answer = self.answers[min(len(self.calls), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def fail(sink: WebhookSink, msg_id: str = "msg_test") -> DeliveryFailed:
    with pytest.raises(DeliveryFailed) as caught:
        await sink.send(msg_id, BODY)
    return caught.value


# -- success and signature -----------------------------------------------------------------------


async def test_success_is_signed_for_an_independent_verifier(
    receiver: Receiver, sinks: Callable[..., WebhookSink]
) -> None:
    sink = sinks(f"{receiver.base}/hooks/ok?token=abc")
    status = await sink.send("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", BODY)

    assert status == 204
    [seen] = receiver.seen
    assert seen.body == BODY
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["user-agent"] == "cityhub-webhook/1"
    assert seen.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert seen.headers["webhook-id"] == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    assert abs(int(seen.headers["webhook-timestamp"]) - time.time()) < 5
    Webhook(SECRET).verify(seen.body, seen.headers, json_parse=False)  # raises if it disagrees


async def test_given_timestamp_and_rotated_secrets_each_verify(
    receiver: Receiver, sinks: Callable[..., WebhookSink]
) -> None:
    new, old = generate_webhook_secret(), generate_webhook_secret()
    sink = sinks(f"{receiver.base}/hooks/accepted", secret=[new, old])
    now = int(time.time())

    assert await sink.send("msg_rotate", BODY, timestamp=now) == 202
    [seen] = receiver.seen
    assert seen.headers["webhook-timestamp"] == str(now)
    for secret in (new, old):
        Webhook(secret).verify(seen.body, seen.headers, json_parse=False)


async def test_keep_alive_reuses_one_connection(
    receiver: Receiver, sinks: Callable[..., WebhookSink]
) -> None:
    sink = sinks(f"{receiver.base}/hooks/accepted")
    for i in range(5):
        assert await sink.send(f"msg_{i}", BODY) == 202
    assert len({seen.peer for seen in receiver.seen}) == 1


# -- failures and their classification -----------------------------------------------------------


async def test_500_is_retriable_with_a_capped_excerpt(
    receiver: Receiver, sinks: Callable[..., WebhookSink]
) -> None:
    err = await fail(sinks(f"{receiver.base}/hooks/fail500"))
    assert err.retriable
    assert err.status == 500
    assert err.kind is FailureKind.HTTP_STATUS
    assert err.retry_after is None
    assert "database down" in str(err)


async def test_429_carries_retry_after_seconds(
    receiver: Receiver, sinks: Callable[..., WebhookSink]
) -> None:
    err = await fail(sinks(f"{receiver.base}/hooks/busy"))
    assert err.retriable
    assert err.status == 429
    assert err.retry_after == 7.0


async def test_503_retry_after_as_an_http_date(
    receiver: Receiver, sinks: Callable[..., WebhookSink]
) -> None:
    err = await fail(sinks(f"{receiver.base}/hooks/unavailable"))
    assert err.retriable
    assert err.status == 503
    assert err.retry_after is not None
    assert 110 <= err.retry_after <= 121


async def test_408_is_retriable(receiver: Receiver, sinks: Callable[..., WebhookSink]) -> None:
    err = await fail(sinks(f"{receiver.base}/hooks/timeout408"))
    assert err.retriable
    assert err.status == 408


async def test_404_is_not_retriable(receiver: Receiver, sinks: Callable[..., WebhookSink]) -> None:
    err = await fail(sinks(f"{receiver.base}/hooks/missing"))
    assert not err.retriable
    assert err.status == 404
    assert err.kind is FailureKind.HTTP_STATUS
    assert "no such hook" in str(err)


async def test_410_says_the_receiver_is_gone(
    receiver: Receiver, sinks: Callable[..., WebhookSink]
) -> None:
    err = await fail(sinks(f"{receiver.base}/hooks/gone"))
    assert err.kind is FailureKind.GONE
    assert err.status == 410
    assert err.retriable  # held and asked again, never dead-lettered for it
    assert "takes no deliveries" in str(err)


async def test_redirect_is_not_followed_and_not_retriable(
    receiver: Receiver, sinks: Callable[..., WebhookSink]
) -> None:
    err = await fail(sinks(f"{receiver.base}/hooks/moved"))
    assert not err.retriable
    assert err.status == 302
    assert err.kind is FailureKind.REDIRECT
    assert "302" in str(err)
    assert [seen.path for seen in receiver.seen] == ["/hooks/moved"]  # /hooks/ok never called


async def test_a_hanging_receiver_times_out_within_the_timeout(
    receiver: Receiver, sinks: Callable[..., WebhookSink]
) -> None:
    sink = sinks(f"{receiver.base}/hooks/hang", timeout=0.5)
    started = time.monotonic()
    err = await fail(sink)
    elapsed = time.monotonic() - started

    assert err.retriable
    assert err.kind is FailureKind.TIMEOUT
    assert err.status is None
    assert 0.45 <= elapsed < 1.5
    assert len(receiver.seen) == 1


async def test_a_2xx_whose_body_stalls_is_still_a_success(
    receiver: Receiver, sinks: Callable[..., WebhookSink]
) -> None:
    sink = sinks(f"{receiver.base}/hooks/slowbody", timeout=0.5)
    started = time.monotonic()
    assert await sink.send("msg_slow", BODY) == 200
    assert time.monotonic() - started < 1.5


async def test_an_endless_response_body_is_not_read(
    receiver: Receiver, sinks: Callable[..., WebhookSink]
) -> None:
    sink = sinks(f"{receiver.base}/hooks/huge", max_response_bytes=1024, timeout=5)
    started = time.monotonic()
    assert await sink.send("msg_huge", BODY) == 200
    assert time.monotonic() - started < 2

    # The sink closed the connection: the receiver's writes fail long before its 1 GiB.
    await asyncio.wait_for(receiver.stream_ended.wait(), timeout=10)
    assert receiver.streamed < 32 * 1024 * 1024  # socket buffers on loopback, at most


async def test_an_endless_error_body_is_capped_in_the_message(
    receiver: Receiver, sinks: Callable[..., WebhookSink]
) -> None:
    sink = sinks(f"{receiver.base}/hooks/hugefail", max_response_bytes=4096, timeout=5)
    err = await fail(sink)
    assert err.retriable
    assert err.status == 500
    assert len(str(err)) < 400
    await asyncio.wait_for(receiver.stream_ended.wait(), timeout=10)
    assert receiver.streamed < 32 * 1024 * 1024


async def test_a_2xx_whose_body_breaks_off_is_still_a_success(
    sinks: Callable[..., WebhookSink],
) -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        # Fewer bytes than the length it announces, then the connection closes.
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(short, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sink = sinks(f"http://127.0.0.1:{port}/hooks/short", timeout=5)
        assert await sink.send("msg_short", BODY) == 200
    finally:
        server.close()
        await server.wait_closed()


async def test_connection_refused_is_retriable(sinks: Callable[..., WebhookSink]) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    err = await fail(sinks(f"http://127.0.0.1:{port}/hooks/ok"))
    assert err.retriable
    assert err.kind is FailureKind.CONNECTION
    assert err.status is None


# -- SSRF and pinning ------------------------------------------------------------------------------


@pytest.fixture
async def tripwire() -> AsyncIterator[tuple[int, list[object]]]:
    """A TCP listener on 127.0.0.1 that counts connections: proof that none was made."""
    connections: list[object] = []

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer.get_extra_info("peername"))
        writer.close()

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port, connections
    server.close()
    await server.wait_closed()


async def test_a_private_address_is_refused_without_connecting(
    sinks: Callable[..., WebhookSink],
) -> None:
    dns = FakeDns(["10.0.0.1"])
    err = await fail(sinks("http://10.0.0.1/hooks/ok", allowed_hosts=(), resolver=dns))
    assert not err.retriable
    assert err.kind is FailureKind.UNSAFE_URL
    assert "private address" in str(err)
    assert dns.calls == []  # an IP literal is not looked up


async def test_a_name_resolving_to_loopback_is_refused_without_the_allow_list(
    sinks: Callable[..., WebhookSink], tripwire: tuple[int, list[object]]
) -> None:
    port, connections = tripwire
    dns = FakeDns(["127.0.0.1"])
    sink = sinks(f"http://hook.example.com:{port}/hooks/ok", allowed_hosts=(), resolver=dns)
    err = await fail(sink)
    assert not err.retriable
    assert err.kind is FailureKind.UNSAFE_URL
    assert "loopback" in str(err)
    await asyncio.sleep(0.05)
    assert connections == []
    assert sink.target is None


async def test_dns_failure_is_retriable(sinks: Callable[..., WebhookSink]) -> None:
    dns = FakeDns(OSError("Name or service not known"))
    err = await fail(sinks("http://hook.example.com/hooks/ok", resolver=dns))
    assert err.retriable
    assert err.kind is FailureKind.DNS


async def test_the_checked_address_is_pinned_until_the_check_expires(
    receiver: Receiver, sinks: Callable[..., WebhookSink]
) -> None:
    receiver.close_each = True  # every send opens a new connection, so it must resolve again
    dns = FakeDns(["127.0.0.1"], ["127.0.0.2"])  # nothing listens on 127.0.0.2
    clock = FakeClock()
    url = f"http://hook.example.com:{receiver.port}/hooks/ok"
    sink = sinks(url, allowed_hosts=["127.0.0.1", "127.0.0.2"], resolver=dns, clock=clock)

    assert await sink.send("msg_1", BODY) == 204
    clock.now += 30
    assert await sink.send("msg_2", BODY) == 204
    assert len(dns.calls) == 1  # the second connection used the pinned address
    assert len({seen.peer for seen in receiver.seen}) == 2  # ...on a new connection
    assert all(s.headers["host"] == f"hook.example.com:{receiver.port}" for s in receiver.seen)

    clock.now += 31  # the check is 61 s old: check and resolve again
    err = await fail(sink)
    assert len(dns.calls) == 2
    assert err.retriable
    assert err.kind is FailureKind.CONNECTION
    assert "127.0.0.2" in str(err)
    assert len(receiver.seen) == 2


async def test_a_connection_failure_checks_the_url_again(
    receiver: Receiver, sinks: Callable[..., WebhookSink]
) -> None:
    dns = FakeDns(["127.0.0.2"], ["127.0.0.1"])  # the host moved
    url = f"http://hook.example.com:{receiver.port}/hooks/ok"
    sink = sinks(url, allowed_hosts=["127.0.0.1", "127.0.0.2"], resolver=dns, clock=FakeClock())

    err = await fail(sink)
    assert err.kind is FailureKind.CONNECTION
    assert await sink.send("msg_2", BODY) == 204  # same clock: the failure alone re-checked
    assert len(dns.calls) == 2


async def test_a_rebinding_to_a_private_address_is_refused(
    receiver: Receiver, sinks: Callable[..., WebhookSink]
) -> None:
    dns = FakeDns(["127.0.0.1"], ["10.0.0.1"])
    clock = FakeClock()
    url = f"http://hook.example.com:{receiver.port}/hooks/ok"
    sink = sinks(url, allowed_hosts=["127.0.0.1"], resolver=dns, clock=clock)

    assert await sink.send("msg_1", BODY) == 204
    clock.now += 61
    err = await fail(sink)
    assert not err.retriable
    assert err.kind is FailureKind.UNSAFE_URL
    assert "10.0.0.1" in str(err)
    assert len(receiver.seen) == 1


# -- TLS: the original host name as SNI and in the certificate check ------------------------------


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed for a test certificate (deploy/system-deps.sh installs it)")
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_receiver(tmp_path: Path) -> AsyncIterator[tuple[Receiver, Path]]:
    cert, key = _certificate(tmp_path, "hook.example.com")
    rec = Receiver()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    def sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        rec.sni.append(name)

    server_ctx.sni_callback = sni
    app = web.Application()
    app.router.add_route("*", "/hooks/{name}", rec.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    rec.port = sock.getsockname()[1]
    await web.SockSite(runner, sock, ssl_context=server_ctx).start()
    yield rec, cert
    await runner.cleanup()
    sock.close()


async def test_https_sends_the_host_name_as_sni_and_checks_the_certificate(
    tls_receiver: tuple[Receiver, Path], sinks: Callable[..., WebhookSink]
) -> None:
    rec, cert = tls_receiver
    client_ctx = ssl.create_default_context(cafile=str(cert))
    dns = FakeDns(["127.0.0.1"])
    url = f"https://hook.example.com:{rec.port}/hooks/ok"
    sink = sinks(url, resolver=dns, ssl_context=client_ctx)

    assert await sink.send("msg_tls", BODY) == 204
    assert rec.sni == ["hook.example.com"]
    assert rec.seen[0].headers["host"] == f"hook.example.com:{rec.port}"
    Webhook(SECRET).verify(rec.seen[0].body, rec.seen[0].headers, json_parse=False)


async def test_https_refuses_a_certificate_for_another_name(
    tls_receiver: tuple[Receiver, Path], sinks: Callable[..., WebhookSink]
) -> None:
    rec, cert = tls_receiver
    client_ctx = ssl.create_default_context(cafile=str(cert))
    dns = FakeDns(["127.0.0.1"])
    url = f"https://other.example.com:{rec.port}/hooks/ok"  # the certificate says hook.
    err = await fail(sinks(url, resolver=dns, ssl_context=client_ctx))
    assert err.kind is FailureKind.CONNECTION
    assert "certificate" in str(err).lower()
    assert rec.seen == []


# -- secrets and messages -----------------------------------------------------------------------


async def test_no_secret_or_url_path_in_reprs_messages_or_logs(
    receiver: Receiver, sinks: Callable[..., WebhookSink], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sink = sinks(f"{receiver.base}/hooks/fail500?token=subscriber-token")
    err = await fail(sink)
    texts = [repr(sink), str(err), repr(err), repr(vars(sink)), caplog.text]
    for text in texts:
        assert SECRET not in text
        assert SECRET.removeprefix("whsec_") not in text
    assert "subscriber-token" not in str(err)
    assert repr(sink) == f"WebhookSink('http://127.0.0.1:{receiver.port}', timeout=10)"


def test_a_malformed_secret_is_refused_without_quoting_it() -> None:
    bad = "whsec_not!base64-secret-value"
    with pytest.raises(ValueError) as caught:
        WebhookSink("https://hooks.example.com/x", bad)
    assert bad not in str(caught.value)


async def test_send_after_close_is_a_bug(
    receiver: Receiver, sinks: Callable[..., WebhookSink]
) -> None:
    sink = sinks(f"{receiver.base}/hooks/ok")
    await sink.close()
    with pytest.raises(RuntimeError):
        await sink.send("msg_closed", BODY)
    await sink.close()  # idempotent


# -- pure parts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retriable"),
    [(400, False), (401, False), (403, False), (404, False), (408, True), (409, False),
     (410, False), (413, False), (422, False), (429, True), (500, True), (502, True),
     (503, True), (504, True)],
)  # fmt: skip
def test_status_classification(status: int, retriable: bool) -> None:
    assert is_retriable_status(status) is retriable


def test_retry_after_parsing() -> None:
    now = datetime(2026, 11, 29, 1, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 0 ", now=now) == 0.0
    assert parse_retry_after("Sun, 29 Nov 2026 01:01:30 GMT", now=now) == 90.0
    assert parse_retry_after("Sun, 29 Nov 2026 00:59:00 GMT", now=now) == 0.0  # in the past
    for junk in (None, "", "-5", "1.5", "soon", "Sun, 99 Nov 2026 01:01:30 GMT", "٣"):
        assert parse_retry_after(junk, now=now) is None


def test_excerpt_is_bounded_and_printable() -> None:
    assert excerpt(b"line one\r\n\tline two\x00") == "line one line two"
    long = excerpt(b"x" * 100_000, 50)
    assert len(long) == 50
    assert long.endswith("…")
    assert excerpt(b"\xff\xfeok") == "\ufffd\ufffdok"
