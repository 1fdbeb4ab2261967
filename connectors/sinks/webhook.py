"""The webhook sink: one signed POST per call, to checked and pinned addresses only.

Contract with the delivery task (``cityhub.streams.delivery``), which owns batching, queues,
retries, dead letters and metrics::

    sink = WebhookSink(url, secret, allowed_hosts=settings.subscriptions.webhook_allowed_hosts)
    status = await sink.send(msg_id, body)   # 2xx status, or raises DeliveryFailed
    await sink.close()

``send`` makes exactly one attempt: it POSTs ``body`` (the exact bytes, ``Content-Type:
application/json`` unless the caller names another) with the Standard Webhooks headers
(``webhook-id`` = ``msg_id``, the same on every retry of a batch; ``webhook-timestamp``;
``webhook-signature``, by :func:`~cityhub.connectors.sinks.webhook_signing.sign`), and the W3C
``traceparent`` the caller gives (``cityhub.connectors.sinks.tracing``), and returns the
2xx status. Otherwise it raises :class:`~cityhub.connectors.sinks.errors.DeliveryFailed`:

====================================================  ===========  ==================
outcome                                               retriable    kind
====================================================  ===========  ==================
408, 429, 5xx (``retry_after`` from ``Retry-After``)  yes          ``http_status``
other 4xx                                             no           ``http_status``
3xx: redirects are never followed                     no           ``redirect``
no complete answer within ``timeout`` (in total)      yes          ``timeout``
connect refused/reset, TLS failure, disconnect        yes          ``connection``
host does not resolve (``UnresolvableWebhookHost``)   yes          ``dns``
URL refused by the SSRF checks (``UnsafeWebhookUrl``) no           ``unsafe_url``
====================================================  ===========  ==================

SSRF and DNS pinning: before the first POST, and again once the check is ``pin_ttl`` seconds
old or after a connection failure, the URL goes through
:func:`~cityhub.connectors.sinks.ssrf.check_webhook_url`. The HTTP client resolves the host
only through :class:`PinnedResolver`, which answers with the checked addresses and nothing else,
so a DNS answer that changes between the check and the connection (rebinding) is never used.
The request still carries the original host: ``Host`` header, TLS server name (SNI) and the
certificate's host-name check all use it. A pooled keep-alive connection opened before a
re-check stays in use until it closes; it goes to an address that passed the check.

Response bodies are read only up to ``max_response_bytes`` (kept for the error message's
excerpt); a longer body is not read on: the connection is closed instead. Bodies are not
decompressed (``Accept-Encoding: identity``). Cookies are not kept, proxies from the
environment are not used (they would bypass the pinning).

One ``aiohttp.ClientSession`` (one connection pool, keep-alive) per sink, created on the first
``send`` so that the constructor needs no event loop. Secrets appear in no message, log line
or ``repr``; messages name the receiver by its origin only, since a URL's path or query may
hold the subscriber's own token.
"""

from __future__ import annotations

import asyncio
import email.utils
import io
import math
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from cityhub.connectors.sinks import webhook_signing
from cityhub.connectors.sinks.errors import EXCERPT_CHARS, DeliveryFailed, FailureKind, excerpt
from cityhub.connectors.sinks.ssrf import (
    ResolvedTarget,
    Resolver,
    UnresolvableWebhookHost,
    UnsafeWebhookUrl,
    check_webhook_url,
    system_resolver,
)

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024
DEFAULT_PIN_TTL_S = 60.0
"""How long a checked resolution is used before the URL is checked (and resolved) again."""
DEFAULT_USER_AGENT = "cityhub-webhook/1"
KEEPALIVE_S = 4.0
"""Idle pooled connections are closed after this long: below the common server idle timeouts
(Node's 5 s, many proxies'), so that a POST rarely goes out on a connection the receiver is
closing at that moment (a POST is not retried on another connection)."""
STREAM_BODY_BYTES = 512 * 1024
"""Bodies larger than this are streamed from a buffer rather than handed over as one object."""
MAX_CONNECTIONS = 10
"""Concurrent connections per sink (aiohttp's pool limit); more sends wait for one."""

