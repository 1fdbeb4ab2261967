#!/usr/bin/env bash
# Smoke-runs the image built by deploy/image/build.sh with podman, against the local stack
# (`cityhub stack up`: Kafka 127.0.0.1:9092, PostgreSQL 127.0.0.1:5434), and checks its contents
# (docs/image.md). Each check prints one line; the first that fails stops the script non-zero.
#   1. the layer's file list: no compiler, no pip/apt caches, no private keys, no .git;
#   2. the configuration: user 10001, entrypoint `cityhub`, working directory, ports, labels;
#   3. `cityhub --version` and `cityhub settings` (secrets masked) in a container;
#   4. `cityhub api` in a container on free loopback ports, with a read-only root file system, no
#      capabilities and no-new-privileges: /healthz 200 on the management port, the OpenAPI
#      document and a 401 without a key on /api/v1, exit code 0 after SIGTERM;
#   5. `cityhub run --workers 1` the same way: every child healthy, exit code 0 after SIGTERM.
# podman's storage is a temporary folder of this run (nothing is left in /var/lib/containers);
# the container runs with the host's network (loopback only), a topic prefix and a history schema
# of its own, and is stopped at the end whatever happens.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
version=$(git show HEAD:pyproject.toml | .venv/bin/python -c 'import sys, tomllib; print(tomllib.load(sys.stdin.buffer)["project"]["version"])')
archive=$repo/build/image/cityhub-$version.oci.tar
[ -f "$archive" ] || { echo "no $archive: run make image first" >&2; exit 1; }

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
# runc, not crun: crun refuses a host whose cgroups are mixed v1/v2 ("cgroups in hybrid mode not
# supported"), which some CI machines and sandboxes have; runc runs on both.
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing from Debian: ${missing[*]}" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cityhub-smoke.XXXXXX")
container=cityhub-smoke-$$
podman=(podman --root "$work/storage" --runroot "$work/run" --tmpdir "$work/tmp" --runtime runc
  --cgroup-manager cgroupfs --events-backend none)
