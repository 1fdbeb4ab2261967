"""Prometheus metrics of the history writer (``cityhub_history_*``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROWS_WRITTEN = Counter(
    "cityhub_history_rows_written_total",
    "Rows the history writer inserted (or, for aggregates, replaced by a newer revision), "
    "by table.",
    ["table"],
)
ROWS_SKIPPED = Counter(
    "cityhub_history_rows_skipped_total",
    "Records already stored (an observation's event id seen before, an aggregate revision not "
    "newer than the stored one), by table.",
    ["table"],
)
ROWS_DEFAULT = Counter(
    "cityhub_history_default_partition_rows_total",
    "Records whose time was outside the accepted span (older than the retention, or further "
    "ahead than partitions_ahead_days): written to the DEFAULT partition, by table.",
    ["table"],
)
BATCHES = Counter("cityhub_history_batches_total", "Batches the history writer committed.")
BATCH_SECONDS = Histogram(
    "cityhub_history_batch_seconds",
    "Time to write one batch to PostgreSQL (COPY, insert, commit), retries included.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
BATCH_RECORDS = Histogram(
    "cityhub_history_batch_records",
    "Kafka records per batch.",
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10_000, 20_000),
)
LAG = Gauge(
    "cityhub_history_lag_records",
    "Records in a partition the history writer has not stored yet (high watermark - position).",
    ["topic", "partition"],
)
LAG_SECONDS = Gauge(
    "cityhub_history_lag_seconds",
    "The history writer's lag in a partition in time: 0 when caught up, else the age of the "
    "last record it read (an upper bound of the oldest waiting record's age).",
    ["topic", "partition"],
)
PAUSED = Gauge(
    "cityhub_history_paused",
    "1 while the history writer cannot write to PostgreSQL and waits to retry, else 0.",
)
RETRIES = Counter(
    "cityhub_history_write_retries_total",
    "Batch writes that failed for a database outage and were retried.",
)
PARTITIONS_CREATED = Counter(
    "cityhub_history_partitions_created_total", "Time partitions made, by table.", ["table"]
)
PARTITIONS_DROPPED = Counter(
    "cityhub_history_partitions_dropped_total",
    "Time partitions dropped past their retention, by table.",
    ["table"],
)
EXPIRED_DEFAULT_ROWS = Counter(
    "cityhub_history_expired_default_rows_total",
    "Rows deleted from a DEFAULT partition past their retention, by table.",
    ["table"],
)
