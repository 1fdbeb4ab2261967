#!/usr/bin/env bash
# Builds cityhub's OCI image without Docker and without pulling a base image (docs/image.md):
#   1. a wheel of cityhub from the tracked files of this tree (setuptools pinned by hash in
#      requirements-build.lock, in a throw-away venv);
#   2. the locked runtime wheels (requirements-runtime.lock, every file checked by its hash);
#   3. a minimal Debian 12 root file system made by mmdebstrap from the Debian mirror this machine
#      uses, with python3.11 and ca-certificates only; a venv at /opt/cityhub with exactly those
#      wheels, installed by the locked pip run from its wheel (so no pip stays in the image);
#      a user `cityhub` (uid/gid 10001); no apt lists, caches, manuals or compilers;
#   4. one layer, an OCI configuration (user, entrypoint, working directory, ports, labels) and an
#      OCI layout made by umoci, and the same layout as an OCI archive that podman or skopeo load.
# Output: build/image/oci (layout, tag = the version) and build/image/cityhub-<version>.oci.tar.
# Needs root (mmdebstrap's root mode) or working user namespaces (its unshare mode).
# Environment: CITYHUB_IMAGE_APT_SOURCES (a sources.list or deb822 .sources file; default the
# machine's Debian one), CITYHUB_IMAGE_SOURCE (the source repository URL for the label; default
# the git remote `origin`, and no label when there is none).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$repo/deploy/image
out=$repo/build/image
venv_python=$repo/.venv/bin/python
started=$(date +%s)

# --- the same facts as the Dockerfile's (tests/unit/test_image_definition.py compares them) ----
IMAGE_USER=cityhub
IMAGE_UID=10001
IMAGE_HOME=/var/lib/cityhub
IMAGE_VENV=/opt/cityhub
IMAGE_PYTHON=python3.11
IMAGE_SUITE=bookworm
IMAGE_ENTRYPOINT=cityhub
RUNTIME_LOCK=deploy/image/requirements-runtime.lock
# The API listens on every address of the container (its network namespace is the boundary);
# the management port too, so that probes and Prometheus reach it: restrict it with a
# NetworkPolicy (deploy/helm), never publish it.
IMAGE_ENV=(
  "PATH=$IMAGE_VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  "PYTHONUNBUFFERED=1"
  "CITYHUB_HTTP__HOST=0.0.0.0"
  "CITYHUB_MANAGEMENT__HOST=0.0.0.0"
)
IMAGE_PORTS=(8080/tcp 9464/tcp)
# -------------------------------------------------------------------------------------------------

log() { printf 'image: [%3ss] %s\n' "$(($(date +%s) - started))" "$*" >&2; }

