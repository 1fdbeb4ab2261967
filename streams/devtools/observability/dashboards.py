"""cityhub's Grafana dashboards as data, and the command that writes them to ``deploy/grafana/``.

``python -m cityhub.streams.devtools.observability.dashboards deploy/grafana`` writes one JSON
file per dashboard; tests/unit/test_dashboards.py checks that the committed files are exactly
what this makes, and the Prometheus integration test runs every panel's query. Panels read the
recordings of deploy/prometheus/rules.yml where one exists (``cityhub:…``), so a dashboard
costs Prometheus little, and select ``job=~"$job"``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cityhub.streams.devtools.observability.grafana import Dashboard, Panel, Query, Row, render

J = 'job=~"$job"'
"""The selector every query carries."""


def _rate(metric: str, by: str, window: str = "1m", where: str = "") -> str:
    selector = f"{{{J}{', ' + where if where else ''}}}"
    return f"sum by ({by}) (rate({metric}{selector}[{window}]))"


def _increase(metric: str, window: str) -> str:
    return f"sum by (table) (increase({metric}{{{J}}}[{window}]))"


def _quantiles(record: str, legend: str = "") -> tuple[Query, ...]:
    """The p50 and p99 recordings of ``record`` (deploy/prometheus/rules.yml)."""
    return (
        Query(f"{record}:p50{{{J}}}", f"p50 {legend}".strip()),
        Query(f"{record}:p99{{{J}}}", f"p99 {legend}".strip()),
    )


PIPELINE = Dashboard(
    uid="cityhub-pipeline",
    title="cityhub / pipeline",
    description="From the MQTT broker through the bridge, the normaliser and the aggregators to "
    "the subscriptions and the history: throughput, latency, lag, errors.",
    items=(
        Row("Throughput"),
        Panel(
            "Records per second, by stage",
            (Query(f'cityhub:stage_throughput:rate1m{{{J}, stage!="api"}}', "{{stage}}"),),
            "Bridge: written to raw; normalise: observations made; aggregate: windows emitted; "
            "route: items written to subscriptions' topics; deliver; history: rows written.",
            unit="ops",
        ),
        Panel(
            "Messages received by the bridge, by format",
            (Query(_rate("cityhub_bridge_messages_received_total", "format"), "{{format}}"),),
            unit="ops",
        ),
        Row("Latency"),
        Panel(
            "Pipeline latency (bridge to worker)",
            _quantiles("cityhub:pipeline_latency_seconds"),
            "From the bridge receiving a message to the worker fetching its record.",
            unit="s",
            width=8,
        ),
        Panel(
            "Kafka produce latency (bridge)",
            _quantiles("cityhub:bridge_produce_latency_seconds"),
            "From handing a message to the producer to Kafka's confirmation (acks=all).",
            unit="s",
            width=8,
        ),
        Panel(
            "Normalise time per envelope (p99)",
            (Query(f"cityhub:normalise_latency_seconds:p99{{{J}}}", "p99"),),
            unit="s",
            width=8,
        ),
        Row("Lag"),
        Panel(
            "Lag in seconds, by stage",
            (Query(f"cityhub:stage_lag_seconds:max{{{J}}}", "{{stage}} {{topic}}"),),
            "0 when caught up; else the age of the last record taken (worker, history) or of "
            "the oldest undelivered one (deliver, over all subscriptions).",
            unit="s",
        ),
        Panel(
            "Lag in records, by stage",
            (Query(f"cityhub:stage_lag_records:sum{{{J}}}", "{{stage}} {{topic}}"),),
        ),
        Row("Errors"),
        Panel(
            "Dead letters per second, by stage",
            (
                Query(f"cityhub:deadletters:rate5m{{{J}}}", "{{stage}}"),
                Query(
                    _rate("cityhub_bridge_deadletters_total", "reason", "5m"), "bridge {{reason}}"
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Kafka write errors per second",
            (
                Query(_rate("cityhub_bridge_kafka_errors_total", "connector", "5m"), "bridge"),
                Query(
                    f"sum(rate(cityhub_processing_log_write_failures_total{{{J}}}[5m]))",
                    "processing log",
                ),
            ),
            unit="ops",
        ),
        Row("Bridge"),
        Panel(
            "Bridge connected",
            (Query(f"min(cityhub_bridge_connected{{{J}}})", "connected"),),
            "1 while every bridge has its MQTT session.",
            kind="stat",
            width=6,
        ),
        Panel(
            "Share of time under back-pressure",
            (
                Query(
                    f"max(rate(cityhub_bridge_backpressure_seconds_total{{{J}}}[1m]))",
                    "back-pressure",
                ),
            ),
            "Time the bridge did not take messages: in-flight limit or producer buffer full.",
            unit="percentunit",
            width=6,
        ),
        Panel(
            "In flight and its limit",
            (
                Query(f"sum(cityhub_bridge_inflight_messages{{{J}}})", "in flight"),
                Query(f"sum(cityhub_bridge_inflight_limit{{{J}}})", "limit"),
                Query(f"sum(cityhub_bridge_queued_messages{{{J}}})", "queued from the socket"),
            ),
        ),
        Row("MQTT broker"),
        Panel(
            "Messages the broker stores",
            (Query(f"max by (broker) (cityhub_mqtt_broker_messages_stored{{{J}}})", "{{broker}}"),),
            "Retained messages and those queued for sessions (also those away).",
            width=8,
        ),
        Panel(
            "Broker store size",
            (
                Query(
                    f"max by (broker) (cityhub_mqtt_broker_store_messages_bytes{{{J}}})",
                    "messages {{broker}}",
                ),
                Query(
                    f"max by (broker) (cityhub_mqtt_broker_store_file_bytes{{{J}}})",
                    "file {{broker}}",
                ),
            ),
            unit="bytes",
            width=8,
        ),
        Panel(
            "Broker clients",
            (
                Query(
                    f"max by (broker) (cityhub_mqtt_broker_clients_connected{{{J}}})",
                    "connected {{broker}}",
                ),
                Query(
                    f"max by (broker) (cityhub_mqtt_broker_clients_disconnected{{{J}}})",
                    "away, session kept {{broker}}",
                ),
            ),
            width=8,
        ),
        Row("Processes"),
        Panel(
            "Processes up",
            (Query(f"cityhub_process_up{{{J}}}", "{{process}}"),),
            "Under cityhub run: 1 while the supervisor can scrape the child.",
        ),
        Panel(
            "Components ready",
            (Query(f"min by (component) (cityhub_component_ready{{{J}}})", "{{component}}"),),
            "What /healthz says, per component, over every process that has it.",
        ),
    ),
)

SUBSCRIPTIONS = Dashboard(
    uid="cityhub-subscriptions",
    title="cityhub / subscriptions",
    description="Per subscription: deliveries, failures, lag, queue and latency.",
    items=(
        Row("Delivery"),
        Panel(
            "Delivered per second",
            (
                Query(
                    f"cityhub:subscription_delivered:rate1m{{{J}}}", "{{tenant}}/{{subscription}}"
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Failed attempts per second",
            (Query(f"cityhub:subscription_failed:rate5m{{{J}}}", "{{tenant}}/{{subscription}}"),),
            unit="ops",
        ),
        Panel(
            "Delivery latency",
            (
                Query(
                    f"cityhub:subscription_delivery_latency_seconds:p99{{{J}}}",
                    "p99 {{tenant}}/{{subscription}}",
                ),
            ),
            "From the record's write to the subscription's topic to its confirmed delivery.",
            unit="s",
        ),
        Panel(
            "Subscriptions by state",
            (Query(f"sum by (state) (cityhub_subscription_state{{{J}}})", "{{state}}"),),
        ),
        Row("Backlog"),
        Panel(
            "Lag in seconds",
            (
                Query(
                    f"max by (tenant, subscription) (cityhub_subscription_lag_seconds{{{J}}})",
                    "{{tenant}}/{{subscription}}",
                ),
            ),
            "Age of the oldest record not yet delivered (0 when caught up).",
            unit="s",
        ),
        Panel(
            "Lag in records",
            (
                Query(
                    f"max by (tenant, subscription) (cityhub_subscription_lag_messages{{{J}}})",
                    "{{tenant}}/{{subscription}}",
                ),
            ),
        ),
        Panel(
            "Queue depth",
            (
                Query(
                    f"max by (tenant, subscription) (cityhub_subscription_queue_depth{{{J}}})",
                    "{{tenant}}/{{subscription}}",
                ),
            ),
        ),
        Panel(
            "Dropped and dead-lettered per second",
            (
                Query(
                    _rate("cityhub_subscription_dropped_total", "tenant, subscription", "5m"),
                    "dropped {{tenant}}/{{subscription}}",
                ),
                Query(
                    _rate("cityhub_subscription_deadlettered_total", "tenant, subscription", "5m"),
                    "dead-lettered {{tenant}}/{{subscription}}",
                ),
            ),
            unit="ops",
        ),
        Row("Routing"),
        Panel(
            "Items routed per second, by source",
            (Query(_rate("cityhub_routed_total", "source"), "{{source}}"),),
            unit="ops",
        ),
        Panel(
            "Subscriptions routed to",
            (Query(f"max(cityhub_routed_subscriptions{{{J}}})", "subscriptions"),),
            kind="stat",
            width=6,
        ),
        Panel(
            "Personal items held (waits per second)",
            (Query(f"sum(rate(cityhub_personal_items_held_total{{{J}}}[5m]))", "held"),),
            "Deliveries waiting for the privacy views to catch up.",
            unit="ops",
            width=6,
        ),
    ),
)

REGISTRY_API = Dashboard(
    uid="cityhub-registry-api",
    title="cityhub / registry and API",
    description="The operator API's traffic, latency and refusals, and the registry's views.",
    items=(
        Row("API"),
        Panel(
            "Requests per second, by status",
            (Query(_rate("cityhub_api_requests_total", "status"), "{{status}}"),),
            unit="reqps",
        ),
        Panel(
            "Requests per second, by route",
            (Query(_rate("cityhub_api_requests_total", "route, method"), "{{method}} {{route}}"),),
            unit="reqps",
        ),
        Panel(
            "Latency by route (p99)",
            (Query(f"cityhub:api_request_duration_seconds:p99{{{J}}}", "{{route}}"),),
            unit="s",
        ),
        Panel(
            "Share of server errors (5xx)",
            (
                Query(
                    f'sum(rate(cityhub_api_requests_total{{{J}, status=~"5.."}}[5m])) '
                    f"/ sum(rate(cityhub_api_requests_total{{{J}}}[5m]))",
                    "5xx",
                ),
            ),
            unit="percentunit",
        ),
        Panel(
            "Refused by a quota, per second",
            (Query(_rate("cityhub_api_throttled_total", "reason"), "{{reason}}"),),
            unit="reqps",
        ),
        Panel(
            "Components ready",
            (Query(f"min by (component) (cityhub_component_ready{{{J}}})", "{{component}}"),),
        ),
        Row("Registry"),
        Panel(
            "Registry records, by kind",
            (Query(f"max by (kind) (cityhub_registry_records{{{J}}})", "{{kind}}"),),
        ),
        Panel(
            "Registered devices, by tenant",
            (Query(f"max by (tenant) (cityhub_registry_devices{{{J}}})", "{{tenant}}"),),
        ),
        Panel(
            "Registry records applied per second",
            (Query(f"sum(rate(cityhub_registry_apply_total{{{J}}}[5m]))", "applied"),),
            unit="ops",
        ),
        Panel(
            "Subscriptions in the view",
            (Query(f"max(cityhub_subscriptions{{{J}}})", "subscriptions"),),
            kind="stat",
        ),
    ),
)

HISTORY = Dashboard(
    uid="cityhub-history",
    title="cityhub / history",
    description="The history writer: rows into PostgreSQL, batches, lag, outages, partitions.",
    items=(
        Row("Writing"),
        Panel(
            "Rows written per second, by table",
            (Query(_rate("cityhub_history_rows_written_total", "table"), "{{table}}"),),
            unit="ops",
        ),
        Panel(
            "Rows skipped (already stored) and sent to DEFAULT, per second",
            (
                Query(
                    _rate("cityhub_history_rows_skipped_total", "table", "5m"),
                    "skipped {{table}}",
                ),
                Query(
                    _rate("cityhub_history_default_partition_rows_total", "table", "5m"),
                    "DEFAULT {{table}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Batch write time",
            (
                Query(
                    "histogram_quantile(0.5, sum by (le) "
                    f"(rate(cityhub_history_batch_seconds_bucket{{{J}}}[5m])))",
                    "p50",
                ),
                Query(f"cityhub:history_batch_seconds:p99{{{J}}}", "p99"),
            ),
            unit="s",
        ),
        Panel(
            "Records per batch (p50)",
            (
                Query(
                    "histogram_quantile(0.5, sum by (le) "
                    f"(rate(cityhub_history_batch_records_bucket{{{J}}}[5m])))",
                    "p50",
                ),
            ),
        ),
        Row("Lag and outages"),
        Panel(
            "Lag in seconds",
            (Query(f'cityhub:stage_lag_seconds:max{{{J}, stage="history"}}', "{{topic}}"),),
            unit="s",
        ),
        Panel(
            "Lag in records",
            (Query(f'cityhub:stage_lag_records:sum{{{J}, stage="history"}}', "{{topic}}"),),
        ),
        Panel(
            "Paused on a database outage",
            (Query(f"max(cityhub_history_paused{{{J}}})", "paused"),),
            kind="stat",
            width=6,
        ),
        Panel(
            "Write retries (last hour)",
            (Query(f"sum(increase(cityhub_history_write_retries_total{{{J}}}[1h]))", "retries"),),
            kind="stat",
            width=6,
        ),
        Panel(
            "Partitions made and dropped (last day)",
            (
                Query(
                    _increase("cityhub_history_partitions_created_total", "1d"), "made {{table}}"
                ),
                Query(
                    _increase("cityhub_history_partitions_dropped_total", "1d"), "dropped {{table}}"
                ),
            ),
        ),
    ),
)

DASHBOARDS = {
    "cityhub-pipeline.json": PIPELINE,
    "cityhub-subscriptions.json": SUBSCRIPTIONS,
    "cityhub-registry-api.json": REGISTRY_API,
    "cityhub-history.json": HISTORY,
}
"""Each dashboard by the name of its file in deploy/grafana/."""


def rendered() -> dict[str, str]:
    """Every dashboard's JSON text by file name."""
    return {name: render(dashboard) for name, dashboard in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    """Write the dashboards into the folder ``argv[0]`` (default ``deploy/grafana``)."""
    folder = Path(argv[0] if argv else "deploy/grafana")
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        (folder / name).write_text(text)
        print(folder / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
