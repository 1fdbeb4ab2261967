"""The secure local Kafka's users, client files and ACLs (``cityhub stack up --secure``).

In ``<state_dir>/clients`` (folder 0700, secrets 0600), made once:

- ``<who>.username`` and ``<who>.password`` for each component of ``COMPONENTS``, for the
  operator's ``admin`` and for the ``broker`` itself: SCRAM-SHA-512 users, given to Kafka when
  its storage is formatted (``kafka-storage format --add-scram``), so they exist before the
  first client connects;
- ``<who>.env``: every ``CITYHUB_KAFKA__*`` line a process needs to log in as that user
  (``set -a; . clients/admin.env``); the password stays in its file, the env names it.

``CITYHUB_KAFKA__COMPONENT_CREDENTIALS_DIR`` pointing at this folder makes ``cityhub run`` give
each child its own user. After Kafka serves, ``apply_acls`` grants each component what
``kafka_acls.component_grants`` lists, as the admin user.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from aiokafka.protocol.admin import CreateAclsRequest

from cityhub.connectors.kafka_clients import kafka_admin
from cityhub.connectors.kafka_security import (
    ADMIN_COMPONENT,
    COMPONENTS,
    client_settings_env,
    credential_paths,
    secret_from_file_text,
)
from cityhub.schemas.errors import StackError
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.streams.devtools.stack.kafka_acls import (
    ALLOW,
    BROKER_USER,
    AclGrant,
    component_grants,
    kafka_user,
)
from cityhub.streams.devtools.stack.kafka_listeners import SCRAM_MECHANISM, BrokerTls
from cityhub.streams.devtools.stack.layout import StackLayout
from cityhub.streams.devtools.stack.pki import Pki

log = logging.getLogger("cityhub.stack")

BROKER = "broker"
USERS: tuple[str, ...] = (*COMPONENTS, ADMIN_COMPONENT, BROKER)
"""Everyone with a SCRAM user: the components, the operator, the broker."""


def clients_dir(layout: StackLayout) -> Path:
    """Where the secure stack keeps its users' files (``<state_dir>/clients``)."""
    return layout.root / "clients"


def pki_dir(layout: StackLayout) -> Path:
    """Where the stack's CA and server certificate are (``<state_dir>/pki``, shared with
    Mosquitto)."""
    return layout.root / "pki"


def user_name(who: str) -> str:
    return BROKER_USER if who == BROKER else kafka_user(who)


def ensure_credentials(layout: StackLayout, *, formatted: bool) -> dict[str, str]:
    """Each user's password, generated once into its 0600 file; returns them by component.

    Raises ``StackError`` when Kafka's storage is already formatted but a password file is
    gone: the broker holds the old user, and only a purge makes them match again."""
    directory = clients_dir(layout)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    passwords: dict[str, str] = {}
    for who in USERS:
        username_file, password_file = credential_paths(directory, who)
        if not password_file.is_file():
            if formatted:
                raise StackError(
                    f"{password_file} is missing but Kafka's storage in {layout.kafka_data} was "
                    "formatted with its user; `cityhub stack down --purge --only kafka` and "
                    "`up --secure` again make both anew"
                )
            _write_private(password_file, secrets.token_urlsafe(24) + "\n")
        _write_private(username_file, user_name(who) + "\n")
        passwords[who] = secret_from_file_text(password_file.read_text())
    return passwords


def scram_format_arguments(passwords: dict[str, str]) -> list[str]:
    """``kafka-storage format`` arguments that create every user (secrets: never log them)."""
    arguments: list[str] = []
    for who, password in passwords.items():
        arguments += [
            "--add-scram",
            f"{SCRAM_MECHANISM}=[name={user_name(who)},password={password}]",
        ]
    return arguments


def broker_tls(layout: StackLayout, pki: Pki, passwords: dict[str, str]) -> BrokerTls:
    return BrokerTls(
        keystore=pki.server_keystore, truststore=pki.ca_cert, broker_password=passwords[BROKER]
    )


def client_env(settings: Settings, layout: StackLayout, pki: Pki, who: str) -> dict[str, str]:
    """The ``CITYHUB_KAFKA__*`` environment of a process logging in as ``who``; the admin's
    also names the folder of the components' users, for ``cityhub run``."""
    directory = clients_dir(layout)
    _, password_file = credential_paths(directory, who)
    extra = (
        {"CITYHUB_KAFKA__COMPONENT_CREDENTIALS_DIR": str(directory)}
        if who == ADMIN_COMPONENT
        else None
    )
    return client_settings_env(
        bootstrap_servers=f"127.0.0.1:{settings.stack.kafka_port}",
        ca_file=pki.ca_cert,
        mechanism=SCRAM_MECHANISM,
        username=user_name(who),
        password_file=password_file,
        extra=extra,
    )


def write_client_env_files(settings: Settings, layout: StackLayout, pki: Pki) -> list[Path]:
    """``<who>.env`` for the components and the admin; returns the paths written."""
    written = []
    for who in (*COMPONENTS, ADMIN_COMPONENT):
        path = clients_dir(layout) / f"{who}.env"
        env = client_env(settings, layout, pki, who)
        _write_private(path, "".join(f"{name}={value}\n" for name, value in env.items()))
        written.append(path)
    return written


def client_kafka_settings(
    settings: Settings, layout: StackLayout, pki: Pki, who: str = ADMIN_COMPONENT
) -> KafkaSettings:
    """``settings.kafka`` pointed at the secure stack as ``who`` (checked like any settings)."""
    directory = clients_dir(layout)
    _, password_file = credential_paths(directory, who)
    return KafkaSettings.model_validate(
        {
            **settings.kafka.model_dump(exclude_unset=False),
            "bootstrap_servers": f"127.0.0.1:{settings.stack.kafka_port}",
            "security_protocol": "SASL_SSL",
            "ssl_ca_file": pki.ca_cert,
            "ssl_cert_file": None,
            "ssl_key_file": None,
            "ssl_key_password": None,
            "ssl_key_password_file": None,
            "ssl_check_hostname": True,
            "sasl_mechanism": SCRAM_MECHANISM,
            "sasl_username": user_name(who),
            "sasl_password": None,
            "sasl_password_file": password_file,
        }
    )


async def apply_acls(settings: Settings, admin: KafkaSettings) -> list[AclGrant]:
    """Create every component's grants (creating an existing ACL changes nothing); returns
    them. Raises ``StackError`` naming the grant Kafka refused."""
    grants = [grant for rows in component_grants(settings).values() for grant in rows]
    client = kafka_admin(admin, client_id="cityhub-stack-acls")
    await client.start()
    try:
        for grant in grants:
            request = CreateAclsRequest(
                resource_type=int(grant.resource_type),
                resource_name=grant.resource_name,
                resource_pattern_type_filter=int(grant.pattern_type),
                principal=grant.principal,
                host="*",
                operation=int(grant.operation),
                permission_type=ALLOW,
            )
            # aiokafka 0.14 has the CreateAcls request but no public admin method for it.
            response = await client._send_request(request)
            for code, message in response.creation_responses:
                if code != 0:
                    raise StackError(f"Kafka refused the ACL {grant}: error {code} {message}")
    finally:
        await client.close()
    log.info("kafka: %d ACL grants for %d components", len(grants), len(COMPONENTS))
    return grants


def _write_private(path: Path, content: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(content)
    os.replace(temporary, path)
