"""``Settings.kafka``: where Kafka is, how cityhub's topics are made, and how every client
authenticates (TLS, SASL) — a section of ``cityhub.schemas.settings``, in a module of its own.

Pure: a pydantic model and its checks, no file is read here (``cityhub.connectors.kafka_security``
turns the section into client options).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
"""OAUTHBEARER is left out on purpose: aiokafka 0.14 only sends a token that the application
fetches itself (``AbstractTokenProvider``) and never re-authenticates a connection, so a broker
with ``connections.max.reauth.ms`` would drop it when the token expires (docs/security.md)."""

TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


BACKGROUND_FETCH_MIN_BYTES = 512 * 1024
"""What a background consumer's fetch waits to gather (``background_fetch_wait_ms``)."""


def background_fetch(settings: KafkaSettings) -> dict[str, int]:
    """The consumer options of a consumer that may lag (``background_fetch_wait_ms``)."""
    wait = settings.background_fetch_wait_ms
    if wait == 0:
        return {}
    return {"fetch_min_bytes": BACKGROUND_FETCH_MIN_BYTES, "fetch_max_wait_ms": wait}


class KafkaSettings(BaseModel):
    """Kafka: the brokers, cityhub's topics, and the client security every client shares."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated ``host:port`` pairs (``[::1]:9092`` for an IPv6 address)."""
    topic_prefix: str = Field(
        default="cityhub", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
    )
    """Every topic name starts with this and a dot: ``cityhub.raw``, ``cityhub.observations``.
    Letters, digits, ``.``, ``_`` and ``-`` as Kafka allows, starting with a letter or digit,
    at most 100 characters (a subscription's topic adds its tenant and id, within Kafka's 249);
    it also names the open-data folder, so it cannot climb out of it."""
    partitions: int = Field(default=8, ge=1)
    """Partitions of the data topics when cityhub creates them: at most this many workers share
    the load."""
    replication_factor: int = Field(default=1, ge=1)
    """Replicas of each topic cityhub creates: its own, subscriptions' and the
    worker's changelogs."""
    min_insync_replicas: int | None = Field(default=None, ge=1)
    """Replicas that must hold a write before Kafka confirms it to an ``acks=all`` producer (every
    cityhub producer), set as ``min.insync.replicas`` on each topic cityhub creates. None: 2 for
    a replicated topic (a confirmed write survives the loss of one broker; with a replication
    factor of 2, writes also stop while one replica is out), else the broker's default (1).
    At most ``replication_factor``."""
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    max_batch_bytes: int = Field(default=256 * 1024, ge=1024)
    """Largest batch the producer builds per partition. aiokafka sends one request at a time per
    broker, so the batch size, not the in-flight limit, bounds how much one round trip carries
    (aiokafka's 16 KiB default held the bridge to a third of its rate)."""
    linger_ms: int = Field(default=5, ge=0)
    """How long the producer waits to fill a batch: more throughput for a little latency."""
    background_fetch_wait_ms: int = Field(default=250, ge=0, le=5000)
    """How long a fetch of the consumers that may lag (the side stages: open data and device
    health; the history writer) waits at the broker for ``BACKGROUND_FETCH_MIN_BYTES`` to
    gather: a few large fetches a second instead of one per handful of records, which leaves the
    broker's and their CPU to the pipeline. 0: answer at once, as the pipeline's consumers do."""
    raw_retention_hours: int = Field(default=24, ge=1, le=24 * 366)
    """How long ``<prefix>.raw`` keeps what the bridge received, payloads in clear (personal
    values too: they are sealed only by the normaliser). Kafka deletes whole closed segments,
    and cityhub makes the topic with hourly segments, so a record is gone at most this plus one
    hour plus the broker's ``log.retention.check.interval.ms`` after it arrived
    (``docs/privacy.md``, "Erasure"). Set when the topic is created; an existing topic keeps its
    configuration (``kafka-configs --alter``, ``docs/operations.md``)."""
    deadletter_retention_hours: int = Field(default=168, ge=1, le=24 * 366)
    """Likewise for ``<prefix>.deadletter``, which holds refused records with their payloads in
    clear: a week by default, to look into what went wrong."""

    # Security: every client cityhub makes reads these (cityhub.connectors.kafka_clients).
    security_protocol: SecurityProtocol = "PLAINTEXT"
    """How clients talk to the brokers: ``SASL_SSL`` for a secured cluster (TLS and a login);
    ``SSL`` is TLS alone (with ``ssl_cert_file`` for a client certificate)."""
    ssl_ca_file: Path | None = None
    """The CA certificates (PEM) that vouch for the brokers. None: the system's trust store."""
    ssl_cert_file: Path | None = None
    """A client certificate (PEM) for mutual TLS; needs ``ssl_key_file``."""
    ssl_key_file: Path | None = None
    """The client certificate's private key (PEM)."""
    ssl_key_password: SecretStr | None = None
    """The private key's password, when the key is encrypted (or ``ssl_key_password_file``)."""
    ssl_key_password_file: Path | None = None
    """A file holding the private key's password."""
    ssl_check_hostname: bool = True
    """Whether the broker's certificate must name the host connected to. Turn off only for a
    broker reached by an address its certificate does not carry; the chain is still checked."""
    sasl_mechanism: SaslMechanism | None = None
    """The SASL mechanism (``SASL_*`` protocols): ``SCRAM-SHA-512`` for the local secure stack
    and Strimzi's ``scram-sha-512`` users; ``PLAIN`` for clouds that issue API keys."""
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    """The SASL password (or ``sasl_password_file``, better: it stays out of the environment)."""
    sasl_password_file: Path | None = None
    """A file holding the SASL password (trailing newline ignored), such as a mounted Secret."""
    component_credentials_dir: Path | None = None
    """For ``cityhub run``: a folder with ``<component>.username`` and ``<component>.password``
    per component (bridge, worker, delivery, api, history), which ``cityhub stack up --secure``
    writes; each child then logs in as its component's user instead of ``sasl_username``."""

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not (sep and host.strip("[]") and port.isdigit() and 1 <= int(port) <= 65535):
                raise ValueError(
                    "must be host:port pairs separated by commas, each port 1 to 65535 "
                    "(e.g. 127.0.0.1:9092,kafka-1.city.example:9093)"
                )
        return value

    @model_validator(mode="after")
    def _min_insync_within_replicas(self) -> KafkaSettings:
        # More in-sync replicas than replicas: Kafka would refuse every acks=all write.
        if self.min_insync_replicas is not None and (
            self.min_insync_replicas > self.replication_factor
        ):
            raise ValueError(
                f"kafka.min_insync_replicas={self.min_insync_replicas} exceeds "
                f"kafka.replication_factor={self.replication_factor}: no write could ever be "
                "confirmed; lower the one or raise the other"
            )
        return self

    @model_validator(mode="after")
    def _security_fits_protocol(self) -> KafkaSettings:
        problems = security_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def topic_min_insync_replicas(self, replication_factor: int | None = None) -> int | None:
        """``min.insync.replicas`` for a topic of ``replication_factor`` replicas (default: this
        section's): the configured value (never above the topic's replicas), else 2 for a
        replicated topic (at most its replicas), else None: the broker's default applies."""
        replicas = self.replication_factor if replication_factor is None else replication_factor
        if self.min_insync_replicas is not None:
            return min(self.min_insync_replicas, replicas)
        return min(2, replicas) if replicas > 1 else None


