"""The offline Kubernetes check (deploy/k8s-check): the validator refuses what a cluster would
refuse or silently drop, and what would stop cityhub from starting; the Strimzi resources are
cityhub's own topics and ACL matrix. `make lint` runs the whole check on the chart's renderings
(deploy/k8s-check/check.sh); these tests hold the validator to wrong manifests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.devtools.stack.kafka_acls import component_grants
from cityhub.streams.topic_admin import topic_specs

CHECK = Path(__file__).resolve().parents[2] / "deploy" / "k8s-check"
STRIMZI_CRDS = CHECK / "crds" / "strimzi"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"k8s_check_{name}", CHECK / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def validate() -> ModuleType:
    return _load("validate")


@pytest.fixture(scope="module")
def strimzi() -> ModuleType:
    return _load("strimzi_resources")


@pytest.fixture(scope="module")
def crds(validate: ModuleType) -> Any:
    return validate.CrdSchemas.from_paths([STRIMZI_CRDS])


def _deployment(**container_extra: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "cityhub",
        "image": "registry.example/cityhub:0.1.0",
        "args": ["worker"],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "livenessProbe": {"httpGet": {"path": "/metrics", "port": 9464}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 9464}},
        "env": [{"name": "CITYHUB_LOG_FORMAT", "value": "json"}],
        **container_extra,
    }
    labels = {"app.kubernetes.io/name": "cityhub"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "cityhub-worker"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def _problems(validate: ModuleType, crds: Any, *docs: dict[str, Any]) -> list[str]:
    return [str(p) for p in validate.validate_documents([("test", d) for d in docs], crds)]


def test_a_valid_workload_passes(validate: ModuleType, crds: Any) -> None:
    assert _problems(validate, crds, _deployment()) == []


def test_a_misspelt_field_of_a_builtin_kind_is_refused(validate: ModuleType, crds: Any) -> None:
    doc = _deployment()
    doc["spec"]["replicaz"] = 2  # the API server would drop it without a word
    problems = _problems(validate, crds, doc)
    assert len(problems) == 2  # one per Kubernetes version checked
    assert all("'replicaz' was unexpected" in p for p in problems)


def test_a_wrong_type_is_refused(validate: ModuleType, crds: Any) -> None:
    doc = _deployment(ports=[{"name": "management", "containerPort": "9464"}])
    problems = _problems(validate, crds, doc)
    assert problems
    assert all("containerPort: '9464' is not of type 'integer'" in p for p in problems)


def test_a_kind_without_a_schema_is_refused(validate: ModuleType, crds: Any) -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert _problems(validate, crds, doc) == [
        "test: Widget/w: no CRD schema for Widget in example.com/v1: add its CRD to the check"
    ]


def _topic(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {"name": "cityhub.raw", "labels": {"strimzi.io/cluster": "c"}},
        "spec": {"partitions": 8, "replicas": 3, **spec},
    }


def test_a_custom_resource_is_checked_against_its_crd(validate: ModuleType, crds: Any) -> None:
    # Any topic config key is allowed (the CRD preserves unknown fields there)...
    assert _problems(validate, crds, _topic(config={"retention.ms": "1000"})) == []
    # ...but a misspelt field of the resource itself is not, nor a number out of range.
    assert _problems(validate, crds, _topic(replica=3)) == [
        "test: KafkaTopic/cityhub.raw: at spec: Additional properties are not allowed "
        "('replica' was unexpected)"
    ]
    assert _problems(validate, crds, _topic(partitions=0)) == [
        "test: KafkaTopic/cityhub.raw: at spec.partitions: 0 is less than the minimum of 1"
    ]


def test_a_strimzi_acl_with_an_unknown_operation_is_refused(
    validate: ModuleType, crds: Any
) -> None:
    user = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaUser",
        "metadata": {"name": "cityhub-bridge"},
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {
                "type": "simple",
                "acls": [{"resource": {"type": "topic", "name": "x"}, "operations": ["Publish"]}],
            },
        },
    }
    (problem,) = _problems(validate, crds, user)
    assert "authorization.acls.0.operations.0: 'Publish' is not one of" in problem


def test_closed_schema_keeps_open_what_the_crd_keeps_open(validate: ModuleType) -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "nullable": True},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    closed = validate.closed_schema(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["a"]["type"] == ["string", "null"]
    assert "additionalProperties" not in closed["properties"]["free"]
    assert closed["properties"]["map"]["additionalProperties"] == {"type": "string"}
    assert "additionalProperties" not in schema  # the CRD's own schema is left as it was


def test_an_unknown_setting_is_refused(validate: ModuleType, crds: Any) -> None:
    doc = _deployment(env=[{"name": "CITYHUB_KAFKA_BOOTSTRAP_SERVERS", "value": "k:9092"}])
    (problem,) = _problems(validate, crds, doc)
    assert "not a cityhub setting: CITYHUB_KAFKA_BOOTSTRAP_SERVERS" in problem


def test_settings_that_do_not_fit_together_are_refused(validate: ModuleType, crds: Any) -> None:
    # SASL_SSL without a username: cityhub would refuse to start.
    doc = _deployment(
        env=[
            {"name": "CITYHUB_KAFKA__SECURITY_PROTOCOL", "value": "SASL_SSL"},
            {"name": "CITYHUB_KAFKA__SASL_MECHANISM", "value": "SCRAM-SHA-512"},
            {"name": "CITYHUB_KAFKA__SASL_PASSWORD_FILE", "value": "/run/password"},
        ]
    )
    (problem,) = _problems(validate, crds, doc)
    assert "settings refused" in problem
    assert "kafka.sasl_username" in problem


def test_the_environment_is_resolved_as_kubernetes_would(validate: ModuleType) -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "settings"}}, {"configMapRef": {"name": "gone"}}],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "CITYHUB_MQTT__CLIENT_ID", "value": "bridge-$(POD_NAME)"},
            {"name": "CITYHUB_LOG_LEVEL", "value": "debug"},
        ],
    }
    environment, problems = validate.container_environment(
        container, {"settings": {"CITYHUB_LOG_LEVEL": "info", "CITYHUB_MQTT__PORT": "8883"}}
    )
    assert environment == {
        "CITYHUB_LOG_LEVEL": "debug",  # env wins over envFrom
        "CITYHUB_MQTT__PORT": "8883",
        "POD_NAME": validate.SECRET_PLACEHOLDER,
        "CITYHUB_MQTT__CLIENT_ID": f"bridge-{validate.SECRET_PLACEHOLDER}",
    }
    assert problems == ["envFrom ConfigMap 'gone' is not in the rendering"]


def test_workload_rules_no_schema_has(validate: ModuleType, crds: Any) -> None:
    doc = _deployment(
        resources={"requests": {"memory": "128Mi"}},
        readinessProbe={"httpGet": {"path": "/metrics", "port": 9464}},
        env=[{"name": "CITYHUB_MQTT__PASSWORD", "value": "hunter2"}],
    )
    problems = _problems(validate, crds, doc)
    assert len(problems) == 3
    assert "no cpu and memory requests" in problems[0]
    assert "liveness and readiness probes ask the same thing" in problems[1]
    assert "CITYHUB_MQTT__PASSWORD has its value in the manifest" in problems[2]


def test_the_strimzi_topics_are_the_hubs_own(strimzi: ModuleType) -> None:
    settings = strimzi.default_settings(3)
    topics = strimzi.render_topics(settings, "c")
    specs = topic_specs(settings)
    assert [t["spec"]["topicName"] for t in topics] == [s.name for s in specs]
    assert [t["spec"]["config"] for t in topics] == [s.config for s in specs]
    registry = next(t for t in topics if t["metadata"]["name"] == "cityhub.registry")
    assert registry["spec"]["config"]["cleanup.policy"] == "compact"
    assert registry["spec"]["config"]["min.insync.replicas"] == "2"
    assert {t["spec"]["replicas"] for t in topics} == {3}


def test_the_strimzi_users_carry_the_secure_stacks_acl_matrix(strimzi: ModuleType) -> None:
    settings = strimzi.default_settings(3)
    users = {u["metadata"]["name"]: u for u in strimzi.render_users(settings, "c")}
    for component, grants in component_grants(settings).items():
        acls = users[f"cityhub-{component}"]["spec"]["authorization"]["acls"]
        granted = {
            (a["resource"]["type"], a["resource"]["name"], a["resource"]["patternType"], op)
            for a in acls
            for op in a["operations"]
        }
        expected = {
            (
                grant.resource_type.name.lower(),
                grant.resource_name,
                "prefix" if grant.pattern_type.name == "PREFIXED" else "literal",
                grant.operation.name.capitalize(),
            )
            for grant in grants
        }
        assert granted == expected, component
    assert "authorization" not in users["cityhub-admin"]["spec"]  # a super user of the cluster


def test_only_the_components_that_sign_or_route_read_the_subscriptions(
    strimzi: ModuleType,
) -> None:
    settings = strimzi.default_settings(3)
    subscriptions = Topics.for_prefix("cityhub").subscriptions
    readers = {
        user["metadata"]["name"]
        for user in strimzi.render_users(settings, "c")
        for acl in user["spec"].get("authorization", {}).get("acls", [])
        if acl["resource"]["name"] == subscriptions and "Read" in acl["operations"]
    }
    assert readers == {"cityhub-api", "cityhub-worker", "cityhub-delivery"}


def test_the_committed_strimzi_files_are_current(strimzi: ModuleType) -> None:
    assert strimzi.main(["--check"]) == 0


def test_a_stale_strimzi_file_is_found(strimzi: ModuleType, tmp_path: Path) -> None:
    assert strimzi.main(["--write", "--output", str(tmp_path)]) == 0
    topics = tmp_path / "topics.yaml"
    topics.write_text(topics.read_text().replace("partitions: 8", "partitions: 7", 1))
    assert strimzi.main(["--check", "--output", str(tmp_path)]) == 1


def test_the_committed_strimzi_manifests_pass(validate: ModuleType) -> None:
    strimzi_files = sorted((CHECK.parent / "strimzi").glob("*.yaml"))
    assert [f.name for f in strimzi_files] == ["kafka-cluster.yaml", "topics.yaml", "users.yaml"]
    assert validate.main(["--crds", str(STRIMZI_CRDS), *map(str, strimzi_files)]) == 0
    # Without the CRDs nothing of them can be checked, and that is a failure, not a pass.
    assert validate.main([str(f) for f in strimzi_files]) == 1


def test_settings_are_read_from_the_container_alone(
    validate: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shell's own CITYHUB_* variables must not make a manifest pass or fail.
    monkeypatch.setenv("CITYHUB_KAFKA__PARTITIONS", "none")
    with pytest.raises(ValueError):
        Settings()
    assert validate.settings_problems({"CITYHUB_LOG_FORMAT": "json"}) == []
    assert validate.settings_problems({"CITYHUB_KAFKA__PARTITIONS": "0"}) != []


def test_each_rendering_finds_its_own_config_maps(validate: ModuleType, crds: Any) -> None:
    # Two renderings with a ConfigMap of one name: each workload reads its own file's.
    def settings(protocol: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cityhub-settings"},
            "data": {"CITYHUB_KAFKA__SECURITY_PROTOCOL": protocol},
        }

    workload = _deployment(envFrom=[{"configMapRef": {"name": "cityhub-settings"}}])
    named = [("plain.yaml", settings("PLAINTEXT")), ("plain.yaml", workload)]
    named += [("sasl.yaml", settings("SASL_SSL")), ("sasl.yaml", workload)]
    problems = list(validate.validate_documents(named, crds))
    assert [p.source for p in problems] == ["sasl.yaml"]  # SASL_SSL without a login
