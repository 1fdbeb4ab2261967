"""The Helm chart's pods, run as the kubelet would run them, on the real local stack: for each
component the rendered container's command, its environment (ConfigMap, fields, ``$(VAR)``
expansion), and its Secrets written as files at their mount paths. Each must start, answer its
liveness probe (``/metrics``), become ready (``/healthz``: connected and caught up), and stop on
SIGTERM within the pod's grace period. The offline check (deploy/k8s-check) proves the manifests
are well-formed; this proves the settings and secret files they carry make a working hub.

What differs from a cluster, on purpose: the pods' addresses are loopback (the chart binds
0.0.0.0 inside a pod's own network namespace; here that would be every address of the
machine), the ports are free ones, and the services are the local stack's (plain Kafka and
MQTT: the secured ones have tests of their own). Each run has its own topic prefix, consumer
groups, MQTT share group and client ids (sessions that end on disconnect), and history schema.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # types-PyYAML is not in the lock

from cityhub.schemas.settings import Settings
from cityhub.streams.history.connection import read_password

from .hub import BOOTSTRAP, MQTT_HOST, MQTT_PORT, free_port, random_kek

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "cityhub"
HELM_VERSION = "v4.3.2"
HELM = ROOT / "build" / "tools" / "helm"
READY_TIMEOUT_S = 120.0
GRACE_PERIOD_S = 45.0
"""The chart's terminationGracePeriodSeconds."""

COMPONENTS = ("bridge", "worker", "worker-side", "api", "delivery", "history")
"""Every workload the chart renders with these values: the workers run `--stages pipeline`,
worker-side `--stages side` (tests/unit/test_helm_chart_worker_side.py)."""


def _helm() -> Path:
    """The pinned helm, built by the Makefile's rule if this machine has none yet."""
    if not HELM.exists():
        subprocess.run(
            ["make", f"build/tools/.helm-{HELM_VERSION}"], cwd=ROOT, check=True, timeout=900
        )
    return HELM


