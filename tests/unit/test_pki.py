"""The secure stack's PKI: the certificates verify with Python's own TLS stack for the loopback
names, keys are private, and a second call reuses or renews as promised."""

from __future__ import annotations

import datetime as dt
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from cityhub.streams.devtools.stack.pki import (
    SERVER_LIFETIME,
    covers_names,
    ensure_pki,
    is_signed_by,
    new_ca,
    new_server_certificate,
    serves_both_ends,
)

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_exist_and_secrets_are_0600(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki")
    assert _mode(pki.directory) == 0o700
    for secret in (pki.ca_key, pki.server_key, pki.server_keystore):
        assert _mode(secret) == 0o600, secret
    for public in (pki.ca_cert, pki.server_cert):
        assert _mode(public) == 0o644, public


def test_python_ssl_accepts_the_pair_and_trusts_the_ca(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pki.server_cert, pki.server_key)  # raises if key and cert differ
    client = ssl.create_default_context(cafile=str(pki.ca_cert))
    assert client.get_ca_certs()[0]["subject"] == ((("commonName", "cityhub local stack CA"),),)


def test_server_certificate_names_the_loopback_hosts(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    cert = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    assert is_signed_by(cert, ca)
    assert covers_names(cert, ["localhost"], ["127.0.0.1", "::1"])
    assert not covers_names(cert, ["example.org"], [])


def test_keystore_holds_key_then_chain(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    text = pki.server_keystore.read_text()
    assert text.index("BEGIN PRIVATE KEY") < text.index("BEGIN CERTIFICATE")
    assert text.count("BEGIN CERTIFICATE") == 2


def test_second_call_reuses_everything(tmp_path: Path) -> None:
    first = ensure_pki(tmp_path)
    before = {p: p.read_bytes() for p in (first.ca_cert, first.server_cert, first.server_key)}
    ensure_pki(tmp_path)
    assert {p: p.read_bytes() for p in before} == before


def test_expiring_server_certificate_is_renewed_under_the_same_ca(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, now=NOW)
    ca_before = pki.ca_cert.read_bytes()
    server_before = pki.server_cert.read_bytes()
    ensure_pki(tmp_path, now=NOW + SERVER_LIFETIME - dt.timedelta(days=1))
    assert pki.ca_cert.read_bytes() == ca_before
    assert pki.server_cert.read_bytes() != server_before


def test_a_new_ca_reissues_the_server_certificate(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    pki.ca_key.write_text("garbage")
    ensure_pki(tmp_path)
    cert = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    assert is_signed_by(cert, ca)


def test_another_ca_does_not_vouch_for_the_server() -> None:
    ca = new_ca(NOW)
    stranger = new_ca(NOW)
    server = new_server_certificate(ca, NOW)
    assert is_signed_by(server.certificate, ca.certificate)
    assert not is_signed_by(server.certificate, stranger.certificate)


def test_server_certificate_never_outlives_its_ca() -> None:
    ca = new_ca(NOW - dt.timedelta(days=3640))
    server = new_server_certificate(ca, NOW)
    assert server.certificate.not_valid_after_utc == ca.certificate.not_valid_after_utc


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1", "::1"])
def test_tls_handshake_verifies_each_loopback_name(tmp_path: Path, hostname: str) -> None:
    pki = ensure_pki(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(pki.server_cert, pki.server_key)
    client_context = ssl.create_default_context(cafile=str(pki.ca_cert))
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(client_in, client_out, server_hostname=hostname)
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):  # a TLS 1.3 handshake needs two or three round trips
        for name, side in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if all(done.values()):
            break
    assert all(done.values())
    assert client.getpeercert() is not None


def test_server_certificate_may_authenticate_both_ends(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    cert = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    assert serves_both_ends(cert)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    assert not serves_both_ends(ca)
