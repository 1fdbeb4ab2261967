"""The SSRF rules of webhook URLs, apart from DNS: which URLs, host names and addresses cityhub
refuses to call, and why. Pure: no I/O, no resolver, no clock; ``connectors/sinks/ssrf.py``
resolves the host between :func:`check_before_resolving` and :func:`check_resolved`.

The rules: the URL parses strictly (http or https, no user info, no control characters,
backslashes or ``%`` in the host, a valid port and IDNA name), a host written as an IPv4 number
in a form ``inet_aton`` reads and ``ipaddress`` does not (``2130706433``, ``0x7f.1``, ``127.1``)
is refused, names that only mean something inside a network are refused
(``classify_host_name``), and every address the host is or resolves to must be public unicast
(``classify_address``). Hosts in ``allowed_hosts`` skip the name and address rules (tests
deliver to 127.0.0.1), not the syntax ones.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cityhub.schemas.errors import CityhubError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeWebhookUrl(CityhubError):
    """A webhook URL cityhub refuses to call; the message says why and what would be accepted.
    Never retriable: the same URL is refused again."""

    def __init__(self, url: str, why: str) -> None:
        super().__init__(f"webhook url {url!r} refused: {why}")
        self.url = url
        self.why = why


class UnresolvableWebhookHost(CityhubError):
    """The webhook's host did not resolve (or not in time). Retriable: DNS may recover."""

    retriable = True


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    """A checked webhook URL and the addresses the HTTP client may connect to."""

    url: str
    scheme: str
    host: str
    """Lower-case ASCII (IDNA) host without a trailing dot, or the IP address as text."""
    port: int
    addresses: tuple[str, ...]
    """Every address the host resolved to, in resolver order; all passed the checks."""
    allow_listed: bool = False
    """True when ``allowed_hosts`` exempted the host from the address rules."""

    @property
    def address(self) -> str:
        """The address to connect to first."""
        return self.addresses[0]


_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Checked in order; the first match names the reason. From the IANA special-purpose registries
# (written out rather than taken from ipaddress.is_private & co., whose definitions changed
# between Python versions).
_IPV4_RULES: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "an unspecified ('this network') address"),
    (_V4("10.0.0.0/8"), "a private address"),
    (_V4("100.64.0.0/10"), "a carrier-grade NAT address"),
    (_V4("127.0.0.0/8"), "a loopback address"),
    (_V4("169.254.0.0/16"), "a link-local address (cloud metadata lives here)"),
    (_V4("172.16.0.0/12"), "a private address"),
    (_V4("192.0.0.0/24"), "a reserved address (IETF protocol assignments)"),
    (_V4("192.0.2.0/24"), "a reserved address (documentation)"),
    (_V4("192.88.99.0/24"), "a reserved address (6to4 relay anycast)"),
    (_V4("192.168.0.0/16"), "a private address"),
    (_V4("198.18.0.0/15"), "a reserved address (benchmarking)"),
    (_V4("198.51.100.0/24"), "a reserved address (documentation)"),
    (_V4("203.0.113.0/24"), "a reserved address (documentation)"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V4("240.0.0.0/4"), "a reserved address (including broadcast)"),
)

_IPV6_RULES: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "an unspecified address"),
    (_V6("::1/128"), "a loopback address"),
    (_V6("::/96"), "a reserved address (IPv4-compatible IPv6)"),
    (_V6("64:ff9b:1::/48"), "a private address (local-use NAT64)"),
    (_V6("100::/64"), "a reserved address (discard-only)"),
    (_V6("2001::/23"), "a reserved address (IETF protocol assignments, Teredo)"),
    (_V6("2001:db8::/32"), "a reserved address (documentation)"),
    (_V6("3fff::/20"), "a reserved address (documentation)"),
    (_V6("5f00::/16"), "a reserved address (segment routing)"),
    (_V6("fc00::/7"), "a private (unique local) address"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a private (site-local) address"),
    (_V6("ff00::/8"), "a multicast address"),
)
_GLOBAL_UNICAST_V6 = _V6("2000::/3")
_NAT64 = _V6("64:ff9b::/96")