def _render(values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(json.dumps(values))
    out = subprocess.run(
        [
            str(_helm()),
            "template",
            "t",
            str(CHART),
            "--namespace",
            "cityhub",
            "-f",
            str(values_file),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _pod_spec(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    for doc in docs:
        labels = doc.get("metadata", {}).get("labels", {})
        if doc["kind"] in {"Deployment", "StatefulSet"} and (
            labels.get("app.kubernetes.io/component") == component
        ):
            return dict(doc["spec"]["template"]["spec"])
    raise AssertionError(f"no workload for {component}")


_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _pod_environment(
    spec: dict[str, Any],
    config_maps: dict[str, dict[str, str]],
    secrets: dict[str, dict[str, str]],
    pod_name: str,
    volumes_root: Path,
) -> tuple[list[str], dict[str, str]]:
    """The container's arguments and environment as the kubelet makes them, with each Secret
    volume written under ``volumes_root`` (mode 0440, as the chart asks) and the variables that
    name a mount path pointed there."""
    (container,) = spec["containers"]
    mounts: dict[str, Path] = {}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        target = volumes_root / mount["name"]
        target.mkdir(parents=True)
        if "secret" in volume:
            data = secrets[volume["secret"]["secretName"]]
            for item in volume["secret"]["items"]:
                path = target / item["path"]
                path.write_text(data[item["key"]])
                path.chmod(0o440)
        mounts[mount["mountPath"]] = target
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environment.update(config_maps[source["configMapRef"]["name"]])
    for variable in container.get("env", []):
        if "value" in variable:
            value = _REFERENCE.sub(lambda m: environment[m.group(1)], variable["value"])
        else:
            ref = variable["valueFrom"]
            if "fieldRef" in ref:
                assert ref["fieldRef"]["fieldPath"] == "metadata.name"
                value = pod_name
            else:
                key_ref = ref["secretKeyRef"]
                value = secrets[key_ref["name"]][key_ref["key"]]
        for mount_path, local in mounts.items():
            if value.startswith(mount_path + "/"):
                value = str(local) + value[len(mount_path) :]
        environment[variable["name"]] = value
    return list(container["args"]), environment


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # loopback
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


@pytest.mark.timeout(600)
def test_every_component_starts_is_live_then_ready_and_stops(
    tmp_path: Path, history_settings: Settings
) -> None:
    run = uuid.uuid4().hex[:10]
    prefix = f"k8s{run}"
    http_port, management_port = free_port(), free_port()
    values = {
        "kafka": {
            "bootstrapServers": BOOTSTRAP,
            "topicPrefix": prefix,
            "partitions": 2,
            "replicationFactor": 1,
            "securityProtocol": "PLAINTEXT",
        },
        "mqtt": {
            "host": MQTT_HOST,
            "port": MQTT_PORT,
            "tls": False,
            "username": "",
            "passwordSecret": {"name": ""},
            "delivery": {"username": ""},
            "shareGroup": f"k8s{run}",
            # The session ends when the bridge disconnects: nothing queues for it afterwards.
            "sessionExpirySeconds": 0,
        },
        "history": {
            "host": history_settings.history.host,
            "port": history_settings.history.port,
            "database": history_settings.history.database,
            "user": history_settings.history.user,
            "schema": history_settings.history.db_schema,
        },
        "ports": {"http": http_port, "management": management_port},
        "settings": {
            "CITYHUB_WORKER__APP_ID": f"k8s{run}",
            "CITYHUB_DELIVERY__GROUP_PREFIX": f"k8s{run}-delivery",
            "CITYHUB_LOG_LEVEL": "info",
        },
    }
    docs = _render(values, tmp_path)
    config_maps = {
        d["metadata"]["name"]: {k: str(v) for k, v in d["data"].items()}
        for d in docs
        if d["kind"] == "ConfigMap"
    }
    secrets = {
        "cityhub-postgres": {"password": read_password(history_settings)},
        "cityhub-kek": {"key-encryption-key": random_kek()},
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    ports: dict[str, int] = {}
    logs: dict[str, Path] = {}
    log_files: dict[str, Any] = {}
    try:
        for component in COMPONENTS:
            spec = _pod_spec(docs, component)
            pod = f"t-cityhub-{component}-k8s{run}"
            args, environment = _pod_environment(
                spec, config_maps, secrets, pod, tmp_path / component
            )
            # Each "pod" binds loopback on ports of its own (one network namespace here).
            ports[component] = free_port()
            environment |= {
                "CITYHUB_HTTP__HOST": "127.0.0.1",
                "CITYHUB_MANAGEMENT__HOST": "127.0.0.1",
                "CITYHUB_MANAGEMENT__PORT": str(ports[component]),
                "PATH": os.environ["PATH"],
            }
            (tmp_path / component / "cwd").mkdir(parents=True, exist_ok=True)
            logs[component] = tmp_path / f"{component}.log"
            processes[component] = subprocess.Popen(  # our own command
                [sys.executable, "-m", "cityhub.streams", *args],
                env=environment,
                cwd=tmp_path / component / "cwd",
                stdout=subprocess.DEVNULL,
                stderr=log_files.setdefault(component, logs[component].open("wb")),
            )
        live: dict[str, float] = {}
        ready: dict[str, float] = {}
        started = time.monotonic()
        while len(ready) < len(COMPONENTS) and time.monotonic() - started < READY_TIMEOUT_S:
            for component, process in processes.items():
                assert process.poll() is None, (
                    f"{component} exited with {process.returncode}: "
                    + logs[component].read_text()[-3000:]
                )
                base = f"http://127.0.0.1:{ports[component]}"
                if component not in live and _get(f"{base}/metrics") == 200:
                    live[component] = time.monotonic() - started
                checked = component in live and component not in ready
                if checked and _get(f"{base}/healthz") == 200:
                    ready[component] = time.monotonic() - started
            time.sleep(0.5)
        not_ready = {c: logs[c].read_text()[-2000:] for c in COMPONENTS if c not in ready}
        assert not not_ready, f"not ready in {READY_TIMEOUT_S} s: {not_ready}"
        assert all(live[c] <= ready[c] for c in COMPONENTS)
        # The API serves the Ingress's three paths on its own port, and the management paths
        # only on the management port.
        api = f"http://127.0.0.1:{http_port}"
        assert _get(f"{api}/api/v1/openapi.json") == 200
        assert _get(f"{api}/sta/v1.1") == 401  # there, and it asks for an API key
        assert _get(f"{api}/ngsi-ld/v1/context.jsonld") == 200
        assert _get(f"{api}/metrics") == 404
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        stopped_in: dict[str, float] = {}
        stop_started = time.monotonic()
        for component, process in processes.items():
            try:
                process.wait(timeout=GRACE_PERIOD_S)
                stopped_in[component] = time.monotonic() - stop_started
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log_file in log_files.values():
            log_file.close()
    assert set(stopped_in) == set(COMPONENTS), "a component outlived the pod's grace period"
    print(f"live after {live}, ready after {ready}, stopped within {stopped_in} (s)")
