"""The brokers' configuration files, rendered from the templates under ``deploy/``.

Pure functions from template text and settings to file text: no disk, no broker, so the unit
tests check every essential setting directly.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from string import Template

from cityhub.schemas.errors import StackError
from cityhub.schemas.settings import StackSettings
from cityhub.streams.devtools.stack.kafka_listeners import (
    BrokerTls,
    plain_listener_lines,
    secure_listener_lines,
)
from cityhub.streams.devtools.stack.layout import StackLayout
from cityhub.streams.devtools.stack.mosquitto_access import SecureFiles, listener_lines

MAX_MQTT_PACKET_BYTES = 2 * 1024 * 1024 + 64 * 1024
"""2 MiB of payload plus room for the topic and MQTT 5 properties."""

SERVER_PROPERTIES_TEMPLATE = Path("kafka") / "server.properties.template"
LOG4J2_TEMPLATE = Path("kafka") / "log4j2.properties.template"
MOSQUITTO_CONF_TEMPLATE = Path("mosquitto") / "mosquitto.conf.template"


def _fill(template: str, name: str, values: dict[str, object]) -> str:
    try:
        return Template(template).substitute({k: str(v) for k, v in values.items()})
    except (KeyError, ValueError) as exc:
        raise StackError(f"template {name} has a placeholder cityhub does not fill: {exc}") from exc


def render_server_properties(
    template: str,
    stack: StackSettings,
    layout: StackLayout,
    *,
    num_partitions: int,
    tls: BrokerTls | None = None,
) -> str:
    """Kafka's ``server.properties``: one KRaft node on loopback, data in the state dir; with
    ``tls`` (the secure stack), SASL_SSL and ACLs (``kafka_listeners``)."""
    listeners = plain_listener_lines(stack) if tls is None else secure_listener_lines(stack, tls)
    return _fill(
        template,
        str(SERVER_PROPERTIES_TEMPLATE),
        {
            "listeners": listeners,
            "kafka_port": stack.kafka_port,
            "controller_port": stack.kafka_controller_port,
            "data_dir": layout.kafka_data,
            "num_partitions": num_partitions,
        },
    )


def render_log4j2_properties(template: str) -> str:
    """Kafka's log4j2 configuration (nothing to fill in today; rendered all the same)."""
    return _fill(template, str(LOG4J2_TEMPLATE), {})


def mosquitto_access(stack: StackSettings) -> str:
    """The broker's access lines: anonymous clients allowed, or (with a password file) only the
    file's users, each limited by the ACL file when there is one. Paths are made absolute, since
    mosquitto runs in the state dir."""
    if stack.mosquitto_password_file is None:
        return "allow_anonymous true"
    lines = [
        "allow_anonymous false",
        f"password_file {Path(stack.mosquitto_password_file).expanduser().resolve()}",
    ]
    if stack.mosquitto_acl_file is not None:
        lines.append(f"acl_file {Path(stack.mosquitto_acl_file).expanduser().resolve()}")
    return "\n".join(lines)


def render_mosquitto_conf(
    template: str,
    stack: StackSettings,
    layout: StackLayout,
    user: str,
    *,
    secure: SecureFiles | None = None,
) -> str:
    """``mosquitto.conf``: loopback listener, who may connect (``mosquitto_access``),
    persistence in the state dir, deliberate limits. With ``secure``: two TLS listeners, the
    tenants' and the hub's, each only for the users of its own password file, limited by the
    ACL file; their access lines are in their listener blocks (``per_listener_settings``), so
    ``access`` is empty."""
    return _fill(
        template,
        str(MOSQUITTO_CONF_TEMPLATE),
        {
            "listener": listener_lines(stack, secure),
            "access": mosquitto_access(stack) if secure is None else "",
            "user": user,
            "pid_file": layout.mosquitto_pid,
            "persistence_dir": layout.mosquitto_persistence,
            "max_inflight": stack.mosquitto_max_inflight,
            "max_queued": stack.mosquitto_max_queued,
            "max_packet_size": MAX_MQTT_PACKET_BYTES,
            "log_file": layout.mosquitto_log,
        },
    )


_RESERVED_IDS = (bytes(16), bytes(15) + b"\x01")
"""Kafka's ZERO_UUID and ONE_UUID (the metadata topic's id) are never random ids."""


def new_cluster_id(token: bytes | None = None) -> str:
    """A KRaft cluster id as ``kafka-storage random-uuid`` makes one: base64url, no padding.

    Kafka's ``Uuid.randomUuid`` rejects ids that start with ``-`` (they read as a command-line
    option), so this does too; it saves starting a JVM just for an id.
    """
    while True:
        raw = token if token is not None else secrets.token_bytes(16)
        if len(raw) != 16:
            raise ValueError("a Kafka cluster id is 16 bytes")
        cluster_id = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-") and raw not in _RESERVED_IDS:
            return cluster_id
        if token is not None:
            raise ValueError("that token makes an id Kafka would reject")
