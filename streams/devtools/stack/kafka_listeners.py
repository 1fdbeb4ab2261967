"""Pure: the listener and security lines of the local Kafka's ``server.properties``.

Plain: one PLAINTEXT listener for clients, PLAINTEXT for the controller, everyone allowed.

Secure (``StackSettings.secure``): clients reach only a SASL_SSL listener (SCRAM-SHA-512, the
stack's own server certificate); the controller listener takes only mutual TLS (a certificate of
the stack's CA: the broker shows the server certificate), so no client on the machine reaches
the controller without the CA's blessing; ``StandardAuthorizer`` denies whatever no ACL grants,
except to the super users (``kafka_acls.super_users``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cityhub.schemas.settings import StackSettings
from cityhub.streams.devtools.stack.kafka_acls import BROKER_USER, super_users

SCRAM_MECHANISM = "SCRAM-SHA-512"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """What the secure broker is configured with: its PEM keystore and truststore, and the
    password of its own SCRAM user (written into server.properties, which is then 0600)."""

    keystore: Path
    truststore: Path
    broker_password: str

    def __repr__(self) -> str:  # the password must not reach a log through a repr
        return f"BrokerTls(keystore={self.keystore}, truststore={self.truststore})"


def plain_listener_lines(stack: StackSettings) -> str:
    """PLAINTEXT for clients and controller: the stack as it has always been."""
    return "\n".join(
        [
            f"listeners=PLAINTEXT://127.0.0.1:{stack.kafka_port},"
            f"CONTROLLER://127.0.0.1:{stack.kafka_controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{stack.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
        ]
    )


def secure_listener_lines(stack: StackSettings, tls: BrokerTls) -> str:
    """SASL_SSL for clients, mutual TLS for the controller, the authorizer on."""
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{BROKER_USER}" password="{tls.broker_password}";'
    )
    return "\n".join(
        [
            f"listeners=SASL_SSL://127.0.0.1:{stack.kafka_port},"
            f"CONTROLLER://127.0.0.1:{stack.kafka_controller_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{stack.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL",
            "inter.broker.listener.name=SASL_SSL",
            f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}",
            f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config={jaas}",
            # PEM files straight from the stack's PKI: no JKS/PKCS12 conversion, no store password.
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={tls.keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={tls.truststore}",
            # Only a holder of a certificate from the stack's CA may talk to the controller.
            "listener.name.controller.ssl.client.auth=required",
            f"authorizer.class.name={AUTHORIZER}",
            f"super.users={';'.join(super_users())}",
            "allow.everyone.if.no.acl.found=false",
        ]
    )
