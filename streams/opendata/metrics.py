"""Prometheus metrics of the open-data publisher (registered once, in the default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OPEN_DATA_POINTS = Counter(
    "cityhub_open_data_points_total",
    "Observations the open-data point stage wrote as points of an open dataset (one per "
    "dataset that takes the observation's quantity).",
)
OPEN_DATA_SKIPPED = Counter(
    "cityhub_open_data_skipped_total",
    "Observations that gave no open-data point, and points the publisher dropped, by reason: "
    "invalid, sealed, no_area, no_dataset, non_numeric, not_eligible, personal, no_activity, "
    "future (point stage); late, unknown_dataset, invalid_point, replayed (publisher: a "
    "point its window had counted before a restart).",
    ["reason"],
)
OPEN_DATA_WINDOWS = Counter(
    "cityhub_open_data_windows_total",
    "Closed area windows of the open datasets, by decision: published (on their own), merged "
    "(published inside the merged window of their too-small areas) and withheld (nothing of "
    "them published).",
    ["decision"],
)
OPEN_DATA_OPEN_WINDOWS = Gauge(
    "cityhub_open_data_open_windows",
    "Area windows of the open datasets held open by this process (not yet closed).",
)
