"""Where the local stack keeps its files, and where the deploy templates are found."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cityhub.schemas.errors import StackError

_POM = Path("kafka") / "pom.xml"


@dataclass(frozen=True)
class StackLayout:
    """Every path of the stack's state dir, absolute, computed from its root.

    Nothing here touches the disk: creating the folders is the caller's job.
    """

    root: Path

    @classmethod
    def under(cls, state_dir: Path) -> StackLayout:
        """The layout under ``state_dir``, resolved against the current directory if relative."""
        return cls(root=Path(state_dir).expanduser().resolve())

    @property
    def lock_file(self) -> Path:
        return self.root / "stack.lock"

    # Kafka

    @property
    def kafka_dir(self) -> Path:
        return self.root / "kafka"

    @property
    def kafka_libs(self) -> Path:
        return self.kafka_dir / "libs"

    @property
    def kafka_libs_marker(self) -> Path:
        """Holds the hash of the pom.xml the jars in ``libs`` were copied for."""
        return self.kafka_libs / ".cityhub-pom.sha256"

    @property
    def kafka_data(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def kafka_formatted_marker(self) -> Path:
        """Written by ``StorageTool format``; its presence means the storage is formatted."""
        return self.kafka_data / "meta.properties"

    @property
    def kafka_server_properties(self) -> Path:
        return self.kafka_dir / "server.properties"

    @property
    def kafka_log4j2(self) -> Path:
        return self.kafka_dir / "log4j2.properties"

    @property
    def kafka_log(self) -> Path:
        return self.kafka_dir / "kafka.log"

    @property
    def kafka_pid(self) -> Path:
        return self.kafka_dir / "kafka.pid"

    # Mosquitto

    @property
    def mosquitto_dir(self) -> Path:
        return self.root / "mosquitto"

    @property
    def mosquitto_conf(self) -> Path:
        return self.mosquitto_dir / "mosquitto.conf"

    @property
    def mosquitto_log(self) -> Path:
        return self.mosquitto_dir / "mosquitto.log"

    @property
    def mosquitto_stdout(self) -> Path:
        """What mosquitto prints before its own log file is open (a bad config, a busy port)."""
        return self.mosquitto_dir / "mosquitto.out"

    @property
    def mosquitto_pid(self) -> Path:
        return self.mosquitto_dir / "mosquitto.pid"

    @property
    def mosquitto_persistence(self) -> Path:
        return self.mosquitto_dir / "data"

    # PostgreSQL (the history store)

    @property
    def postgres_dir(self) -> Path:
        """Ours (the password files, configs, log); the data folder inside belongs to the user
        PostgreSQL runs as."""
        return self.root / "postgres"

    @property
    def postgres_data(self) -> Path:
        return self.postgres_dir / "data"

    @property
    def postgres_password(self) -> Path:
        """The ``cityhub`` user's password (mode 0600): what the hub logs in with."""
        return self.postgres_dir / "password"

    @property
    def postgres_superuser_password(self) -> Path:
        """The ``postgres`` superuser's password (mode 0600): only ``stack up`` uses it."""
        return self.postgres_dir / "superuser-password"

    @property
    def postgres_conf(self) -> Path:
        return self.postgres_dir / "postgresql.conf"

    @property
    def postgres_hba(self) -> Path:
        return self.postgres_dir / "pg_hba.conf"

    @property
    def postgres_log(self) -> Path:
        return self.postgres_dir / "postgres.log"

    @property
    def postgres_pid(self) -> Path:
        return self.postgres_dir / "postgres.pid"


def find_deploy_dir(override: Path | None, start: Path | None = None) -> Path:
    """The ``deploy/`` folder holding ``kafka/pom.xml`` and the config templates.

    ``override`` (``StackSettings.deploy_dir``) wins. Otherwise walk up from this source file:
    with the strict editable install its path resolves through the symlink into the repository.
    """
    if override is not None:
        deploy = Path(override).expanduser().resolve()
        if not (deploy / _POM).is_file():
            raise StackError(
                f"StackSettings.deploy_dir={deploy} has no {_POM}; "
                "point CITYHUB_STACK__DEPLOY_DIR at the repository's deploy/ folder"
            )
        return deploy
    here = (start or Path(__file__)).resolve()
    for parent in here.parents:
        if (parent / "deploy" / _POM).is_file():
            return parent / "deploy"
    raise StackError(
        f"cannot find deploy/{_POM} above {here}; install cityhub from a checkout "
        "(pip install -e . --config-settings editable_mode=strict) or set "
        "CITYHUB_STACK__DEPLOY_DIR to the repository's deploy/ folder"
    )
