"""Debian's Prometheus against a real `cityhub run`: the hub's target is up, every rule group of
deploy/prometheus/rules.yml is loaded and evaluates without error, every Grafana panel's query
runs (the pipeline's throughput with data after traffic), and the subscription alerts fire for a
webhook that accepts connections and never answers.

The rules are rendered for the test with short durations (every ``for:`` 2 s, the subscription
lag SLO 3 s): the real ones wait minutes. Everything else in them is as committed. Prometheus
runs on a free loopback port with its own data folder under the test's temporary directory,
scraping every second, and is stopped at the end."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from cityhub.schemas.settings import MqttSettings, Settings
from cityhub.streams.devtools.observability.dashboards import DASHBOARDS
from cityhub.streams.devtools.observability.grafana import expand, panels_of
from cityhub.streams.devtools.simulator import simulate as run_simulation
from cityhub.streams.devtools.stack.layout import StackLayout

from .hub import MQTT_HOST, MQTT_PORT, free_port
from .subscribers import WebhookReceiver, wait_for
from .test_subscriptions_e2e import DEVICES, running_hub

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
JOB = "cityhub"
TEST_FOR = "2s"
TEST_SUBSCRIPTION_LAG_SLO_S = 3
RATE = 60.0
BROKER_ALERTS = {"CityhubMqttBrokerQueueGrowing", "CityhubMqttBrokerStoreLarge"}
MESSAGES = 300


def rules_for_the_test(text: str) -> str:
    """rules.yml with every ``for:`` at TEST_FOR and the subscription lag SLO at
    TEST_SUBSCRIPTION_LAG_SLO_S; nothing else changed."""
    doc = yaml.safe_load(text)
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = TEST_FOR
            if rule.get("record") == "cityhub:slo_subscription_lag_seconds":
                rule["expr"] = f"vector({TEST_SUBSCRIPTION_LAG_SLO_S})"
    return str(yaml.safe_dump(doc, sort_keys=False))


@contextmanager
def prometheus(workdir: Path, target: str) -> Iterator[str]:
    """Debian's Prometheus scraping ``target`` every second with the test's rules; yields its
    base URL, stopped (and waited for) on exit."""
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus is missing: run deploy/system-deps.sh"
    rules = workdir / "rules.yml"
    rules.write_text(rules_for_the_test(RULES.read_text()))
    config = workdir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {"job_name": JOB, "static_configs": [{"targets": [target]}]},
                ],
            }
        )
    )
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (workdir / "prometheus.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus not ready within 30 s"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def api(url: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}/api/v1/{path}{query}", timeout=10) as r:
        doc = json.loads(r.read())
    assert doc["status"] == "success", doc
    return doc["data"]


def firing(url: str) -> set[tuple[str, str]]:
    """(alert name, subscription) of every firing alert."""
    return {
        (a["labels"]["alertname"], a["labels"].get("subscription", ""))
        for a in api(url, "alerts")["alerts"]
        if a["state"] == "firing"
    }


def hook(sub_id: str, url: str) -> dict[str, Any]:
    return {
        "id": sub_id,
        "name": sub_id,
        "filter": {"device_types": ["air_quality", "noise", "weather", "water_level"]},
        "delivery": {"kind": "webhook", "url": url, "timeout_s": 1},
        "queue_size": 5,
    }


async def test_prometheus_scrapes_the_hub_evaluates_the_rules_and_alerts_on_a_hung_webhook(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    receiver = WebhookReceiver(modes={"hang": "hang"})
    await receiver.start()
    store = StackLayout.under(Settings().stack.state_dir).mosquitto_persistence / "mosquitto.db"
    env = {
        "CITYHUB_DELIVERY__WEBHOOK_MAX_ATTEMPTS": "2",
        "CITYHUB_DELIVERY__WEBHOOK_MIN_RETRY_SECONDS": "0",  # the attempts alone decide
        "CITYHUB_DELIVERY__WEBHOOK_BACKOFF_BASE_SECONDS": "0.1",
        "CITYHUB_DELIVERY__WEBHOOK_BACKOFF_CAP_SECONDS": "0.5",
        "CITYHUB_DELIVERY__FAILING_AFTER_ATTEMPTS": "2",
        "CITYHUB_BRIDGE__BROKER_STORE_FILE": str(store),
    }
    try:
        async with running_hub(tmp_path, **env) as (hub, client):
            await client.subscribe("demo", "demo", hook("hang", receiver.url("hang")))
            assert await wait_for(lambda: hub.metric("cityhub_routed_subscriptions") == 1, 30)
            with prometheus(tmp_path, f"127.0.0.1:{hub.management_port}") as url:
                # The hub's target is up (Prometheus takes its targets some seconds after it is
                # ready), before the traffic: a rate needs samples from before and during it.
                def target_up() -> bool:
                    targets = api(url, "targets")["activeTargets"]
                    return [t["health"] for t in targets] == ["up"]

                assert await wait_for(target_up, 20), api(url, "targets")
                settings = Settings(mqtt=MqttSettings(host=MQTT_HOST, port=MQTT_PORT))
                await run_simulation(settings, DEVICES, RATE, count=MESSAGES)

                # Every group loaded, every rule evaluated without error.
                def rules() -> list[dict[str, Any]]:
                    return list(api(url, "rules")["groups"])

                want = {g["name"] for g in yaml.safe_load(RULES.read_text())["groups"]}
                assert {g["name"] for g in rules()} == want
                assert await wait_for(
                    lambda: all(r["health"] == "ok" for g in rules() for r in g["rules"]), 15
                ), [(r["name"], r.get("lastError")) for g in rules() for r in g["rules"]]

                # The hung webhook: its subscription fails, lags and gives batches up (two
                # attempts, no least time here), and the three alerts fire.
                expected = {
                    ("CityhubSubscriptionFailing", "hang"),
                    ("CityhubSubscriptionLagging", "hang"),
                    ("CityhubDeliveryDeadLetters", "hang"),
                }
                assert await wait_for(lambda: expected <= firing(url), 60, interval=1.0), (
                    api(url, "alerts"),
                    hub.log_tail(),
                )
                # Nothing else is wrong with the hub: no other alert about it fires. The broker's
                # alerts may: the local Mosquitto is shared with every other test, whose
                # persistent sessions can hold thousands of messages.
                others = {name for name, _ in firing(url)} - {n for n, _ in expected}
                assert others <= BROKER_ALERTS, others

                # Every panel's query runs; the pipeline's throughput shows the traffic.
                variables = {"job": JOB}
                for dashboard in DASHBOARDS.values():
                    for panel in panels_of(dashboard):
                        for q in panel.queries:
                            api(url, "query", query=expand(q.expr, variables))

                def throughput(stage: str) -> float:
                    query = f'cityhub:stage_throughput:rate1m{{stage="{stage}"}}'
                    return sum(
                        float(r["value"][1]) for r in api(url, "query", query=query)["result"]
                    )

                for stage in ("bridge", "normalise", "route"):
                    assert throughput(stage) > 0, f"no throughput recorded for {stage}"

                # The series the alerts read that the hub makes for them.
                def values(query: str, label: str) -> dict[str, float]:
                    result = api(url, "query", query=query)["result"]
                    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}

                assert values("cityhub_process_up", "process") == dict.fromkeys(
                    ("bridge", "worker-1", "worker-side", "api", "deliver", "history"), 1.0
                )
                assert (
                    values("min by (component) (cityhub_component_ready)", "component")["registry"]
                    == 1.0
                )
                assert values("cityhub_consumer_lag_seconds", "topic"), "no worker lag in seconds"
                assert values("cityhub_history_lag_seconds", "topic"), "no history lag in seconds"

                # The broker's figures: Mosquitto republishes them every sys_interval (10 s); a
                # new subscriber does not always get every one retained at once.
                def broker_figures() -> bool:
                    query = "cityhub_mqtt_broker_messages_stored"
                    return bool(api(url, "query", query=query)["result"])

                assert await wait_for(broker_figures, 25), "no broker figures scraped"
    finally:
        await receiver.stop()
    assert time.monotonic() - started < 150, "the test is meant to stay under 2.5 minutes"
