"""Prometheus metrics of the MQTT bridge (registered once, in the default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONNECTOR = "mqtt"

RECEIVED = Counter(
    "cityhub_bridge_messages_received_total",
    "Messages received from the source broker.",
    ["connector", "format"],
)
WRITTEN = Counter(
    "cityhub_bridge_messages_written_total",
    "Messages written to Kafka and confirmed (acks=all), by destination topic kind.",
    ["connector", "format", "destination"],
)
DEADLETTERS = Counter(
    "cityhub_bridge_deadletters_total",
    "Messages the bridge sent to the dead-letter topic instead of the raw topic.",
    ["connector", "reason"],
)
PRODUCE_LATENCY = Histogram(
    "cityhub_bridge_produce_latency_seconds",
    "From handing a message to the Kafka producer to its confirmation by the broker.",
    ["connector"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
)
INFLIGHT = Gauge(
    "cityhub_bridge_inflight_messages",
    "Messages received but not yet confirmed by Kafka (and so not yet acknowledged).",
    ["connector"],
)
INFLIGHT_LIMIT = Gauge(
    "cityhub_bridge_inflight_limit",
    "The most messages the bridge holds unconfirmed before it stops taking more.",
    ["connector"],
)
BACKPRESSURE_SECONDS = Counter(
    "cityhub_bridge_backpressure_seconds_total",
    "Time the bridge spent not taking messages: at its in-flight limit, or waiting for room "
    "in the Kafka producer's buffer.",
    ["connector"],
)
BACKPRESSURE_EVENTS = Counter(
    "cityhub_bridge_backpressure_events_total",
    "Times the bridge reached its in-flight limit or found the producer's buffer full.",
    ["connector"],
)
QUEUED = Gauge(
    "cityhub_bridge_queued_messages",
    "Messages read from the MQTT socket that the bridge has not taken yet.",
    ["connector"],
)
CONNECTED = Gauge(
    "cityhub_bridge_connected",
    "1 while the bridge has a session with the source broker.",
    ["connector"],
)
RECONNECTS = Counter(
    "cityhub_bridge_reconnects_total",
    "Sessions with the source broker that ended and were started again.",
    ["connector"],
)
SESSIONS_LOST = Counter(
    "cityhub_bridge_sessions_lost_total",
    "Reconnections after which the broker had no session for the bridge's client id: what was "
    "published while the bridge was away was queued for no one (a broker restarted without "
    "persistence, the session expired, or another client took the client id).",
    ["connector"],
)
SESSION_FAILURES = Counter(
    "cityhub_bridge_session_failures_total",
    "Sessions with the source broker that failed or could not start, by why: tls_untrusted, "
    "tls, login_refused, refused, unreachable, timeout, lost, kafka, other.",
    ["connector", "reason"],
)
KAFKA_ERRORS = Counter(
    "cityhub_bridge_kafka_errors_total",
    "Kafka writes that failed after the producer's own retries (the messages stay unacked "
    "and are redelivered by the broker).",
    ["connector"],
)
