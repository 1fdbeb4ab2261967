"""Validates Kubernetes manifests offline, strictly: what `make lint` runs on the Helm chart's
renderings and on deploy/strimzi (deploy/k8s-check/check.sh).

Every document must pass, and none may go unchecked:

- a built-in kind (Deployment, Service, NetworkPolicy...) against the Kubernetes JSON schemas
  that kubernetes-validate bundles, in their strict form (a field the API does not know is an
  error, not silently dropped), for each Kubernetes version in ``KUBERNETES_VERSIONS``;
- a custom resource (Strimzi's, Prometheus Operator's, KEDA's) against the ``openAPIV3Schema``
  of its CustomResourceDefinition, closed the same way (``closed_schema``): the API server
  would prune an unknown field without a word, so a misspelt one must fail here;
- a kind with no schema at all is an error;
- every container's environment, with the ConfigMaps it takes ``envFrom`` resolved, must be a
  valid cityhub configuration: each ``CITYHUB_*`` name a setting, and the values together
  accepted by ``Settings`` (values from Secrets stand in as placeholders);
- every workload's containers have CPU and memory requests, liveness and readiness probes
  that ask different things, and no secret-looking variable with a literal value.

What this cannot see: CEL rules (``x-kubernetes-validations``) of the CRDs, admission webhooks,
and anything a real cluster decides (scheduling, whether a referenced Secret exists).

Usage: ``validate.py --crds DIR [--crds DIR...] FILE...``; exit 1 and one line per problem if
any document fails.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]  # ships no type hints
import pydantic
import yaml  # type: ignore[import-untyped]  # types-PyYAML is not in the lock

from cityhub.schemas.settings import Settings, unknown_variables

KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
"""The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and the newest schema
kubernetes-validate has: an API removed or changed between them fails one of the two."""

POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
SECRET_PLACEHOLDER = "value-from-a-secret"  # noqa: S105  # a stand-in, not a password
"""What a variable taken from a Secret (or another reference) stands in as: the settings only
check its form, and the real value is never in a manifest."""

Document = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a document is refused, with where it is."""

    source: str
    document: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.document}: {self.message}"


class _Loader(yaml.CSafeLoader):  # type: ignore[misc]  # untyped base
    """YAML 1.1's safe loader, fast, which also reads a plain ``=`` as the string it is (some
    CRDs list it as an operator; PyYAML takes it for the obscure ``value`` tag)."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: str(node.value))


def load_documents(text: str) -> list[Document]:
    """The non-empty YAML documents of ``text`` (a multi-document stream)."""
    return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc]  # a safe loader


def describe(doc: Mapping[str, Any]) -> str:
    """``Kind/name`` of a document, for messages."""
    metadata = doc.get("metadata") or {}
    return f"{doc.get('kind', '?')}/{metadata.get('name', '?')}"


def closed_schema(schema: Any) -> Any:
    """A copy of a CRD's OpenAPI v3 schema made strict for jsonschema: an object with
    ``properties`` takes no others (unless it says ``x-kubernetes-preserve-unknown-fields`` or
    has its own ``additionalProperties``), and ``nullable`` fields also take null."""
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                close(item)
            return
        if not isinstance(node, dict):
            return
        for value in node.values():
            close(value)
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        if node.get("nullable") and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]

    close(schema)
    return schema


class CrdSchemas:
    """The schemas of custom resources, by (group, version, kind), read from CRD files."""

    def __init__(self) -> None:
        self._schemas: dict[tuple[str, str, str], Any] = {}

    @classmethod
    def from_paths(cls, paths: Iterable[Path]) -> CrdSchemas:
        """Every CustomResourceDefinition in the YAML files of ``paths`` (files, or folders
        read recursively)."""
        schemas = cls()
        for path in paths:
            files = sorted(path.rglob("*.yaml")) if path.is_dir() else [path]
            for file in files:
                for doc in load_documents(file.read_text()):
                    if doc.get("kind") == "CustomResourceDefinition":
                        schemas.add(doc)
        return schemas

    def add(self, crd: Mapping[str, Any]) -> None:
        spec = crd["spec"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = version.get("schema", {}).get("openAPIV3Schema")
            if schema is not None:
                key = (spec["group"], version["name"], spec["names"]["kind"])
                self._schemas[key] = closed_schema(schema)

    def get(self, group: str, version: str, kind: str) -> Any | None:
        return self._schemas.get((group, version, kind))

    def __len__(self) -> int:
        return len(self._schemas)


def _is_builtin(group: str) -> bool:
    """Whether an API group is Kubernetes' own (core, apps, policy, *.k8s.io...)."""
    return "." not in group or group.endswith(".k8s.io")


def schema_problems(doc: Document, crds: CrdSchemas) -> list[str]:
    """Why ``doc`` does not fit its kind's schema (empty when it does)."""
    api_version = str(doc.get("apiVersion", ""))
    kind = str(doc.get("kind", ""))
    if not api_version or not kind:
        return ["no apiVersion or kind"]
    if not (doc.get("metadata") or {}).get("name"):
        return ["no metadata.name"]
    group, _, version = api_version.rpartition("/")
    if _is_builtin(group):
        problems = []
        for k8s in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, k8s, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"Kubernetes {k8s} has no {kind} in {api_version}")
            except kubernetes_validate.ValidationError as error:
                problems.append(f"Kubernetes {k8s}: {_where(error)}{error.message}")
        return problems
    schema = crds.get(group, version, kind)
    if schema is None:
        return [f"no CRD schema for {kind} in {api_version}: add its CRD to the check"]
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{_where(error)}{error.message}"
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]


