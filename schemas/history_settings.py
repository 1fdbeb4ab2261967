"""``Settings.history``: where the history store is and how the writer keeps it (a section of
``cityhub.schemas.settings``, in a module of its own)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

_SQL_IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"


class HistorySettings(BaseModel):
    """The history store on PostgreSQL (``cityhub.streams.history``, ``docs/history.md``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    """Whether ``cityhub run`` runs the history writer and erasure reaches the store."""
    host: str = "127.0.0.1"
    port: int = Field(default=5434, ge=1, le=65535)
    database: str = "cityhub"
    user: str = "cityhub"
    password_file: Path | None = None
    """A file holding the user's password. None: the local stack's
    (``<stack.state_dir>/postgres/password``, written by ``cityhub stack up``)."""
    db_schema: str = Field(default="cityhub", pattern=_SQL_IDENTIFIER)
    """The PostgreSQL schema of the tables; every connection puts it first on its
    ``search_path`` (tests give each hub a schema of its own)."""
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    write_timeout_seconds: float = Field(default=60.0, gt=0)
    """A batch the database has not committed in this time is taken for an outage (a server
    that stopped answering, SIGSTOP or a hung disk): the writer pauses, reconnects and writes
    it again."""
    observations_retention_days: int = Field(default=400, ge=1, le=36_500)
    """Daily partitions of ``observations`` older than this are dropped whole."""
    aggregates_retention_days: int = Field(default=3650, ge=1, le=36_500)
    """Monthly partitions of ``aggregates`` whose whole month is older than this are dropped."""
    partitions_ahead_days: int = Field(default=2, ge=0, le=31)
    """Partitions are made for times up to this far ahead of now; a row further ahead (or older
    than the retention) goes to the DEFAULT partition, so a device's wrong clock cannot make
    thousands of partitions."""
    batch_max_records: int = Field(default=5000, ge=1)
    """The writer writes at most this many records in one database transaction."""
    batch_linger_ms: int = Field(default=200, ge=0)
    """How long the writer waits to fill a batch before it writes what it has."""
    retention_interval_seconds: float = Field(default=3600.0, gt=0)
    """How often the writer drops partitions past their retention."""
    # Reading aggregates back (``cityhub.streams.history.aggregates_source``).
    kafka_window_hours: float = Field(default=6.0, ge=0)
    """An aggregates query whose range starts within this many hours before now, and is no
    longer, is read from Kafka (the newest windows, without the writer's lag); any other from
    the history store. 0: every query from the store."""
    query_max_range_days: int = Field(default=366, ge=1, le=36_500)
    """Longest ``to - from`` of one aggregates query served from the store; a longer one is
    refused (the answer is bounded by ``aggregation.query_max_items`` windows too)."""
