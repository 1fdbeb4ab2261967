"""The health stage's and the device-health view's metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

HEALTH_WRITTEN = Counter(
    "cityhub_health_records_written",
    "Device-health records written by the health stage, by kind (device, deadletters) and why "
    "(changed: at once; due: the minute passed).",
    ["kind", "why"],
)
HEALTH_SKIPPED = Counter(
    "cityhub_health_skipped",
    "Records the health stage did not count, by input (observations, deadletters) and reason "
    "(invalid, unregistered, replayed).",
    ["input", "reason"],
)
DEVICES_SILENT = Gauge(
    "cityhub_devices_silent",
    "Registered active devices seen once but not within their grace times their expected "
    "interval, per tenant and device type (every API process reports the same view).",
    ["tenant", "type"],
)
DEVICES_NEVER_SEEN = Gauge(
    "cityhub_devices_never_seen",
    "Registered active devices of which no observation was ever counted, per tenant and type.",
    ["tenant", "type"],
)