_RETRIABLE_4XX = frozenset({408, 429})


def is_retriable_status(status: int) -> bool:
    """Whether an HTTP failure status is worth another attempt: 408, 429 and 5xx are."""
    return status in _RETRIABLE_4XX or status >= 500


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value (RFC 9110 10.2.3): delta-seconds
    (``"120"``) or an HTTP date (``"Wed, 21 Oct 2015 07:28:00 GMT"``, counted from ``now``, a
    POSIX time; a date in the past gives 0). None when absent or malformed."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value[:12]))  # 12 digits: 30 000 years; anything longer is noise
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; be lenient with a missing zone
        return None
    seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


class PinnedResolver(AbstractResolver):
    """aiohttp's resolver for one sink: answers only the pinned host, with exactly the addresses
    the SSRF check returned (``target``); any other name raises ``OSError``."""

    def __init__(self) -> None:
        self.target: ResolvedTarget | None = None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        target = self.target
        if target is None or host.rstrip(".").lower() != target.host:
            raise OSError(f"{host!r} is not the checked webhook host")
        results: list[ResolveResult] = []
        for address in target.addresses:
            address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family not in (socket.AF_UNSPEC, address_family):
                continue
            results.append(
                {
                    "hostname": host,
                    "host": address,
                    "port": port or target.port,
                    "family": address_family,
                    "proto": socket.IPPROTO_TCP,
                    "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                }
            )
        if not results:
            raise OSError(f"no checked address of {host!r} in address family {family!r}")
        return results

    async def close(self) -> None:
        """Nothing to release."""


class _Secrets:
    """The signing secrets, masked in every ``repr``."""

    __slots__ = ("values",)

    def __init__(self, values: tuple[str, ...]) -> None:
        self.values = values

    def __repr__(self) -> str:
        return "<webhook secret>"


class WebhookSink:
    """POSTs signed batches to one subscriber's webhook URL; see the module docstring."""

    def __init__(
        self,
        url: str,
        secret: str | Sequence[str],
        *,
        allowed_hosts: Iterable[str] = (),
        timeout: float = DEFAULT_TIMEOUT_S,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        resolver: Resolver = system_resolver,
        user_agent: str = DEFAULT_USER_AGENT,
        pin_ttl: float = DEFAULT_PIN_TTL_S,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Build a sink; nothing connects or resolves until the first :meth:`send`.

        Args:
            url: the subscriber's webhook URL (http or https).
            secret: its ``whsec_`` signing secret, or several (current first, then those being
                rotated out; each adds a signature).
            allowed_hosts: hosts exempt from the SSRF address rules (the setting
                ``subscriptions.webhook_allowed_hosts``; tests list ``127.0.0.1``).
            timeout: seconds for the whole attempt: URL check and resolution, connection,
                request, response and its (capped) body.
            max_response_bytes: the most of a response body that is read.
            resolver: resolves the host for the SSRF check (the system's ``getaddrinfo``).
            user_agent: the ``User-Agent`` header.
            pin_ttl: seconds a checked resolution is used before it is checked again.
            ssl_context: verifies https receivers (None: the system's CAs and host-name check).
            clock: monotonic seconds, for the pin's age (tests pass a fake one).

        Raises ValueError for a malformed secret (without quoting it) or bad numbers.
        """
        secrets = (secret,) if isinstance(secret, str) else tuple(secret)
        # Fail now, not on the first message: sign() validates every secret.
        webhook_signing.sign(secrets, "msg_check", 0, b"")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        if max_response_bytes < 0:
            raise ValueError(f"max_response_bytes must be >= 0, got {max_response_bytes}")
        if not (math.isfinite(pin_ttl) and pin_ttl >= 0):
            raise ValueError(f"pin_ttl must be >= 0 seconds, got {pin_ttl}")
        self._url = url
        self._secrets = _Secrets(secrets)
        self._allowed_hosts = frozenset(allowed_hosts)
        self._timeout = timeout
        self._max_response_bytes = max_response_bytes
        self._resolver = resolver
        self._user_agent = user_agent
        self._pin_ttl = pin_ttl
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._clock = clock
        self._origin = _origin(url)
        self._pinned = PinnedResolver()
        self._pinned_until = -math.inf
        self._pin_lock = asyncio.Lock()
        self._request_url: URL | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"WebhookSink({self._origin!r}, timeout={self._timeout:g})"

    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` of the URL: how messages and logs name the receiver."""
        return self._origin

    @property
    def target(self) -> ResolvedTarget | None:
        """The current pinned check result, or None before the first check or after a refusal."""
        return self._pinned.target

    async def send(
        self,
        msg_id: str,
        body: bytes,
        *,
        timestamp: int | None = None,
        content_type: str = "application/json",
        traceparent: str | None = None,
    ) -> int:
        """POST ``body`` once as ``content_type``, signed with ``msg_id`` and ``timestamp``
        (default: now, whole seconds), and return the 2xx status. ``traceparent``: the W3C
        trace context header the request carries (none when None).

        Raises :class:`DeliveryFailed` as the module docstring's table says; ValueError when
        ``msg_id`` or ``timestamp`` cannot be signed (a caller's bug); RuntimeError after
        :meth:`close`.
        """
        if self._closed:
            raise RuntimeError("the webhook sink is closed")
        when = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": content_type,
            "User-Agent": self._user_agent,
            "Accept-Encoding": "identity",
            **webhook_signing.sign(self._secrets.values, msg_id, when, body),
        }
        if traceparent is not None:
            headers["traceparent"] = traceparent
        try:
            async with asyncio.timeout(self._timeout) as scope:
                target = await self._pin()
                return await self._post(target, headers, body, scope)
        except TimeoutError:
            # Whatever was pending (connect, response, body) is abandoned with its connection;
            # a connect that hung may mean the address went away: check again next time.
            self._pinned_until = -math.inf
            raise DeliveryFailed(
                f"{self._origin} gave no complete answer within {self._timeout:g} s",
                retriable=True,
                kind=FailureKind.TIMEOUT,
            ) from None

    async def close(self) -> None:
        """Close the connection pool. Idempotent; ``send`` raises RuntimeError afterwards."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _pin(self) -> ResolvedTarget:
        target = self._pinned.target
        if target is not None and self._clock() < self._pinned_until:
            return target
        async with self._pin_lock:
            # Another send may have checked while this one waited for the lock.
            target = self._pinned.target
            if target is not None and self._clock() < self._pinned_until:
                return target
            try:
                target = await check_webhook_url(
                    self._url,
                    allowed_hosts=self._allowed_hosts,
                    resolver=self._resolver,
                    timeout_s=self._timeout,
                )
            except UnsafeWebhookUrl as exc:
                self._pinned.target = None
                raise DeliveryFailed(
                    f"{self._origin}: webhook URL refused: {exc.why}",
                    retriable=False,
                    kind=FailureKind.UNSAFE_URL,
                ) from None
            except UnresolvableWebhookHost as exc:
                raise DeliveryFailed(
                    f"{self._origin}: {exc}", retriable=True, kind=FailureKind.DNS
                ) from None
            if self._request_url is None:
                # The host as checked (IDNA ASCII, lower case), so that aiohttp asks the pinned
                # resolver for exactly that name and sends it as Host and SNI.
                url = URL(self._url).with_fragment(None)
                if url.raw_host != target.host:
                    url = url.with_host(target.host)
                self._request_url = url
            self._pinned.target = target
            self._pinned_until = self._clock() + self._pin_ttl
            return target

    def _session_for_send(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=self._pinned,
                use_dns_cache=False,  # every new connection asks the pinned resolver
                limit=MAX_CONNECTIONS,
                keepalive_timeout=KEEPALIVE_S,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),  # send() bounds the whole attempt
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                raise_for_status=False,
            )
        return self._session

    async def _post(
        self,
        target: ResolvedTarget,
        headers: dict[str, str],
        body: bytes,
        scope: asyncio.Timeout,
    ) -> int:
        session = self._session_for_send()
        assert self._request_url is not None
        try:
            # A large body goes as a stream: aiohttp would warn that sending it as one bytes
            # object may block the event loop (a batch may have up to 4 MiB).
            data = io.BytesIO(body) if len(body) > STREAM_BODY_BYTES else body
            async with session.post(
                self._request_url, data=data, headers=headers, allow_redirects=False
            ) as response:
                # The status decides the outcome; the body is only kept for the message (and
                # read so that the connection can be reused). A body that does not arrive in
                # the time left, or breaks off (shorter than its Content-Length, the connection
                # closed mid-body), does not turn a 2xx into a failure.
                deadline = scope.when()
                scope.reschedule(None)
                try:
                    async with asyncio.timeout_at(deadline):
                        head = await self._read_capped(response)
                except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                    head = b""
                    response.close()
                if 200 <= response.status < 300:
                    return response.status
                raise self._status_failure(response, head)
        except DeliveryFailed:
            raise
        except aiohttp.ClientConnectorError as exc:
            # Connecting to every pinned address failed: the host may have moved.
            self._pinned_until = -math.inf
            raise DeliveryFailed(
                f"{self._origin}: cannot connect to {', '.join(target.addresses)}: "
                f"{excerpt(str(exc.os_error))}",
                retriable=True,
                kind=FailureKind.CONNECTION,
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryFailed(
                f"{self._origin}: {type(exc).__name__}: {excerpt(str(exc))}",
                retriable=True,
                kind=FailureKind.CONNECTION,
            ) from exc

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        """Up to ``max_response_bytes`` of the body. A longer body is not read on: the
        connection is closed, so the rest is never received into memory."""
        limit = self._max_response_bytes
        chunks: list[bytes] = []
        size = 0
        # Each read returns at least one byte or b"" at the end: at most `limit` rounds.
        while size < limit:
            chunk = await response.content.read(limit - size)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        if not response.content.at_eof():
            response.close()
        return b"".join(chunks)

    def _status_failure(self, response: aiohttp.ClientResponse, head: bytes) -> DeliveryFailed:
        status = response.status
        reason = excerpt(response.reason or "", 60)
        if 300 <= status < 400:
            return DeliveryFailed(
                f"{self._origin} answered {status} {reason}: redirects are not followed; "
                "make the final URL the webhook URL",
                retriable=False,
                kind=FailureKind.REDIRECT,
                status=status,
            )
        if status == 410:
            return DeliveryFailed(
                f"{self._origin} answered 410 {reason}: the receiver takes no deliveries; they "
                "wait, in order, until it does (or the subscription is paused or deleted)",
                retriable=True,
                kind=FailureKind.GONE,
                status=status,
            )
        retriable = is_retriable_status(status)
        retry_after = (
            parse_retry_after(response.headers.get("Retry-After"), now=time.time())
            if retriable
            else None
        )
        detail = excerpt(head, EXCERPT_CHARS)
        return DeliveryFailed(
            f"{self._origin} answered {status} {reason}" + (f": {detail}" if detail else ""),
            retriable=retriable,
            kind=FailureKind.HTTP_STATUS,
            status=status,
            retry_after=retry_after,
        )


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` for messages, without user info, path or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "webhook (malformed URL)"
    if ":" in host:
        host = f"[{host}]"
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    return excerpt(origin, 120)
