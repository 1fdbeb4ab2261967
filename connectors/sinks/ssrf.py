"""SSRF checks of webhook URLs: a subscriber's URL must not make cityhub call inside the city's
network (a database's HTTP port, a cloud metadata service, the Kafka REST proxy).

``check_webhook_url`` parses the URL strictly, refuses names that only mean something inside a
network, resolves the host and refuses it if *any* of its addresses is not a public unicast
one (``classify_address``). It returns the checked addresses: the HTTP client must connect to
one of exactly those (pinning), sending ``ResolvedTarget.host`` as Host and TLS server name;
resolving again at connect time would let a DNS answer with a short TTL change between the
check and the connection (DNS rebinding). Redirects are the delivery task's to refuse.

Hosts in ``allowed_hosts`` (a setting, empty by default) skip the address rules, so tests can
deliver to 127.0.0.1; an IP address in it also exempts that address when a name resolves to it.

The rules are pure and live in ``ssrf_rules.py`` (under the purity contract of ``make lint``);
this module adds the resolver between them. Its names are re-exported here.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Sequence

from cityhub.connectors.sinks.ssrf_rules import (
    Address,
    ResolvedTarget,
    UnresolvableWebhookHost,
    UnsafeWebhookUrl,
    check_before_resolving,
    check_resolved,
    classify_address,
    classify_host_name,
    normalise_host,
)

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(ASCII host name, port) -> IP addresses as text``; raises OSError when it does not resolve."""

DEFAULT_RESOLVE_TIMEOUT_S = 5.0


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the event loop's ``getaddrinfo`` (TCP), as the HTTP client would."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


async def check_webhook_url(
    url: str,
    *,
    allowed_hosts: frozenset[str] = frozenset(),
    resolver: Resolver = system_resolver,
    timeout_s: float = DEFAULT_RESOLVE_TIMEOUT_S,
) -> ResolvedTarget:
    """Check that cityhub may POST to ``url`` and return where to connect.

    Refuses (``UnsafeWebhookUrl``) a scheme other than http or https, user info, a missing
    host, control characters, backslashes or ``%`` in the host, a malformed port or port 0, a
    host that is not valid IDNA, a non-canonical IPv4 literal (``2130706433``, ``0x7f.1``,
    ``127.1``, ``010.0.0.1``: what ``inet_aton`` accepts and ``ipaddress`` does not), a blocked
    name (``classify_host_name``), and any host that is, or resolves to any address that is, not
    public (``classify_address``). Raises ``UnresolvableWebhookHost`` when the name does not
    resolve within ``timeout_s``. Hosts in ``allowed_hosts`` skip the name and address rules,
    not the syntax ones.
    """
    target, scheme, host, port, allowed, listed = check_before_resolving(url, allowed_hosts)
    if target is not None:
        return target
    try:
        async with asyncio.timeout(timeout_s):
            answers = await resolver(host, port)
    except TimeoutError:
        raise UnresolvableWebhookHost(f"{host!r} did not resolve within {timeout_s:g} s") from None
    except OSError as exc:
        raise UnresolvableWebhookHost(f"{host!r} does not resolve: {exc}") from None
    return check_resolved(url, scheme, host, port, answers, allowed=allowed, listed=listed)


__all__ = [
    "DEFAULT_RESOLVE_TIMEOUT_S",
    "Address",
    "ResolvedTarget",
    "Resolver",
    "UnresolvableWebhookHost",
    "UnsafeWebhookUrl",
    "check_webhook_url",
    "classify_address",
    "classify_host_name",
    "normalise_host",
    "system_resolver",
]