_BLOCKED_NAMES = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "instance-data.ec2.internal",
        "kubernetes.default.svc",
    }
)
_BLOCKED_SUFFIXES = (
    ".localhost",
    ".local",
    ".localdomain",
    ".internal",
    ".intranet",
    ".lan",
    ".home.arpa",
    ".corp",
    ".cluster.local",
    ".svc",
)
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def classify_address(ip: str | Address) -> str | None:
    """Why cityhub may not call this address (e.g. ``"a private address"``), or None when it is
    a public unicast address. IPv4-mapped, NAT64 and 6to4 IPv6 addresses are judged by the
    IPv4 address inside them; IPv6 outside global unicast (2000::/3) is refused as reserved.
    Raises ValueError when ``ip`` is not an IP address."""
    address = ipaddress.ip_address(ip.split("%", 1)[0] if isinstance(ip, str) else ip)
    if isinstance(address, ipaddress.IPv4Address):
        for network, reason in _IPV4_RULES:
            if address in network:
                return reason
        return None
    embedded = address.ipv4_mapped or address.sixtofour
    if embedded is None and address in _NAT64:
        embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if embedded is not None:
        inner = classify_address(embedded)
        return None if inner is None else f"{inner} inside an IPv6 address"
    for network6, reason in _IPV6_RULES:
        if address in network6:
            return reason
    if address not in _GLOBAL_UNICAST_V6:
        return "a reserved address (outside IPv6 global unicast)"
    return None


def classify_host_name(host: str) -> str | None:
    """Why a (normalised, ASCII, lower-case) host *name* is refused before any DNS look-up,
    or None: ``localhost``, cloud metadata names, private-use suffixes (``.internal``,
    ``.local``, ...) and single-label names, which resolve through the search domains of
    cityhub's own network."""
    if host == "localhost" or host.endswith(".localhost"):
        return "a localhost name (loopback)"
    if host in _BLOCKED_NAMES:
        return "a cloud metadata or cluster-internal name"
    if host.endswith(_BLOCKED_SUFFIXES):
        return "a private-use domain name"
    if "." not in host:
        return (
            "a single-label name, which resolves inside cityhub's network; use a full domain name"
        )
    return None


def check_before_resolving(
    url: str, allowed_hosts: frozenset[str] = frozenset()
) -> tuple[ResolvedTarget | None, str, str, int, frozenset[str], bool]:
    """The checks that need no DNS. Returns ``(target, scheme, host, port, allowed, listed)``:
    ``target`` is the final answer when the host is an IP literal, else None and the host must
    be resolved and its addresses passed to :func:`check_resolved`. Raises ``UnsafeWebhookUrl``.
    """
    scheme, host, port = _parse(url)
    allowed = _normalise_allowed(allowed_hosts)
    listed = host in allowed
    literal = _ip_literal(host)
    if literal is not None:
        reason = None if listed else classify_address(literal)
        if reason is not None:
            raise UnsafeWebhookUrl(url, f"{literal} is {reason}")
        target = ResolvedTarget(url, scheme, host, port, (str(literal),), allow_listed=listed)
        return target, scheme, host, port, allowed, listed
    _refuse_numeric_host(url, host)
    if not listed:
        reason = classify_host_name(host)
        if reason is not None:
            raise UnsafeWebhookUrl(url, f"{host!r} is {reason}")
    return None, scheme, host, port, allowed, listed


def check_resolved(
    url: str,
    scheme: str,
    host: str,
    port: int,
    answers: Iterable[str],
    *,
    allowed: frozenset[str],
    listed: bool,
) -> ResolvedTarget:
    """The target once ``host`` resolved to ``answers``: every address must be public unless
    allowed. Raises ``UnsafeWebhookUrl``, or ``UnresolvableWebhookHost`` for no address."""
    addresses = _unique_addresses(url, answers)
    if not addresses:
        raise UnresolvableWebhookHost(f"{host!r} resolved to no address")
    if not listed:
        for address in addresses:
            if address in allowed:
                continue
            reason = classify_address(address)
            if reason is not None:
                raise UnsafeWebhookUrl(url, f"{host!r} resolves to {address}, {reason}")
    return ResolvedTarget(url, scheme, host, port, tuple(addresses), allow_listed=listed)


def normalise_host(host: str) -> str:
    """A host as the checks compare it: Unicode NFKC, IDNA (2003, with nameprep) to ASCII,
    lower case, one trailing dot removed. Raises ValueError when it is not a valid name."""
    host = unicodedata.normalize("NFKC", host).strip()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"not a valid international domain name: {exc}") from None
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    return host