cleanup() {
  "${podman[@]}" rm --force --time 10 "$container-api" "$container-run" >/dev/null 2>&1 || true
  "${podman[@]}" system reset --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
ok() { printf 'ok   %s\n' "$*"; }
fail() {
  printf 'FAIL %s\n' "$*" >&2
  exit 1
}

# 1. Contents: the layer's file list.
layer=$(.venv/bin/python - "$archive" "$work/layer.list" <<'EOF'
"""Writes the file list of the image's only layer and prints its uncompressed size in bytes."""
import gzip, json, sys, tarfile

with tarfile.open(sys.argv[1]) as oci:
    def blob(digest: str) -> bytes:
        return oci.extractfile("./blobs/sha256/" + digest.split(":", 1)[1]).read()

    index = json.loads(oci.extractfile("./index.json").read())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    (layer,) = manifest["layers"]
    data = gzip.decompress(blob(layer["digest"]))
with open(sys.argv[2], "w") as out, tarfile.open(fileobj=__import__("io").BytesIO(data)) as t:
    for member in t:
        out.write(f"{member.uid} {member.mode:o} {member.name.removeprefix('./')}\n")
print(len(data))
EOF
)
ok "layer read: $((layer / 1024 / 1024)) MiB uncompressed, $(wc -l <"$work/layer.list") entries"
forbidden='(^| )usr/bin/(gcc|cc|g\+\+|c\+\+|clang|ld|as|make)(-[0-9.]+)?$|/\.cache/|var/cache/apt/.+\.bin$|var/lib/apt/lists/.+_Packages|(^| )opt/cityhub/bin/pip|site-packages/pip/|\.git/|id_rsa|\.pem\.key$|private/.+\.(key|pem)$|(^| )\.cityhub/'
if grep -E "$forbidden" "$work/layer.list" >"$work/forbidden.list"; then
  fail "the layer holds files it must not: $(head -5 "$work/forbidden.list" | tr '\n' ' ')"
fi
ok "no compiler, pip, package caches, private keys, .git or local state in the layer"
grep -q " opt/cityhub/bin/cityhub$" "$work/layer.list" || fail "no /opt/cityhub/bin/cityhub"
grep -Eq "^10001 [0-9]+ var/lib/cityhub/?$" "$work/layer.list" ||
  fail "/var/lib/cityhub is not owned by uid 10001"
ok "cityhub installed in /opt/cityhub; /var/lib/cityhub owned by uid 10001"

# 2. Load it and read its configuration.
"${podman[@]}" load --quiet -i "$archive" >/dev/null
image=localhost/$version:latest
config=$("${podman[@]}" image inspect --format json "$image")
.venv/bin/python - "$config" <<'EOF' || fail "image configuration"
import json, sys

(image,) = json.loads(sys.argv[1])
config = image["Config"]
assert config["User"] == "10001:10001", config["User"]
assert config["Entrypoint"] == ["cityhub"], config["Entrypoint"]
assert config["WorkingDir"] == "/var/lib/cityhub", config["WorkingDir"]
assert set(config["ExposedPorts"]) == {"8080/tcp", "9464/tcp"}, config["ExposedPorts"]
labels = config["Labels"]
for key in ("version", "revision", "licenses", "created", "title"):
    assert labels.get(f"org.opencontainers.image.{key}"), key
assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
print(f"ok   configuration: user {config['User']}, entrypoint {config['Entrypoint']}, "
      f"ports {sorted(config['ExposedPorts'])}, revision "
      f"{labels['org.opencontainers.image.revision'][:12]}, size {image['Size'] // 2**20} MiB")
EOF

# This machine's hard limits are below podman's defaults for a root container (nofile 1048576,
# nproc 4194304) and the sandbox has no CAP_SYS_RESOURCE to raise them: ask for what is allowed.
limits=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
run=("${podman[@]}" run --rm --network=host "${limits[@]}")

# 3. The command line.
printed=$("${run[@]}" "$image" --version)
[ "$printed" = "cityhub, version $version" ] || fail "--version printed: $printed"
ok "cityhub --version: $printed"
whoami=$("${run[@]}" --entrypoint id "$image" -u)
[ "$whoami" = 10001 ] || fail "runs as uid $whoami"
ok "runs as uid 10001"
settings=$("${run[@]}" -e CITYHUB_MQTT__PASSWORD=smoke-secret-not-shown "$image" settings)
grep -q smoke-secret-not-shown <<<"$settings" && fail "cityhub settings shows a secret"
.venv/bin/python -c 'import json, sys; s = json.loads(sys.argv[1]); assert s["http"]["host"] == "0.0.0.0", s["http"]' \
  "$settings" || fail "cityhub settings"
ok "cityhub settings: JSON, http.host 0.0.0.0, a password given in the environment masked"

# 4 and 5. The hub against the local stack, its secrets as files the container user reads (as a
#    Kubernetes secret volume gives them).
free_port() { .venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
status() { curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$1" || true; }
mkdir -p "$work/secrets"
.venv/bin/python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())' >"$work/secrets/kek"
cp .cityhub/stack/postgres/password "$work/secrets/history-password"
chown 10001:10001 "$work/secrets"/*
chmod 0400 "$work/secrets"/*

# start_hub NAME ARGS...: `cityhub ARGS...` in a container NAME as a restricted Kubernetes pod
# runs it (a read-only root file system, no capabilities, no privilege gain), on free loopback
# ports (api_port, management_port), with a topic prefix, consumer group, history schema and MQTT
# client of its own (whose session ends when it disconnects), plus the options in hub_env;
# returns once /healthz answers 200.
start_hub() {
  local name=$1
  shift
  api_port=$(free_port)
  management_port=$(free_port)
  prefix=img$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
  "${podman[@]}" run --detach --name "$name" --network=host "${limits[@]}" \
    --read-only --cap-drop=ALL --security-opt=no-new-privileges \
    -v "$work/secrets:/run/secrets/cityhub:ro" \
    -e CITYHUB_HTTP__HOST=127.0.0.1 -e CITYHUB_MANAGEMENT__HOST=127.0.0.1 \
    -e CITYHUB_HTTP__PORT="$api_port" -e CITYHUB_MANAGEMENT__PORT="$management_port" \
    -e CITYHUB_KAFKA__TOPIC_PREFIX="$prefix" -e CITYHUB_KAFKA__PARTITIONS=1 \
    -e CITYHUB_WORKER__APP_ID="$prefix-app" \
    -e CITYHUB_MQTT__CLIENT_ID="$prefix-bridge" -e CITYHUB_MQTT__SESSION_EXPIRY_SECONDS=0 \
    -e CITYHUB_HISTORY__DB_SCHEMA="$prefix" \
    -e CITYHUB_HISTORY__PASSWORD_FILE=/run/secrets/cityhub/history-password \
    -e CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY_FILE=/run/secrets/cityhub/kek \
    "${hub_env[@]}" "$image" "$@" >/dev/null
  local started
  started=$(date +%s)
  until [ "$(status "http://127.0.0.1:$management_port/healthz")" = 200 ]; do
    if [ $(($(date +%s) - started)) -ge 90 ] ||
      [ "$("${podman[@]}" inspect --format '{{.State.Running}}' "$name")" != true ]; then
      "${podman[@]}" logs --tail 40 "$name" >&2 || true
      fail "cityhub $* not healthy within 90 s"
    fi
    sleep 0.5
  done
  ok "cityhub $* (read-only root, no capabilities) healthy after $(($(date +%s) - started)) s"
}

# stop_hub NAME: SIGTERM, and the exit code must be 0.
stop_hub() {
  "${podman[@]}" stop --time 30 "$1" >/dev/null
  local exit_code
  exit_code=$("${podman[@]}" inspect --format '{{.State.ExitCode}}' "$1")
  [ "$exit_code" = 0 ] || {
    "${podman[@]}" logs --tail 20 "$1" >&2
    fail "exit code $exit_code after SIGTERM"
  }
  ok "stopped by SIGTERM with exit code 0"
}

# 4. The operator API alone.
hub_env=()
start_hub "$container-api" api
openapi=$(status "http://127.0.0.1:$api_port/api/v1/openapi.json")
[ "$openapi" = 200 ] || fail "GET /api/v1/openapi.json: $openapi"
tenants=$(status "http://127.0.0.1:$api_port/api/v1/tenants")
[ "$tenants" = 401 ] || fail "GET /api/v1/tenants without a key: $tenants, not 401"
ok "/api/v1/openapi.json 200, /api/v1/tenants without a key 401"
stop_hub "$container-api"

# 5. The whole hub, supervised: the bridge (MQTT 127.0.0.1:1883), a worker, the API and delivery,
#    each healthy in the supervisor's /healthz. Without the history writer, which would leave a
#    schema of its own in the stack's PostgreSQL.
hub_env=(-e CITYHUB_HISTORY__ENABLED=false)
start_hub "$container-run" run --workers 1
health=$(curl -s --max-time 3 "http://127.0.0.1:$management_port/healthz")
.venv/bin/python - "$health" <<'EOF' || fail "cityhub run's /healthz: $health"
import json, sys

components = json.loads(sys.argv[1])["components"]
parts = sorted({name.split(".")[0] for name in components})
assert {"bridge", "worker-1", "api", "deliver"} <= set(parts), parts
assert all(components.values()), components
print(f"ok   cityhub run: {len(components)} components of {', '.join(parts)} healthy")
EOF
[ "$(status "http://127.0.0.1:$api_port/api/v1/openapi.json")" = 200 ] || fail "cityhub run's API"
stop_hub "$container-run"