def _where(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    return f"at {path}: " if path else ""


def pod_spec(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec of a workload (or of a Pod), if ``doc`` has one."""
    if doc.get("kind") == "Pod":
        return doc.get("spec")
    if doc.get("kind") in POD_TEMPLATE_KINDS:
        return ((doc.get("spec") or {}).get("template") or {}).get("spec")
    return None


_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def container_environment(
    container: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, str]]
) -> tuple[dict[str, str], list[str]]:
    """The environment Kubernetes would give ``container`` (``envFrom`` ConfigMaps first, then
    ``env``, with ``$(VAR)`` references expanded), values from Secrets or fields as
    placeholders; and the problems found (a ConfigMap that is not in the rendering)."""
    environment: dict[str, str] = {}
    problems: list[str] = []
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref is None:
            continue  # a Secret's keys: only their names could be checked, and we have none
        data = config_maps.get(ref.get("name", ""))
        if data is None:
            problems.append(f"envFrom ConfigMap {ref.get('name')!r} is not in the rendering")
            continue
        environment.update({k: str(v) for k, v in data.items()})
    for variable in container.get("env") or []:
        if "value" in variable:
            value = _REFERENCE.sub(
                lambda m: environment.get(m.group(1), m.group(0)), str(variable["value"])
            )
        else:
            value = SECRET_PLACEHOLDER
        environment[variable["name"]] = value
    return environment, problems


def settings_problems(environment: Mapping[str, str]) -> list[str]:
    """Why cityhub would refuse to start with ``environment`` (empty when it would start): a
    ``CITYHUB_*`` name that is no setting, or values ``Settings`` rejects."""
    unknown = unknown_variables(environment)
    if unknown:
        return [f"not a cityhub setting: {'; '.join(unknown)}"]
    cityhub_only = {k: v for k, v in environment.items() if k.startswith("CITYHUB_")}
    # pydantic-settings reads os.environ: give it exactly this container's variables.
    with mock.patch.dict(os.environ, cityhub_only, clear=True):
        try:
            Settings()
        except pydantic.ValidationError as error:
            return [
                f"settings refused: {'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
                for e in error.errors()
            ]
    return []


def environment_problems(
    doc: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """Problems with the cityhub settings of each container of a workload in ``doc``."""
    spec = pod_spec(doc)
    if spec is None:
        return []
    problems = []
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        environment, missing = container_environment(container, config_maps)
        name = container.get("name", "?")
        problems += [f"container {name}: {p}" for p in missing]
        problems += [f"container {name}: {p}" for p in settings_problems(environment)]
    return problems


_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)


def workload_problems(doc: Mapping[str, Any]) -> list[str]:
    """What every cityhub workload must have that no schema asks for: CPU and memory requests,
    a liveness and a readiness probe that ask different things, and no secret-looking variable
    with its value written in the manifest (secrets come by reference or as files)."""
    spec = pod_spec(doc)
    if spec is None:
        return []
    problems = []
    for container in spec.get("containers") or []:
        name = container.get("name", "?")
        requests = (container.get("resources") or {}).get("requests") or {}
        if not {"cpu", "memory"} <= set(requests):
            problems.append(f"container {name}: no cpu and memory requests")
        live, ready = container.get("livenessProbe"), container.get("readinessProbe")
        if live is None or ready is None:
            problems.append(f"container {name}: needs a liveness and a readiness probe")
        elif live.get("httpGet") == ready.get("httpGet") and live.get("exec") == ready.get("exec"):
            problems.append(f"container {name}: liveness and readiness probes ask the same thing")
        for variable in container.get("env") or []:
            variable_name = str(variable["name"])
            literal = "value" in variable and not variable_name.endswith("_FILE")
            if literal and _SECRET_NAME.search(variable_name):
                problems.append(
                    f"container {name}: {variable_name} has its value in the manifest; "
                    "take it from a Secret (valueFrom or a mounted file)"
                )
    return problems


def validate_documents(
    named: Iterable[tuple[str, Document]], crds: CrdSchemas
) -> Iterator[Problem]:
    """Every problem of the documents (each with the file it came from), a workload's
    ``envFrom`` resolved against the ConfigMaps of its own file (one rendering each)."""
    documents = list(named)
    config_maps: dict[str, dict[str, Mapping[str, str]]] = {}
    for source, doc in documents:
        name = (doc.get("metadata") or {}).get("name")
        if doc.get("kind") == "ConfigMap" and name:
            config_maps.setdefault(source, {})[str(name)] = doc.get("data") or {}
    for source, doc in documents:
        messages = [
            *schema_problems(doc, crds),
            *environment_problems(doc, config_maps.get(source, {})),
            *workload_problems(doc),
        ]
        for message in messages:
            yield Problem(source, describe(doc), message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crds", type=Path, action="append", default=[], help="CRD files/folders")
    parser.add_argument("files", type=Path, nargs="+", help="manifests (multi-document YAML)")
    args = parser.parse_args(argv)
    crds = CrdSchemas.from_paths(args.crds)
    named = [(str(f), doc) for f in args.files for doc in load_documents(f.read_text())]
    problems = list(validate_documents(named, crds))
    for problem in problems:
        print(problem, file=sys.stderr)
    kinds = sorted({describe(doc).split("/")[0] for _, doc in named})
    print(
        f"k8s-check: {len(named)} documents in {len(args.files)} files ({', '.join(kinds)}) "
        f"against Kubernetes {' and '.join(KUBERNETES_VERSIONS)} and {len(crds)} CRD "
        f"versions: {len(problems)} problem(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
