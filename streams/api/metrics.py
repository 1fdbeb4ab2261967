"""Prometheus metrics of the operator API (registered once, in the default registry).

``route`` is the route's template (``/api/v1/tenants/{tenant}/devices/{id}``), never the raw
path, so that the number of series stays bounded whatever clients send; requests that match no
route are counted under ``route="unmatched"``.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

API_REQUESTS = Counter(
    "cityhub_api_requests_total",
    "Operator API requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
API_LATENCY = Histogram(
    "cityhub_api_request_duration_seconds",
    "Time from a request's arrival to its response being ready, by route template and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
UNMATCHED_ROUTE = "unmatched"