def security_problems(kafka: KafkaSettings) -> list[str]:
    """What does not fit together in the security settings, each as a sentence that says what to
    set: empty when the section can be used."""
    problems: list[str] = []
    protocol = kafka.security_protocol
    if protocol in SASL_PROTOCOLS:
        if kafka.sasl_mechanism is None:
            problems.append(
                f"kafka.security_protocol={protocol} needs kafka.sasl_mechanism "
                "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
            )
        if not kafka.sasl_username:
            problems.append(f"kafka.security_protocol={protocol} needs kafka.sasl_username")
        if kafka.sasl_password is None and kafka.sasl_password_file is None:
            problems.append(
                f"kafka.security_protocol={protocol} needs kafka.sasl_password or "
                "kafka.sasl_password_file"
            )
    elif (
        kafka.sasl_mechanism
        or kafka.sasl_username
        or kafka.sasl_password_file
        or (kafka.sasl_password is not None)
    ):
        problems.append(
            f"kafka.sasl_* is set but kafka.security_protocol={protocol} does not log in: "
            "use SASL_SSL (or SASL_PLAINTEXT), or unset the sasl_* settings"
        )
    if kafka.sasl_password is not None and kafka.sasl_password_file is not None:
        problems.append("set kafka.sasl_password or kafka.sasl_password_file, not both")
    tls_settings = (
        kafka.ssl_ca_file,
        kafka.ssl_cert_file,
        kafka.ssl_key_file,
        kafka.ssl_key_password,
        kafka.ssl_key_password_file,
    )
    if protocol not in TLS_PROTOCOLS and any(s is not None for s in tls_settings):
        problems.append(
            f"kafka.ssl_* is set but kafka.security_protocol={protocol} does not use TLS: "
            "use SSL or SASL_SSL, or unset the ssl_* settings"
        )
    if (kafka.ssl_cert_file is None) != (kafka.ssl_key_file is None):
        problems.append(
            "kafka.ssl_cert_file and kafka.ssl_key_file go together: a client certificate "
            "needs its private key, and a key its certificate"
        )
    if kafka.ssl_key_password is not None and kafka.ssl_key_password_file is not None:
        problems.append("set kafka.ssl_key_password or kafka.ssl_key_password_file, not both")
    if kafka.ssl_key_file is None and (
        kafka.ssl_key_password is not None or kafka.ssl_key_password_file is not None
    ):
        problems.append("kafka.ssl_key_password* is set but there is no kafka.ssl_key_file")
    return problems
