"""The pure SSRF rules (``connectors/sinks/ssrf_rules.py``) where they stand in for the socket
module: an IPv4 number in any form ``inet_aton`` reads is read as ``inet_aton`` reads it (the
refusal names what clients would call), and refused where it refuses."""

from __future__ import annotations

import ipaddress
import random
import socket

import pytest

from cityhub.connectors.sinks.ssrf_rules import UnsafeWebhookUrl, _aton, check_before_resolving


def inet_aton(host: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(socket.inet_aton(host)))
    except OSError:
        return None


def pure(host: str) -> str | None:
    try:
        return _aton(host)
    except OSError:
        return None


EDGES = [
    "127.1", "0x7f.1", "2130706433", "010.0.0.1", "0X7F.0.0.1", "0x7f000001", "1.2.3", "0",
    "00", "0x", "08", "1.2.3.4.5", "256.1", "1.16777215", "1.16777216", "4294967295",
    "4294967296", "1..2", ".1", "1.", "0x1g", "1_0", "+1", "-1", "0.0.0.0",
]  # fmt: skip


def generated(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    hosts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 4)):
            value = rng.choice([rng.randint(0, 300), rng.randint(0, 2**32)])
            parts.append(rng.choice([str(value), f"0{value:o}", f"0x{value:x}", f"0X{value:X}"]))
        hosts.append(".".join(parts))
    return hosts


def test_an_ipv4_number_is_read_as_inet_aton_reads_it() -> None:
    hosts = EDGES + generated(5000, seed=20261203)
    differ = [(h, pure(h), inet_aton(h)) for h in hosts if pure(h) != inet_aton(h)]
    assert differ == []
    assert sum(inet_aton(h) is None for h in hosts) > 100  # refusals were exercised too


def test_a_numeric_host_is_refused_naming_the_address_clients_would_call() -> None:
    with pytest.raises(UnsafeWebhookUrl, match=r"read as 127\.0\.0\.1"):
        check_before_resolving("http://0x7f.1/hook")
    target, *_ = check_before_resolving("https://127.0.0.1/hook", frozenset({"127.0.0.1"}))
    assert target is not None
    assert target.addresses == ("127.0.0.1",)