install_tools() {
  local missing=()
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  command -v umoci >/dev/null 2>&1 || missing+=(umoci)
  # mmdebstrap verifies the mirror's Release files with Debian's archive keys.
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing from Debian: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# The Debian mirror this machine installs from: the deb822 file or the one-line list that names
# the suite; mmdebstrap reads either format from a file.
apt_sources() {
  if [ -n "${CITYHUB_IMAGE_APT_SOURCES:-}" ]; then
    echo "$CITYHUB_IMAGE_APT_SOURCES"
    return
  fi
  local candidate
  for candidate in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    if [ -s "$candidate" ] && grep -Eq "^[^#]*\b$IMAGE_SUITE\b" "$candidate"; then
      echo "$candidate"
      return
    fi
  done
  echo "no Debian $IMAGE_SUITE sources found; set CITYHUB_IMAGE_APT_SOURCES" >&2
  return 1
}

install_tools
"$venv_python" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' ||
  { log "the project's .venv must be CPython 3.11 (the image's python; wheels are chosen by it)"; exit 1; }
cd "$repo"
# The image holds a commit (HEAD, or CITYHUB_IMAGE_COMMIT), not uncommitted changes: its
# revision label is then true.
revision=$(git rev-parse --verify "${CITYHUB_IMAGE_COMMIT:-HEAD}^{commit}")
git diff --quiet "$revision" -- || log "changes since $revision are not in the image"
version=$(git show "$revision:pyproject.toml" | "$venv_python" -c 'import sys, tomllib; print(tomllib.load(sys.stdin.buffer)["project"]["version"])')
# Every time stamp in the image (the wheel's entries, files' times, bytecode's checks, the
# created label) is the commit's time, so that two builds of one commit from the same mirror
# content are the same image.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct "$revision")}
source_url=${CITYHUB_IMAGE_SOURCE:-$(git config --get remote.origin.url || true)}
sources_file=$(apt_sources)

work=$(mktemp -d "${TMPDIR:-/tmp}/cityhub-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/wheels"

# 1. The wheel, from the commit's files (a build in the tree would also leave build/lib beside
#    the editable install's links).
log "wheel of cityhub $version ($revision)"
git archive --format=tar "$revision" | tar -x -C "$work/src"
# The console's vendor files (htmx, Leaflet) come from the npm registry (deploy/console, locked)
# and are not tracked: built here, then taken into the wheel.
make -C "$repo" --no-print-directory console-assets >&2
cp -r "$repo/streams/console/static/third-party" "$work/src/streams/console/static/"
"$venv_python" -m venv "$work/build-venv"
"$work/build-venv/bin/pip" install -q --no-cache-dir --require-hashes -r "$here/requirements-build.lock"
"$work/build-venv/bin/python" -m build -q --wheel --no-isolation --outdir "$work/wheels" "$work/src" \
  >/dev/null 2>"$work/wheel.log" || { cat "$work/wheel.log" >&2; exit 1; }

# 2. The runtime wheels and the pip that installs them, all checked by hash. The lock is complete
#    (--require-hashes refuses a dependency that is not pinned in it).
log "runtime wheels from $RUNTIME_LOCK"
"$venv_python" -m pip download -q --no-cache-dir --require-hashes --only-binary=:all: --no-deps \
  -r "$RUNTIME_LOCK" -d "$work/wheels"
# pip itself, pinned with its hashes in the project's lock: it runs from its wheel in the chroot.
awk '/^pip==/{p=1} p{print} p&&!/\\$/{exit}' requirements.lock >"$work/pip.lock"
"$venv_python" -m pip download -q --no-cache-dir --require-hashes --only-binary=:all: --no-deps \
  -r "$work/pip.lock" -d "$work/pip"
cp "$RUNTIME_LOCK" "$work/wheels/requirements-runtime.lock"

# 3. The root file system. The essential variant: Debian's Essential:yes packages (dpkg, a shell,
#    coreutils; no apt, no compiler), python3.11, the CA certificates (TLS to Kafka, MQTT and
#    webhooks) and passwd (for useradd), installed by this machine's apt from outside; no
#    recommends. The merged-usr hook makes /bin, /lib, /sbin links as Debian 12 has them without
#    the usrmerge package (which would bring a whole perl). dpkg keeps no manuals,
#    documentation (but the licences) or translations. The hooks run in the new system
#    (chroot), with no network needed. mmdebstrap copies this machine's resolv.conf and hostname
#    in: they go (a container runtime provides its own).
log "root file system (Debian $IMAGE_SUITE from $sources_file)"
rootfs_tar=$work/rootfs.tar
pip_wheel=$(basename "$work"/pip/pip-*.whl)
# SOURCE_DATE_EPOCH in the chroot makes Python's bytecode hash-checked rather than stamped with
# the install's times.
# Commands in the chroot see none of this machine's environment (its PIP_* settings included).
in_chroot="chroot \"\$1\" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
# $1 in a hook is the new system's root, given by mmdebstrap: single quotes keep it for the hook.
# shellcheck disable=SC2016
mmdebstrap --quiet --variant=essential --format=tar \
  --include="$IMAGE_PYTHON,ca-certificates,passwd" \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --aptopt='Acquire::Languages "none"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook="copy-in $work/wheels $work/pip /tmp" \
  --customize-hook="$in_chroot $IMAGE_PYTHON -m venv --without-pip $IMAGE_VENV" \
  --customize-hook="$in_chroot $IMAGE_VENV/bin/python /tmp/pip/$pip_wheel/pip install -q \
    --no-index --find-links /tmp/wheels --require-hashes --only-binary=:all: \
    -r /tmp/wheels/requirements-runtime.lock" \
  --customize-hook="$in_chroot sh -c '$IMAGE_VENV/bin/python /tmp/pip/$pip_wheel/pip install -q \
    --no-index --no-deps /tmp/wheels/cityhub-*.whl'" \
  --customize-hook="$in_chroot groupadd --gid $IMAGE_UID $IMAGE_USER" \
  --customize-hook="$in_chroot useradd --uid $IMAGE_UID --gid $IMAGE_UID --home-dir $IMAGE_HOME \
    --create-home --shell /usr/sbin/nologin $IMAGE_USER" \
  --customize-hook="$in_chroot $IMAGE_VENV/bin/cityhub --version" \
  --customize-hook='rm -rf "$1"/tmp/wheels "$1"/tmp/pip "$1"/root/.cache "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old' \
  --customize-hook='find "$1"/var/log -type f -delete' \
  --customize-hook='rm -f "$1"/etc/resolv.conf "$1"/etc/hostname' \
  --customize-hook="find \"\$1\" -xdev \\( -path \"\$1/proc\" -o -path \"\$1/sys\" -o -path \"\$1/dev\" \\) \
    -prune -o -newermt @$SOURCE_DATE_EPOCH -exec touch --no-dereference --date=@$SOURCE_DATE_EPOCH {} +" \
  --skip=output/dev \
  "$IMAGE_SUITE" "$rootfs_tar" "$sources_file"

# 4. The OCI image: one layer, its configuration, a tag per version.
log "OCI layout"
rm -rf "$out/oci"
mkdir -p "$out"
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
umoci init --layout "$out/oci"
umoci new --image "$out/oci:$version"
umoci raw add-layer --image "$out/oci:$version" --history.created="$created" \
  --history.created_by="deploy/image/build.sh (mmdebstrap $IMAGE_SUITE essential, cityhub $version)" \
  "$rootfs_tar"
config_args=(
  --config.user="$IMAGE_UID:$IMAGE_UID"
  --config.entrypoint="$IMAGE_ENTRYPOINT"
  --config.cmd=--help
  --config.workingdir="$IMAGE_HOME"
  --config.stopsignal=SIGTERM
  --os=linux --architecture=amd64
  --created="$created"
  --author="cityhub"
  --config.label=org.opencontainers.image.title=cityhub
  --config.label="org.opencontainers.image.description=Event-streaming integration hub for a city's sensors"
  --config.label="org.opencontainers.image.version=$version"
  --config.label="org.opencontainers.image.revision=$revision"
  --config.label="org.opencontainers.image.created=$created"
  --config.label=org.opencontainers.image.licenses=Apache-2.0
)
if [ -n "$source_url" ]; then
  config_args+=(--config.label="org.opencontainers.image.source=$source_url")
else
  log "no source label: set CITYHUB_IMAGE_SOURCE or a git remote origin"
fi
for variable in "${IMAGE_ENV[@]}"; do config_args+=(--config.env="$variable"); done
for port in "${IMAGE_PORTS[@]}"; do config_args+=(--config.exposedports="$port"); done
umoci config --image "$out/oci:$version" --no-history "${config_args[@]}"
umoci gc --layout "$out/oci"

archive=$out/cityhub-$version.oci.tar
rm -f "$archive"
tar -C "$out/oci" -cf "$archive" .
elapsed=$(($(date +%s) - started))
layer_bytes=$(stat -c %s "$rootfs_tar")
log "done in ${elapsed}s: $archive ($(du -h "$archive" | cut -f1) compressed;" \
  "$((layer_bytes / 1024 / 1024)) MiB unpacked), tag $version"
