"""Per-subscription delivery metrics (labels ``tenant`` and ``subscription``).

Removed when a subscription is deleted (``forget``), so the series do not outlive it."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

from cityhub.schemas.subscription import SubscriptionState

LABELS = ("tenant", "subscription")

QUEUE_DEPTH = Gauge(
    "cityhub_subscription_queue_depth", "Items in the subscription's in-memory queue.", LABELS
)
LAG_MESSAGES = Gauge(
    "cityhub_subscription_lag_messages",
    "Records of the subscription's topic not yet delivered (nor dropped).",
    LABELS,
)
LAG_SECONDS = Gauge(
    "cityhub_subscription_lag_seconds",
    "Age of the oldest record not yet delivered (0 when caught up).",
    LABELS,
)
DELIVERED = Counter(
    "cityhub_subscription_delivered", "Items delivered to the subscriber's sink.", LABELS
)
FAILED = Counter(
    "cityhub_subscription_failed",
    "Failed delivery attempts (each attempt of a batch counts once).",
    LABELS,
)
RETRIED = Counter(
    "cityhub_subscription_retried", "Batches attempted again after a failure.", LABELS
)
DROPPED = Counter(
    "cityhub_subscription_dropped", "Items dropped by a full queue (on_full: drop_oldest).", LABELS
)
DEADLETTERED = Counter(
    "cityhub_subscription_deadlettered",
    "Items given up on after the last attempt and written to the dead-letter topic.",
    LABELS,
)
LIVE_ENDED = Counter(
    "cityhub_subscription_live_streams_ended",
    "Live streams ended by the hub because their client may no longer read them (key revoked, "
    "subscription deleted or paused).",
    LABELS,
)
LATENCY = Histogram(
    "cityhub_subscription_delivery_latency_seconds",
    "From the record's write to the subscription's topic to its confirmed delivery.",
    LABELS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
STATE = Gauge(
    "cityhub_subscription_state",
    "1 for the subscription's current delivery state, 0 for the others.",
    (*LABELS, "state"),
)

_ALL = (
    QUEUE_DEPTH,
    LAG_MESSAGES,
    LAG_SECONDS,
    DELIVERED,
    FAILED,
    RETRIED,
    DROPPED,
    DEADLETTERED,
    LIVE_ENDED,
)


def set_state(tenant: str, subscription: str, state: SubscriptionState) -> None:
    for s in SubscriptionState:
        STATE.labels(tenant, subscription, s.value).set(1 if s is state else 0)


def forget(tenant: str, subscription: str) -> None:
    """Remove every series of a deleted subscription."""
    for metric in (*_ALL, LATENCY):
        with contextlib.suppress(KeyError):
            metric.remove(tenant, subscription)
    for s in SubscriptionState:
        with contextlib.suppress(KeyError):
            STATE.remove(tenant, subscription, s.value)