def _parse(url: str) -> tuple[str, str, int]:
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise UnsafeWebhookUrl(url, "it contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeWebhookUrl(url, f"it is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeWebhookUrl(url, "only http and https URLs are accepted")
    if "@" in parts.netloc:
        raise UnsafeWebhookUrl(url, "user info (user:password@) is not accepted in a webhook URL")
    if "\\" in parts.netloc:
        raise UnsafeWebhookUrl(url, "a backslash in the host is read differently by clients")
    raw_host = parts.hostname
    if not raw_host:
        raise UnsafeWebhookUrl(url, "it has no host")
    if "%" in raw_host:
        raise UnsafeWebhookUrl(url, "percent signs (IPv6 zone ids, escapes) are not accepted")
    if port == 0:
        raise UnsafeWebhookUrl(url, "port 0 is not a port to connect to")
    if parts.netloc.startswith("[") or ":" in raw_host:
        host = raw_host.lower()
    else:
        try:
            host = normalise_host(raw_host)
        except ValueError as exc:
            raise UnsafeWebhookUrl(url, str(exc)) from None
        why = _host_name_problem(host)
        if why is not None:
            raise UnsafeWebhookUrl(url, f"{host!r} is not a valid host name: {why}")
    return scheme, host, port if port is not None else (443 if scheme == "https" else 80)


def _host_name_problem(host: str) -> str | None:
    if not host or len(host) > 253:
        return "a name has 1 to 253 characters"
    if not set(host) <= _HOST_CHARS:
        return "letters, digits, '-', '_' and '.' only"
    for label in host.split("."):
        if not 1 <= len(label) <= 63:
            return "each label has 1 to 63 characters"
        if label.startswith("xn--"):
            try:
                decoded = label[4:].encode("ascii").decode("punycode")
            except UnicodeError:
                decoded = ""
            if not decoded:
                return f"{label!r} is not valid punycode"
    return None


def _ip_literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _refuse_numeric_host(url: str, host: str) -> None:
    # No top-level domain is numeric, so a last label of digits (or 0x...) is an IPv4 literal in
    # a form that inet_aton (what getaddrinfo uses) accepts and ipaddress does not.
    last = host.rsplit(".", 1)[-1]
    if last.isdigit() or last.startswith("0x"):
        try:
            meaning = f", which clients read as {_aton(host)}"
        except OSError:
            meaning = ""
        raise UnsafeWebhookUrl(
            url, f"{host!r} is not a canonical dotted-quad IPv4 address{meaning}"
        )


_ATON_PART = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+")


def _aton(host: str) -> str:
    """The IPv4 address ``inet_aton`` reads in ``host``: one to four parts, each decimal, octal
    (a leading 0) or hexadecimal (0x), the last one filling the bytes left. Raises OSError
    where ``inet_aton`` fails, as ``socket.inet_aton`` does."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_ATON_PART.fullmatch(p) for p in parts):
        raise OSError(f"{host!r} is not an IPv4 number")
    values = []
    for part in parts:
        if part[:2] in ("0x", "0X"):
            values.append(int(part[2:], 16))
        elif len(part) > 1 and part[0] == "0":
            if not set(part) <= set("01234567"):
                raise OSError(f"{part!r} is not octal")
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        raise OSError(f"{host!r} is out of range")
    number = 0
    for value in head:
        number = number * 256 + value
    return str(ipaddress.IPv4Address(number * 256 ** (4 - len(head)) + last))


def _normalise_allowed(hosts: Iterable[str]) -> frozenset[str]:
    normalised = set()
    for entry in hosts:
        literal = _ip_literal(entry.strip().strip("[]"))
        normalised.add(str(literal) if literal is not None else normalise_host(entry))
    return frozenset(normalised)


def _unique_addresses(url: str, answers: Iterable[str]) -> list[str]:
    addresses: list[str] = []
    for answer in answers:
        try:
            address = str(ipaddress.ip_address(answer.split("%", 1)[0]))
        except ValueError:
            raise UnsafeWebhookUrl(
                url, f"the resolver returned {answer!r}, not an address"
            ) from None
        if address not in addresses:
            addresses.append(address)
    return addresses
