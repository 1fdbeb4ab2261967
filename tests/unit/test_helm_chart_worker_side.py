"""The Helm chart's worker-side Deployment, as `cityhub run`'s worker-side process: the pipeline
workers run `cityhub worker --stages pipeline` and one pod `--stages side` (the open-data
publisher and device health) as the worker's Kafka user; with `workerSide.enabled: false`, or
both side stages switched off in `settings`, there is no worker-side and the workers run
`--stages all`, so that no stage is lost. Rendered with the pinned helm that `make lint` builds
(deploy/k8s-check/check.sh validates the renderings against the Kubernetes schemas)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "cityhub"
HELM = ROOT / "build" / "tools" / "helm"
SMALL_CITY = ROOT / "deploy" / "helm" / "values-small-city.yaml"


def render(values: dict[str, Any] | None = None, *files: Path, tmp: Path) -> list[dict[str, Any]]:
    """The chart's manifests with ``values`` (and value files), as ``helm template`` makes them."""
    assert HELM.exists(), "helm is missing: run `make build/tools/.helm-v4.3.2` (make lint does)"
    values_file = tmp / "values.json"
    values_file.write_text(json.dumps(values or {}))
    args = [f"--values={f}" for f in (*files, values_file)]
    result = subprocess.run(
        [str(HELM), "template", "cityhub", str(CHART), "--namespace", "cityhub", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def component_of(doc: dict[str, Any]) -> str | None:
    component = doc.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component")
    return str(component) if component is not None else None


def workload(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    (found,) = [
        d
        for d in docs
        if d["kind"] in {"Deployment", "StatefulSet"} and component_of(d) == component
    ]
    return found


def container(doc: dict[str, Any]) -> dict[str, Any]:
    (only,) = doc["spec"]["template"]["spec"]["containers"]
    return dict(only)


def env(doc: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container(doc).get("env", [])}


def secret_volumes(doc: dict[str, Any]) -> dict[str, str]:
    volumes = doc["spec"]["template"]["spec"]["volumes"]
    return {v["name"]: v["secret"]["secretName"] for v in volumes if "secret" in v}


def worker_side_objects(docs: list[dict[str, Any]]) -> list[str]:
    return [
        f"{d['kind']}/{d['metadata']['name']}" for d in docs if component_of(d) == "worker-side"
    ]


@pytest.fixture
def default_docs(tmp_path: Path) -> list[dict[str, Any]]:
    return render(tmp=tmp_path)


def test_workers_run_the_pipeline_and_worker_side_the_side_stages(
    default_docs: list[dict[str, Any]],
) -> None:
    worker = workload(default_docs, "worker")
    side = workload(default_docs, "worker-side")
    assert worker["kind"] == "StatefulSet"
    assert container(worker)["args"] == ["worker", "--stages", "pipeline"]
    assert side["kind"] == "Deployment"
    assert side["metadata"]["name"] == "cityhub-worker-side"
    assert side["spec"]["replicas"] == 1
    assert container(side)["args"] == ["worker", "--stages", "side"]


def test_worker_side_logs_in_to_kafka_as_the_worker(default_docs: list[dict[str, Any]]) -> None:
    worker = workload(default_docs, "worker")
    side = workload(default_docs, "worker-side")
    assert env(side)["CITYHUB_KAFKA__SASL_USERNAME"] == "cityhub-worker"
    assert env(side)["CITYHUB_KAFKA__SASL_USERNAME"] == env(worker)["CITYHUB_KAFKA__SASL_USERNAME"]
    assert secret_volumes(side)["kafka-password"] == "cityhub-worker"
    # The privacy views it keeps (the subjects' keys among them) need the KEK; MQTT and
    # PostgreSQL it never reaches.
    assert secret_volumes(side) == secret_volumes(worker)
    assert "CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY_FILE" in env(side)
    assert not {"CITYHUB_MQTT__PASSWORD_FILE", "CITYHUB_HISTORY__PASSWORD_FILE"} & set(env(side))


def test_worker_side_has_the_workers_settings_probes_and_scraping(
    default_docs: list[dict[str, Any]],
) -> None:
    worker = container(workload(default_docs, "worker"))
    side_doc = workload(default_docs, "worker-side")
    side = container(side_doc)
    for key in ("envFrom", "startupProbe", "livenessProbe", "readinessProbe", "ports"):
        assert side[key] == worker[key], key
    assert side["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"memory": "1Gi"},
    }
    # The metrics Service (the ServiceMonitor's) selects every cityhub pod of the release.
    (metrics,) = [
        d
        for d in default_docs
        if d["kind"] == "Service" and d["metadata"]["name"].endswith("-metrics")
    ]
    pod_labels = side_doc["spec"]["template"]["metadata"]["labels"]
    assert metrics["spec"]["selector"].items() <= pod_labels.items()
    (policy,) = [
        d
        for d in default_docs
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "cityhub-worker-side"
    ]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_worker_side_takes_its_scheduling_and_budget_from_its_values(tmp_path: Path) -> None:
    values = {
        "workerSide": {
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "3Gi"}},
            "nodeSelector": {"pool": "side"},
            "tolerations": [{"key": "side", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {}},
            "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
            "extraEnv": [{"name": "CITYHUB_LOG_LEVEL", "value": "debug"}],
        },
        "networkPolicy": {
            "extraEgress": {"worker": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}]}
        },
    }
    docs = render(values, tmp=tmp_path)
    side = workload(docs, "worker-side")
    spec = side["spec"]["template"]["spec"]
    assert container(side)["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"memory": "3Gi"},
    }
    assert spec["nodeSelector"] == {"pool": "side"}
    assert spec["tolerations"][0]["key"] == "side"
    assert spec["affinity"] == {"nodeAffinity": {}}
    assert "topologySpreadConstraints" not in spec
    assert env(side)["CITYHUB_LOG_LEVEL"] == "debug"
    assert "CITYHUB_LOG_LEVEL" not in env(workload(docs, "worker"))
    assert "PodDisruptionBudget/cityhub-worker-side" in worker_side_objects(docs)
    # The worker's extra egress is worker-side's too: it has no Kafka login of its own either.
    (policy,) = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "cityhub-worker-side"
    ]
    assert {"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]} in policy["spec"]["egress"]


def test_worker_side_has_no_budget_and_no_autoscaler_by_default(tmp_path: Path) -> None:
    docs = render({"keda": {"enabled": True}}, tmp=tmp_path)
    assert sorted(worker_side_objects(docs)) == [
        "Deployment/cityhub-worker-side",
        "NetworkPolicy/cityhub-worker-side",
    ]
    scaled = [d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "ScaledObject"]
    assert scaled == ["cityhub-worker"]
    docs = render({"hpa": {"enabled": True}}, tmp=tmp_path)
    targets = {
        d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"
    }
    assert targets == {"cityhub-worker", "cityhub-delivery"}


def test_without_worker_side_the_workers_run_every_stage(tmp_path: Path) -> None:
    docs = render({"workerSide": {"enabled": False}}, tmp=tmp_path)
    assert worker_side_objects(docs) == []
    assert container(workload(docs, "worker"))["args"] == ["worker", "--stages", "all"]


@pytest.mark.parametrize(
    ("settings", "side_runs"),
    [
        ({"CITYHUB_OPEN_DATA__ENABLED": False, "CITYHUB_HEALTH__ENABLED": "false"}, False),
        ({"CITYHUB_OPEN_DATA__ENABLED": "0", "CITYHUB_HEALTH__ENABLED": "Off"}, False),
        ({"CITYHUB_OPEN_DATA__ENABLED": "false"}, True),
        ({"CITYHUB_HEALTH__ENABLED": False}, True),
        ({"CITYHUB_OPEN_DATA__ENABLED": "true", "CITYHUB_HEALTH__ENABLED": "false"}, True),
    ],
)
def test_worker_side_runs_only_while_a_side_stage_is_switched_on(
    tmp_path: Path, settings: dict[str, Any], side_runs: bool
) -> None:
    docs = render({"settings": settings}, tmp=tmp_path)
    stages = container(workload(docs, "worker"))["args"]
    if side_runs:
        assert container(workload(docs, "worker-side"))["args"] == ["worker", "--stages", "side"]
        assert stages == ["worker", "--stages", "pipeline"]
    else:
        assert worker_side_objects(docs) == []
        assert stages == ["worker", "--stages", "all"]


def test_with_one_login_for_every_component_worker_side_uses_it(tmp_path: Path) -> None:
    docs = render(None, SMALL_CITY, tmp=tmp_path)
    side = workload(docs, "worker-side")
    assert env(side)["CITYHUB_KAFKA__SASL_USERNAME"] == "CITYHUBAPIKEY12345"
    assert secret_volumes(side)["kafka-password"] == "cityhub-kafka"
    assert container(workload(docs, "worker"))["args"] == ["worker", "--stages", "pipeline"]


def test_the_schema_refuses_a_misspelt_worker_side_value(tmp_path: Path) -> None:
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps({"workerSide": {"replicsa": 2}}))
    result = subprocess.run(
        [str(HELM), "template", "cityhub", str(CHART), f"--values={values_file}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "replicsa" in result.stderr
