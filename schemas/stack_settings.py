"""``Settings.stack``: the local single-node stack behind ``cityhub stack up`` (Kafka, Mosquitto,
PostgreSQL; a section of ``cityhub.schemas.settings``, in a module of its own)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from cityhub.schemas.registry import ID_PATTERN


class StackSettings(BaseModel):
    """The local single-node stack that ``cityhub stack up`` runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state_dir: Path = Path(".cityhub/stack")
    secure: bool = False
    """``cityhub stack up --secure``: Kafka serves SASL_SSL only on ``kafka_port`` (SCRAM users
    per component, ACLs), Mosquitto TLS only, on ``mqtt_tls_port`` (tenants) and
    ``mqtt_hub_tls_port`` (the hub's own users), with certificates from the stack's own CA
    (``<state_dir>/pki``). A secure stack beside the plain one needs its own ``state_dir`` and
    ports; the files it writes for clients are in ``<state_dir>/clients``."""
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    kafka_heap: str = "1g"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_tls_port: int = Field(default=8883, ge=1, le=65535)
    """Mosquitto's TLS listener for tenants and network servers when ``secure`` (``mqtt_port``
    stays unused then): only the tenants' users, each client id replaced by its user name."""
    mqtt_hub_tls_port: int = Field(default=8884, ge=1, le=65535)
    """Mosquitto's TLS listener for the hub's own users (bridge, deliveries) when ``secure``:
    no tenant's user gets in there, nor can one take the bridge's client id."""
    mqtt_tenants: tuple[Annotated[str, StringConstraints(pattern=ID_PATTERN)], ...] = (
        "city",
        "harbour",
    )
    """Tenants the secure stack makes MQTT users for: a subscriber ``sub-<tenant>`` reading its
    delivery subtree, and a device publisher ``demo@<tenant>`` (a TTS application's user)."""
    mosquitto_max_inflight: int = Field(default=1000, ge=0)
    mosquitto_max_queued: int = Field(default=1_000_000, ge=0)
    mosquitto_bin: str = "mosquitto"
    """A path, or a name looked up on PATH and then in /usr/sbin (where Debian puts it)."""
    postgres_port: int = Field(default=5434, ge=1, le=65535)
    """The history store's PostgreSQL, on 127.0.0.1 only (5434: clear of a system PostgreSQL on
    5432 and of a second Debian cluster on 5433)."""
    postgres_bin_dir: Path | None = None
    """Where ``initdb`` and ``postgres`` are; None: ``pg_config --bindir``, then Debian's
    ``/usr/lib/postgresql/<version>/bin``."""
    postgres_run_as: str = "postgres"
    """PostgreSQL refuses to run as root: when the stack is started by root, the server runs as
    this (unprivileged) user, which owns the data folder. Ignored for anyone else."""
    deploy_dir: Path | None = None
    """Where ``kafka/pom.xml`` and the config templates are; found from the source tree if unset."""
    ready_timeout_seconds: float = Field(default=90.0, gt=0)
    """How long ``up`` waits for each broker to really serve before it gives up."""
    stop_timeout_seconds: float = Field(default=30.0, gt=0)
    """How long ``down`` waits after SIGTERM before it sends SIGKILL."""
    mosquitto_password_file: Path | None = None
    """A Mosquitto password file (made with ``mosquitto_passwd``). When set, Mosquitto refuses
    anonymous clients, and the readiness probe logs in as ``mqtt.username``/``mqtt.password``.
    None (the default): anonymous access on the loopback listener."""
    mosquitto_acl_file: Path | None = None
    """A Mosquitto ACL file (``deploy/mosquitto/acl.example`` is one): who may publish and read
    which topics. Needs ``mosquitto_password_file``, since the ACL is per user."""

    @model_validator(mode="after")
    def _acl_needs_users(self) -> StackSettings:
        if self.mosquitto_acl_file is not None and self.mosquitto_password_file is None:
            raise ValueError(
                "stack.mosquitto_acl_file needs stack.mosquitto_password_file: the ACL grants "
                "topics to users, and without a password file nobody logs in as one"
            )
        return self

    @model_validator(mode="after")
    def _two_mqtt_listeners(self) -> StackSettings:
        if self.secure and self.mqtt_tls_port == self.mqtt_hub_tls_port:
            raise ValueError(
                "stack.mqtt_tls_port and stack.mqtt_hub_tls_port must differ: the secure "
                "Mosquitto has a listener for the tenants and one of the hub's own"
            )
        return self
