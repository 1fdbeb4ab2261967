"""SSRF checks of webhook URLs. A fake resolver stands in for DNS: no test looks a name up."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from cityhub.connectors.sinks.ssrf import (
    ResolvedTarget,
    UnresolvableWebhookHost,
    UnsafeWebhookUrl,
    check_webhook_url,
    classify_address,
    normalise_host,
)


class FakeDns:
    """Answers from a table; records what was asked. An unknown name does not resolve."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append((host, port))
        if host not in self.table:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return self.table[host]


DNS = FakeDns(
    {
        "hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
        "rebind.example.com": ["93.184.215.14", "10.0.0.5"],
        "v6-private.example.com": ["fd12:3456:789a::1"],
        "mapped.example.com": ["::ffff:169.254.169.254"],
        "xn--bcher-kva.example": ["93.184.215.15"],
        "twice.example.com": ["93.184.215.16", "93.184.215.16"],
        "empty.example.com": [],
        "garbage.example.com": ["not-an-ip"],
        "myhost.example.com": ["127.0.0.1"],
    }
)


def fullwidth(text: str) -> str:
    """The text in fullwidth forms (U+FF01..), which NFKC maps back to ASCII."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


async def check(url: str, **kwargs: object) -> ResolvedTarget:
    return await check_webhook_url(url, resolver=DNS, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.255", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "private"),
        ("fd00:ec2::254", "private"),  # AWS's IPv6 metadata address
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback address inside an IPv6"),
        ("::ffff:10.1.2.3", "private address inside an IPv6"),
        ("::ffff:169.254.169.254", "link-local address (cloud metadata lives here) inside"),
        ("64:ff9b::a00:1", "private address inside an IPv6"),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::", "loopback address inside an IPv6"),  # 6to4 of 127.0.0.1
        ("2001:db8::1", "documentation"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("100::1", "discard"),
        ("4000::1", "outside IPv6 global unicast"),
    ],
)
def test_addresses_that_are_refused(ip: str, reason: str) -> None:
    found = classify_address(ip)
    assert found is not None
    assert reason in found


@pytest.mark.parametrize(
    "ip",
    ["93.184.215.14", "8.8.8.8", "100.128.0.1", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8"],
)
def test_public_addresses_pass(ip: str) -> None:
    assert classify_address(ip) is None


def test_not_an_address() -> None:
    with pytest.raises(ValueError):
        classify_address("localhost")


async def test_a_public_name_resolves_and_is_pinned() -> None:
    target = await check("https://hooks.example.com/in?x=1")
    assert target.scheme == "https"
    assert target.host == "hooks.example.com"
    assert target.port == 443
    assert target.addresses == ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    assert target.address == "93.184.215.14"
    assert not target.allow_listed


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("http://hooks.example.com/", "hooks.example.com", 80),
        ("HTTPS://HOOKS.Example.COM:8443/x", "hooks.example.com", 8443),
        ("https://hooks.example.com./", "hooks.example.com", 443),  # trailing dot
        ("https://" + fullwidth("hooks") + ".example.com/", "hooks.example.com", 443),
        ("https://bücher.example/", "xn--bcher-kva.example", 443),  # IDNA
        ("https://twice.example.com/", "twice.example.com", 443),
    ],
)
async def test_hosts_are_normalised(url: str, host: str, port: int) -> None:
    target = await check(url)
    assert (target.host, target.port) == (host, port)
    assert len(set(target.addresses)) == len(target.addresses)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://hooks.example.com/", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://hooks.example.com/", "only http and https"),
        ("https:///path", "no host"),
        ("https://user:pw@hooks.example.com/", "user info"),
        ("https://hooks.example.com@127.0.0.1/", "user info"),
        ("https://hooks.example.com\\@127.0.0.1/", "user info"),
        ("https://hooks.example.com:99999/", "not a valid URL"),
        ("https://hooks.example.com:0/", "port 0"),
        ("https://hooks.example.com:-1/", "not a valid URL"),
        ("https://hooks .example.com/", "spaces or control"),
        ("https://hooks.example.com/\r\nX-Injected: 1", "spaces or control"),
        ("http://127.0.0.1/", "127.0.0.1 is a loopback address"),
        ("http://127.0.0.1.:8080/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback address inside an IPv6"),
        ("http://[::ffff:7f00:1]/", "loopback address inside an IPv6"),
        ("http://[fe80::1%25eth0]/", "percent"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.5:9092/", "private"),
        ("http://2130706433/", "127.0.0.1"),  # decimal
        ("http://0x7f.1/", "127.0.0.1"),  # hex + short form
        ("http://0x7f000001/", "127.0.0.1"),
        ("http://017700000001/", "127.0.0.1"),  # octal
        ("http://127.1/", "127.0.0.1"),
        ("http://010.0.0.1/", "not a canonical dotted-quad"),  # octal 8.0.0.1 for inet_aton
        ("http://99999999999/", "not a canonical dotted-quad"),
        ("http://" + fullwidth("127.0.0.1") + "/", "loopback"),
        ("http://127。0。0。1/", "loopback"),  # ideographic full stops
        ("http://localhost/", "localhost"),
        ("http://localhost./", "localhost"),
        ("http://LOCALHOST:8080/", "localhost"),
        ("http://" + fullwidth("localhost") + "/", "localhost"),
        ("http://api.localhost/", "localhost"),
        ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata"),
        ("http://metadata.google.internal./", "cloud metadata"),
        ("http://metadata/", "single-label"),
        ("http://kafka:9092/", "single-label"),
        ("http://printer.local/", "private-use"),
        ("http://db.corp.internal/", "private-use"),
        ("http://router.home.arpa/", "private-use"),
        ("http://rebind.example.com/", "resolves to 10.0.0.5, a private address"),
        ("http://v6-private.example.com/", "resolves to fd12:3456:789a::1"),
        ("http://mapped.example.com/", "link-local"),
        ("http://garbage.example.com/", "not an address"),
        ("http://under_score..example.com/", "1 to 63 characters"),
        ("http://exa$mple.com/", "letters, digits"),
        ("http://xn--.example/", "not valid punycode"),
        ("http://" + "a" * 64 + ".example.com/", "1 to 63 characters"),
        ("http://" + "a." * 127 + "com/", "1 to 253 characters"),
        ("http://" + "ü" * 64 + ".example.com/", "international"),
    ],
)
async def test_urls_that_are_refused(url: str, why: str) -> None:
    with pytest.raises(UnsafeWebhookUrl, match="refused") as error:
        await check(url)
    assert why in error.value.why, error.value.why
    assert error.value.url == url
    assert not error.value.retriable


async def test_refused_names_are_not_even_looked_up() -> None:
    dns = FakeDns({})
    for url in ("http://localhost/", "http://2130706433/", "http://127.0.0.1/"):
        with pytest.raises(UnsafeWebhookUrl):
            await check_webhook_url(url, resolver=dns)
    assert dns.asked == []


@pytest.mark.parametrize("url", ["http://nowhere.example.com/", "http://empty.example.com/"])
async def test_names_that_do_not_resolve_are_retriable(url: str) -> None:
    with pytest.raises(UnresolvableWebhookHost) as error:
        await check(url)
    assert error.value.retriable


async def test_a_slow_resolver_times_out() -> None:
    async def hang(host: str, port: int) -> list[str]:
        await asyncio.sleep(10)
        return []

    with pytest.raises(UnresolvableWebhookHost, match="within"):
        await check_webhook_url("http://slow.example.com/", resolver=hang, timeout_s=0.01)


@pytest.mark.parametrize(
    ("url", "allowed", "addresses"),
    [
        ("http://127.0.0.1:8080/hook", {"127.0.0.1"}, ("127.0.0.1",)),
        ("http://[::1]:8080/hook", {"::1"}, ("::1",)),
        ("http://[::1]:8080/hook", {"[::1]"}, ("::1",)),
        ("http://myhost.example.com/", {"myhost.example.com"}, ("127.0.0.1",)),
        ("http://myhost.example.com/", {"MyHost.Example.com."}, ("127.0.0.1",)),
        ("http://myhost.example.com/", {"127.0.0.1"}, ("127.0.0.1",)),  # an allowed address
    ],
)
async def test_the_allow_list_exempts_listed_hosts(
    url: str, allowed: set[str], addresses: tuple[str, ...]
) -> None:
    target = await check(url, allowed_hosts=frozenset(allowed))
    assert target.addresses == addresses


async def test_the_allow_list_is_off_by_default_and_exact() -> None:
    with pytest.raises(UnsafeWebhookUrl):
        await check("http://127.0.0.1:8080/")
    with pytest.raises(UnsafeWebhookUrl):
        await check("http://127.0.0.2:8080/", allowed_hosts=frozenset({"127.0.0.1"}))
    with pytest.raises(UnsafeWebhookUrl, match=r"10\.0\.0\.5"):
        # An allowed address exempts only itself, not the others of a name.
        await check("http://rebind.example.com/", allowed_hosts=frozenset({"93.184.215.14"}))
    with pytest.raises(UnsafeWebhookUrl, match="user info"):
        # Syntax rules apply to allowed hosts too.
        await check("http://u@127.0.0.1/", allowed_hosts=frozenset({"127.0.0.1"}))


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("Example.COM.", "example.com"), ("bücher.example", "xn--bcher-kva.example")],
)
def test_normalise_host(raw: str, normal: str) -> None:
    assert normalise_host(raw) == normal


async def test_the_system_resolver_on_loopback_only() -> None:
    # The one test with the real resolver: localhost is answered from /etc/hosts, no DNS.
    target = await check_webhook_url(
        "http://localhost:9/hook", allowed_hosts=frozenset({"localhost"})
    )
    assert target.allow_listed
    assert all(classify_address(a) == "a loopback address" for a in target.addresses)
