"""The only place cityhub makes aiokafka clients: one factory per kind, security included.

``kafka_producer``, ``kafka_consumer`` and ``kafka_admin`` take the ``KafkaSettings`` and the
client's own options; they add the bootstrap servers and everything ``security_protocol`` asks
for (the TLS context, the SASL login with its password read from its file), so that no call site
can forget them. ``tests/unit/test_kafka_security_sites.py`` fails when a module makes an
aiokafka client any other way.

The mapping itself is pure and lives in ``cityhub.connectors.kafka_security``; this module does
the I/O around it: it reads the secret files and loads certificates and keys into an
``ssl.SSLContext``.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

from cityhub.connectors.kafka_security import (
    TlsPlan,
    client_security_kwargs,
    component_login_env,
    credential_paths,
    sasl_login,
    secret_from_file_text,
    tls_plan,
)
from cityhub.schemas.errors import ConfigurationError
from cityhub.schemas.settings import KafkaSettings


def kafka_producer(kafka: KafkaSettings, **options: Any) -> AIOKafkaProducer:
    """A producer for ``kafka``'s cluster with its security; ``options`` are aiokafka's
    (``acks``, ``client_id``…). Start it with ``await producer.start()``."""
    return AIOKafkaProducer(**_connection(kafka, options))


def kafka_consumer(kafka: KafkaSettings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer for ``kafka``'s cluster with its security, subscribed to ``topics`` if any."""
    return AIOKafkaConsumer(*topics, **_connection(kafka, options))


def kafka_admin(kafka: KafkaSettings, **options: Any) -> AIOKafkaAdminClient:
    """An admin client for ``kafka``'s cluster with its security."""
    return AIOKafkaAdminClient(**_connection(kafka, options))


async def login_refusal(kafka: KafkaSettings, *, timeout: float = 10.0) -> str | None:
    """Why the first bootstrap server refuses this client's TLS handshake or SASL login, as a
    sentence that names the setting to check; None when it lets the client in, or cannot be
    reached at all (which is worth retrying: a broker still starting).

    aiokafka logs these refusals but raises only "Unable to bootstrap"; a caller that would
    retry a connection error calls this first, so that a wrong password or an untrusted
    certificate fails at once with its reason instead of retrying until a timeout."""
    host, port = _first_server(kafka.bootstrap_servers)
    where = f"Kafka at {host}:{port}"
    try:
        connection = await asyncio.wait_for(
            create_conn(
                host, port, request_timeout_ms=int(timeout * 1000), **security_options(kafka)
            ),
            timeout,
        )
    except SaslAuthenticationFailed as exc:
        return (
            f"{where} refused the login of kafka.sasl_username={kafka.sasl_username} "
            f"({kafka.sasl_mechanism}): {exc}; check kafka.sasl_password(_file)"
        )
    except UnsupportedSaslMechanismError as exc:
        return f"{where} does not offer kafka.sasl_mechanism={kafka.sasl_mechanism}: {exc}"
    except ssl.SSLCertVerificationError as exc:
        return (
            f"{where} showed a certificate this client does not accept ({exc.verify_message}): "
            "check kafka.ssl_ca_file (the CA that signed the broker's certificate) and, for a "
            "name mismatch, the bootstrap address or kafka.ssl_check_hostname"
        )
    except ssl.SSLError as exc:
        return f"the TLS handshake with {where} failed ({exc.reason}): check kafka.ssl_*"
    except (OSError, KafkaError, TimeoutError):
        return None
    connection.close()
    return None


def security_options(kafka: KafkaSettings) -> dict[str, Any]:
    """aiokafka's security keyword arguments for ``kafka``, files read and TLS context built.
    Raises ``ConfigurationError`` naming the setting when a file is missing or unusable."""
    login = sasl_login(kafka)
    password: str | None = None
    if login is not None:
        if login.password is not None:
            password = login.password.get_secret_value()
        elif login.password_file is not None:
            password = read_secret(login.password_file, "kafka.sasl_password_file")
    options: dict[str, Any] = dict(client_security_kwargs(kafka, sasl_password=password))
    plan = tls_plan(kafka)
    if plan is not None:
        options["ssl_context"] = ssl_context(plan)
    return options


def ssl_context(plan: TlsPlan) -> ssl.SSLContext:
    """A client TLS context: the broker's chain checked against ``plan.ca_file`` (the system's
    CAs when None), its host name too unless turned off, a client certificate when given."""
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=None if plan.ca_file is None else str(plan.ca_file)
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"kafka.ssl_ca_file={plan.ca_file} cannot be used: {exc}") from exc
    # check_hostname must be off before verify_mode could change; the chain stays verified.
    context.check_hostname = plan.check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    if plan.cert_file is not None and plan.key_file is not None:
        password: str | None = None
        if plan.key_password is not None:
            password = plan.key_password.get_secret_value()
        elif plan.key_password_file is not None:
            password = read_secret(plan.key_password_file, "kafka.ssl_key_password_file")
        try:
            context.load_cert_chain(str(plan.cert_file), str(plan.key_file), password)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"kafka.ssl_cert_file={plan.cert_file} with kafka.ssl_key_file={plan.key_file} "
                f"cannot be loaded (a wrong key password, or a key that is not the "
                f"certificate's): {exc}"
            ) from exc
    return context


def component_login(kafka: KafkaSettings, component: str) -> dict[str, str]:
    """The environment that makes a child process log in as ``component``'s own user, read
    from ``kafka.component_credentials_dir`` (its ``<component>.username``; the password stays
    in ``<component>.password``); empty when that setting is unset. Raises
    ``ConfigurationError`` when the folder lacks the component's user."""
    if kafka.component_credentials_dir is None:
        return {}
    username_file, password_file = credential_paths(
        Path(kafka.component_credentials_dir).expanduser(), component
    )
    username = read_secret(username_file, "kafka.component_credentials_dir")
    if not password_file.is_file():
        raise ConfigurationError(
            f"kafka.component_credentials_dir has {username_file.name} but no {password_file.name}"
        )
    return component_login_env(username, password_file)


def read_secret(path: Path, setting: str) -> str:
    """The secret in the file at ``path``, without its trailing line break. Raises
    ``ConfigurationError`` naming ``setting`` (never the content) when it cannot be read."""
    try:
        return secret_from_file_text(Path(path).expanduser().read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"{setting}={path} cannot be read: {exc.strerror}") from exc


def _first_server(bootstrap_servers: str) -> tuple[str, int]:
    """Host and port of the first ``host:port`` (``[v6]:port`` too) of a bootstrap list."""
    first = bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host:
        return first.strip("[]"), 9092
    return host.strip("[]"), int(port)


def _connection(kafka: KafkaSettings, options: dict[str, Any]) -> dict[str, Any]:
    clashing = {"bootstrap_servers", "security_protocol", "ssl_context"} & options.keys()
    clashing |= {name for name in options if name.startswith("sasl_")}
    if clashing:
        # The cluster and its security come from the settings alone: a site that passed its own
        # would quietly connect without TLS or as someone else.
        raise TypeError(f"pass these through KafkaSettings, not as options: {sorted(clashing)}")
    return {"bootstrap_servers": kafka.bootstrap_servers, **security_options(kafka), **options}
