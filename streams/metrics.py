"""Prometheus metrics of the stream workers (registered once, in the default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_IN = Counter(
    "cityhub_normaliser_messages_total",
    "Raw envelopes the normaliser took from the raw topic, by ingest format.",
    ["format"],
)
OBSERVATIONS_OUT = Counter(
    "cityhub_normaliser_observations_total",
    "Canonical observations written, by ingest format.",
    ["format"],
)
NORMALISE_LATENCY = Histogram(
    "cityhub_normalise_latency_seconds",
    "Time to parse, deduplicate and normalise one raw envelope (CPU time of the stage).",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
)
PIPELINE_LATENCY = Histogram(
    "cityhub_pipeline_latency_seconds",
    "From the bridge receiving a message to the worker fetching the batch that holds its record.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
DUPLICATES = Counter(
    "cityhub_normaliser_duplicates_total",
    "Uplinks dropped as duplicates of one already normalised (same device and frame).",
    ["network"],
)
IGNORED = Counter(
    "cityhub_normaliser_ignored_total",
    "Network servers' messages passed by as no measurement (docs/ingest.md): a device's other "
    "events (join, downlink, status, location, log, service, integration), simulated uplinks, "
    "frames with MAC commands only; by network and kind.",
    ["network", "kind"],
)
QUALITY_FLAGS = Counter(
    "cityhub_quality_flags_total",
    "Quality flags raised on observations (docs/quality.md), by flag and quantity (a quantity "
    "neither catalogued nor configured counts as other). Flagged observations are kept.",
    ["flag", "quantity"],
)
DEADLETTERS = Counter(
    "cityhub_deadletters_total",
    "Messages sent to the dead-letter topic, by stage and reason.",
    ["stage", "reason"],
)
CONSUMER_LAG = Gauge(
    "cityhub_consumer_lag_messages",
    "Records in a partition not yet processed by this worker (high watermark - position).",
    ["group", "topic", "partition"],
)
CONSUMER_LAG_SECONDS = Gauge(
    "cityhub_consumer_lag_seconds",
    "How far behind this worker is in a partition, in time: 0 when caught up, else the age of "
    "the last record it took (an upper bound of the oldest waiting record's age).",
    ["group", "topic", "partition"],
)

ROUTED = Counter(
    "cityhub_routed",
    "Items written to subscriptions' topics (one per item and receiving subscription).",
    ["source"],
)
ROUTED_SUBSCRIPTIONS = Gauge(
    "cityhub_routed_subscriptions",
    "Subscriptions this worker routes to (their topics exist).",
)
AGGREGATOR_EVENTS = Counter(
    "cityhub_aggregator_events_total",
    "What the window states counted, by grouping (device, area) and event: observations, "
    "aggregated, non_numeric, no_group, duplicates, late_dropped, late_partial, future_dropped, "
    "dedup_overflow, emitted, re_emitted (see cityhub.streams.aggregation.windows), invalid "
    "(records on the input topic that are not observations) and sealed (a data subject's "
    "values, never aggregated).",
    ["grouping", "event"],
)
AGGREGATOR_WINDOWS = Gauge(
    "cityhub_aggregator_windows",
    "Windows held in memory by this worker (open, or closed and within their grace period).",
    ["grouping"],
)
AGGREGATOR_REWRITTEN = Counter(
    "cityhub_aggregator_rewritten_total",
    "Closed windows written again, unchanged, after their state was restored (restart or "
    "rebalance); consumers drop them by aggregate_id and revision.",
    ["grouping"],
)


def lag_seconds(lag_records: int, last_taken_ms: int | None, now: float) -> float:
    """A consumer's lag in time: 0 when nothing waits (``lag_records`` 0), else the age at
    ``now`` (epoch seconds) of the last record taken (its Kafka timestamp, epoch ms), never
    negative; 0 when no record was taken yet, since the age of what waits is then unknown."""
    if lag_records <= 0 or last_taken_ms is None:
        return 0.0
    return max(0.0, now - last_taken_ms / 1000)
