#!/usr/bin/env bash
# Offline checks of cityhub's Kubernetes deployment (docs/kubernetes.md, "What is validated how");
# `make lint` runs it after building helm (the Makefile's $(HELM_STAMP)). No cluster is used:
#   1. helm lint --strict of deploy/helm/cityhub with the default values, each value set, and
#      values-variants.yaml (the chart's other branches);
#   2. helm template of each into build/k8s-check/; a misspelt value is refused
#      (values.schema.json);
#   3. helm package: the packaged chart carries deploy/prometheus/rules.yml's content (the chart
#      links to it) and renders it into the PrometheusRule;
#   4. deploy/strimzi/topics.yaml and users.yaml equal a new rendering from cityhub's code;
#   5. every rendered manifest and deploy/strimzi/*.yaml validated (validate.py): built-in kinds
#      against the Kubernetes 1.29 and 1.37 JSON schemas (kubernetes-validate, strict), custom
#      resources against their CRDs' schemas (Strimzi's copied in crds/strimzi; the Prometheus
#      Operator's and KEDA's from their Go modules, pinned below), and each container's
#      CITYHUB_* environment against cityhub's settings.
# Environment: HELM (default build/tools/helm), PYTHON (.venv/bin/python), GO (go on PATH, else
# /usr/local/go/bin/go).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
started=$(date +%s)

HELM=${HELM:-build/tools/helm}
PYTHON=${PYTHON:-.venv/bin/python}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
# The CRDs of the custom resources the chart renders, from these modules' zips (the Go module
# proxy, checked against the checksum database): Apache-2.0, both.
PROMETHEUS_OPERATOR=github.com/prometheus-operator/prometheus-operator@v0.85.0
KEDA=github.com/kedacore/keda/v2@v2.21.0

chart=deploy/helm/cityhub
out=build/k8s-check
rm -rf "$out"
mkdir -p "$out"

module_dir() {
  "$GO" mod download -json "$1" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])'
}
prometheus_crds=$(module_dir "$PROMETHEUS_OPERATOR")/example/prometheus-operator-crd
keda_crds=$(module_dir "$KEDA")/config/crd/bases

# helm reports the rules file that the chart links to at every load; that line is expected.
quiet_helm() {
  "$HELM" "$@" 2> >(grep -v 'found symbolic link in path' >&2)
}

value_sets=(default deploy/helm/values-small-city.yaml deploy/helm/values-large-city.yaml
  deploy/k8s-check/values-variants.yaml)
rendered=()
for values in "${value_sets[@]}"; do
  name=$(basename "$values" .yaml)
  args=()
  [ "$values" != default ] && args=(--values "$values")
  quiet_helm lint --strict "$chart" "${args[@]}" >"$out/lint-$name.txt" || {
    cat "$out/lint-$name.txt" >&2
    echo "k8s-check: helm lint failed for $name" >&2
    exit 1
  }
  quiet_helm template cityhub "$chart" --namespace cityhub "${args[@]}" >"$out/$name.yaml"
  rendered+=("$out/$name.yaml")
done

# values.schema.json refuses a misspelt value (helm would ignore it otherwise).
if quiet_helm template cityhub "$chart" --set bridge.replicsa=3 >/dev/null 2>&1; then
  echo "k8s-check: the chart accepted a misspelt value (bridge.replicsa): values.schema.json" >&2
  exit 1
fi

# The packaged chart must hold the rules themselves, not a link that points nowhere.
quiet_helm package "$chart" --destination "$out" >/dev/null
packaged=$(ls "$out"/cityhub-*.tgz)
if ! tar -xzOf "$packaged" cityhub/files/prometheus-rules.yml | cmp -s - deploy/prometheus/rules.yml; then
  echo "k8s-check: $packaged does not carry deploy/prometheus/rules.yml as files/prometheus-rules.yml" >&2
  exit 1
fi
grep -q '^kind: PrometheusRule' "$out/values-large-city.yaml" || {
  echo "k8s-check: values-large-city renders no PrometheusRule" >&2
  exit 1
}

"$PYTHON" deploy/k8s-check/strimzi_resources.py --check

"$PYTHON" deploy/k8s-check/validate.py \
  --crds deploy/k8s-check/crds/strimzi \
  --crds "$prometheus_crds/monitoring.coreos.com_servicemonitors.yaml" \
  --crds "$prometheus_crds/monitoring.coreos.com_prometheusrules.yaml" \
  --crds "$keda_crds/keda.sh_scaledobjects.yaml" \
  --crds "$keda_crds/keda.sh_triggerauthentications.yaml" \
  "${rendered[@]}" deploy/strimzi/*.yaml

echo "k8s-check: passed in $(($(date +%s) - started)) s"
