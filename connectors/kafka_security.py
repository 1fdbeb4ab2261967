"""Pure mapping from ``KafkaSettings`` to what an aiokafka client needs to connect securely.

Pure: no file is read and no TLS context is built here; ``cityhub.connectors.kafka_clients``
reads the secret files, builds the ``ssl.SSLContext`` from ``tls_plan`` and makes the clients.
Keeping the mapping apart lets the unit tests check every protocol and mechanism without a
broker, and keeps the one place that names aiokafka's security arguments small.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from cityhub.schemas.kafka_settings import SASL_PROTOCOLS, TLS_PROTOCOLS, KafkaSettings

COMPONENTS: tuple[str, ...] = ("bridge", "worker", "delivery", "api", "history")
"""The hub's processes that log in to Kafka each as a user of their own (``cityhub run``)."""

ADMIN_COMPONENT = "admin"
"""The operator's user: topic creation, ``tail``, the CLI. Never given to a running child."""


@dataclass(frozen=True, slots=True)
class TlsPlan:
    """What the TLS context is made of: the files to load and whether host names are checked."""

    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    key_password: SecretStr | None
    key_password_file: Path | None
    check_hostname: bool


@dataclass(frozen=True, slots=True)
class SaslLogin:
    """Who the client logs in as; the password is given inline or as a file to read."""

    mechanism: str
    username: str
    password: SecretStr | None
    password_file: Path | None


def tls_plan(kafka: KafkaSettings) -> TlsPlan | None:
    """The TLS context to build, or None when the protocol has no TLS."""
    if kafka.security_protocol not in TLS_PROTOCOLS:
        return None
    return TlsPlan(
        ca_file=kafka.ssl_ca_file,
        cert_file=kafka.ssl_cert_file,
        key_file=kafka.ssl_key_file,
        key_password=kafka.ssl_key_password,
        key_password_file=kafka.ssl_key_password_file,
        check_hostname=kafka.ssl_check_hostname,
    )


def sasl_login(kafka: KafkaSettings) -> SaslLogin | None:
    """The SASL login, or None when the protocol does not log in. The settings' own check
    guarantees a mechanism, a user name and a password source for the SASL protocols."""
    if kafka.security_protocol not in SASL_PROTOCOLS:
        return None
    if kafka.sasl_mechanism is None or kafka.sasl_username is None:
        raise ValueError("a SASL protocol without mechanism or user: KafkaSettings checks this")
    return SaslLogin(
        mechanism=kafka.sasl_mechanism,
        username=kafka.sasl_username,
        password=kafka.sasl_password,
        password_file=kafka.sasl_password_file,
    )


def client_security_kwargs(kafka: KafkaSettings, *, sasl_password: str | None) -> dict[str, str]:
    """aiokafka's security keyword arguments for these settings, all but ``ssl_context`` (which
    the caller builds from ``tls_plan``): ``security_protocol`` always, and the SASL login for
    the SASL protocols, with ``sasl_password`` (read by the caller from wherever it is)."""
    kwargs: dict[str, str] = {"security_protocol": kafka.security_protocol}
    login = sasl_login(kafka)
    if login is not None:
        if sasl_password is None:
            raise ValueError("a SASL login needs its password")
        kwargs |= {
            "sasl_mechanism": login.mechanism,
            "sasl_plain_username": login.username,
            "sasl_plain_password": sasl_password,
        }
    return kwargs


def secret_from_file_text(text: str) -> str:
    """A secret as a file holds it: the text without its trailing line break (editors and
    ``echo`` add one; Kubernetes Secrets have none)."""
    return text.removesuffix("\n").removesuffix("\r")


def credential_paths(directory: Path, component: str) -> tuple[Path, Path]:
    """Where ``component``'s user name and password are in a credentials folder."""
    return directory / f"{component}.username", directory / f"{component}.password"


def component_login_env(username: str, password_file: Path) -> dict[str, str]:
    """The environment that makes a cityhub process log in as this user (the password stays in
    its file: an environment is easier to leak than a file of mode 0600)."""
    return {
        "CITYHUB_KAFKA__SASL_USERNAME": username,
        "CITYHUB_KAFKA__SASL_PASSWORD_FILE": str(password_file),
    }


def client_settings_env(
    *,
    bootstrap_servers: str,
    ca_file: Path,
    mechanism: str,
    username: str,
    password_file: Path,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every ``CITYHUB_KAFKA__*`` a process needs to reach a SASL_SSL cluster as ``username``:
    what ``cityhub stack up --secure`` writes into each component's ``.env`` file."""
    return {
        "CITYHUB_KAFKA__BOOTSTRAP_SERVERS": bootstrap_servers,
        "CITYHUB_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "CITYHUB_KAFKA__SSL_CA_FILE": str(ca_file),
        "CITYHUB_KAFKA__SASL_MECHANISM": mechanism,
        **component_login_env(username, password_file),
        **(extra or {}),
    }
