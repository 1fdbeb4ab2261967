"""The secure stack's own small PKI: a CA and one server certificate for the loopback brokers.

``ensure_pki(directory) -> Pki`` is the whole API. It makes, once, in ``directory``:

- ``ca.crt`` / ``ca.key``: a self-signed CA (EC P-256, ten years), the trust anchor every client
  of the secure stack is given (``kafka.ssl_ca_file``, Mosquitto's ``cafile`` on the client side);
- ``server.crt`` / ``server.key``: one server certificate signed by that CA, for the names
  ``localhost``, ``127.0.0.1`` and ``::1`` (the only hosts the stack listens on), shared by Kafka
  and Mosquitto; it may also serve as a client certificate (Kafka's broker shows it to its own
  controller listener, which requires one);
- ``server-keystore.pem``: the server key followed by its certificate chain, the one-file PEM
  keystore Kafka reads (``ssl.keystore.type=PEM``).

Keys are PKCS#8 PEM, unencrypted (the brokers read them unattended), mode 0600, in a folder of
mode 0700; certificates are 0644. A broker that drops privileges before it reads its key needs
its own copy owned by that user: copy ``server_key`` and ``chown`` the copy, never loosen the
mode.

Called again it reuses what is there while the server certificate is signed by the CA, covers
the names, and has more than ``RENEW_BEFORE`` left; otherwise it issues a new server certificate
(and a new CA only when the CA itself is missing, broken or about to expire, since clients hold
it). Building the certificates (``new_ca``, ``new_server_certificate``) touches no disk; only
``ensure_pki`` reads and writes files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cityhub.schemas.errors import StackError

SERVER_DNS_NAMES: tuple[str, ...] = ("localhost",)
SERVER_IP_ADDRESSES: tuple[str, ...] = ("127.0.0.1", "::1")
CA_LIFETIME = dt.timedelta(days=3650)
SERVER_LIFETIME = dt.timedelta(days=397)
"""The longest lifetime browsers and most TLS stacks accept for a server certificate."""
RENEW_BEFORE = dt.timedelta(days=30)
_CLOCK_SKEW = dt.timedelta(minutes=5)
"""Certificates start a little in the past, so a client whose clock lags still accepts them."""

_CA_NAME = "cityhub local stack CA"
_SERVER_NAME = "localhost"


@dataclass(frozen=True)
class Pki:
    """Where the stack's CA and server certificate are (absolute paths, files exist)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        """The CA certificate (PEM): what clients trust."""
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """The CA's private key (PEM, 0600): only ``ensure_pki`` uses it."""
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        """The server certificate (PEM), followed by nothing: the CA is in ``ca_cert``."""
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        """The server certificate's private key (PKCS#8 PEM, unencrypted, 0600)."""
        return self.directory / "server.key"

    @property
    def server_keystore(self) -> Path:
        """Server key, server certificate, CA certificate in one PEM file (0600), for Kafka."""
        return self.directory / "server-keystore.pem"


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate with its private key, in memory."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def new_ca(now: dt.datetime, common_name: str = _CA_NAME) -> IssuedCertificate:
    """A self-signed CA certificate, valid from ``now`` (less some clock skew) for
    ``CA_LIFETIME``, that may sign only end-entity certificates (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    return IssuedCertificate(certificate, key)


def new_server_certificate(
    ca: IssuedCertificate,
    now: dt.datetime,
    dns_names: Sequence[str] = SERVER_DNS_NAMES,
    ip_addresses: Sequence[str] = SERVER_IP_ADDRESSES,
) -> IssuedCertificate:
    """A TLS server certificate signed by ``ca`` for exactly these names and addresses, valid
    from ``now`` for ``SERVER_LIFETIME`` (never past the CA's own end)."""
    key = ec.generate_private_key(ec.SECP256R1())
    public_key = key.public_key()
    not_after = min(now + SERVER_LIFETIME, ca.certificate.not_valid_after_utc)
    alternative_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    alternative_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _SERVER_NAME)]))
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # clientAuth too: Kafka's broker presents this certificate to its own controller
        # listener, which requires a client certificate (mutual TLS).
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return IssuedCertificate(certificate, key)


def certificate_is_current(
    certificate: x509.Certificate, now: dt.datetime, renew_before: dt.timedelta = RENEW_BEFORE
) -> bool:
    """Whether ``certificate`` is valid at ``now`` and stays valid for ``renew_before`` more."""
    return (
        certificate.not_valid_before_utc <= now
        and now + renew_before < certificate.not_valid_after_utc
    )


def is_signed_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca`` issued ``certificate`` (issuer name and signature both check)."""
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def covers_names(
    certificate: x509.Certificate,
    dns_names: Sequence[str] = SERVER_DNS_NAMES,
    ip_addresses: Sequence[str] = SERVER_IP_ADDRESSES,
) -> bool:
    """Whether the certificate's subject alternative names include every name and address."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    has_dns = set(dns_names) <= set(names.get_values_for_type(x509.DNSName))
    wanted_ips = {ipaddress.ip_address(ip) for ip in ip_addresses}
    return has_dns and wanted_ips <= set(names.get_values_for_type(x509.IPAddress))


def serves_both_ends(certificate: x509.Certificate) -> bool:
    """Whether the certificate may authenticate a TLS server and a TLS client (the broker is
    both: a server to clients, a client of its own controller listener)."""
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM: the form Kafka's PEM keystore, OpenSSL and Python's
    ``ssl`` all read."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_pki(directory: Path, now: dt.datetime | None = None) -> Pki:
    """The stack's CA and server certificate in ``directory``, made or renewed as needed (see
    the module docstring); the folder is created with mode 0700. Raises ``StackError`` when the
    folder cannot be written."""
    pki = Pki(Path(directory).expanduser().resolve())
    moment = now or dt.datetime.now(dt.UTC)
    try:
        pki.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(pki.directory, 0o700)
        ca = _load_current(pki.ca_cert, pki.ca_key, moment)
        if ca is None:
            ca = new_ca(moment)
            _write_private(pki.ca_key, key_pem(ca.key))
            _write_public(pki.ca_cert, certificate_pem(ca.certificate))
        server = _load_current(pki.server_cert, pki.server_key, moment)
        if (
            server is None
            or not is_signed_by(server.certificate, ca.certificate)
            or not covers_names(server.certificate)
            or not serves_both_ends(server.certificate)
            or not pki.server_keystore.is_file()
        ):
            server = new_server_certificate(ca, moment)
            _write_private(pki.server_key, key_pem(server.key))
            _write_public(pki.server_cert, certificate_pem(server.certificate))
            _write_private(
                pki.server_keystore,
                key_pem(server.key)
                + certificate_pem(server.certificate)
                + certificate_pem(ca.certificate),
            )
    except OSError as exc:
        raise StackError(
            f"cannot write the stack's certificates in {pki.directory}: {exc}"
        ) from exc
    return pki


def _load_current(cert_path: Path, key_path: Path, now: dt.datetime) -> IssuedCertificate | None:
    """The certificate and key from disk when both parse, belong together and are current."""
    if not (cert_path.is_file() and key_path.is_file()):
        return None
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if certificate.public_key() != key.public_key():
        return None
    if not certificate_is_current(certificate, now):
        return None
    return IssuedCertificate(certificate, key)


def _write_private(path: Path, content: bytes) -> None:
    """Write a secret: created 0600 before any byte is in it, replaced atomically."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
    os.replace(temporary, path)


def _write_public(path: Path, content: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(content)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
