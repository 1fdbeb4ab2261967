# cityhub: two commands set everything up on a fresh machine.
#   make run   installs what is missing, starts Kafka, Mosquitto and PostgreSQL, the hub and a simulator
#   make test  the same set-up, then ruff, pip-audit, mypy and every test (integration included)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINKED := $(VENV)/.linked
CITYHUB := $(BIN)/cityhub
# Every dependency, runtime and dev, pinned with its hashes (CPython 3.11, linux x86_64).
LOCK := requirements.lock

.PHONY: run test setup lint audit typecheck unit integration fuzz bench lock stack-up stack-down clean ogc-ets
.PHONY: image image-lock image-smoke
.PHONY: console-assets console-screenshots

PY_SOURCES := $(shell find schemas connectors streams -name '*.py' 2>/dev/null)
# The package's own data files, which the strict editable install links one by one as it does
# modules: a new one (a JSON Schema, a migration, a template) needs linking too.
PACKAGE_DATA := $(wildcard schemas/asyncapi.yaml schemas/json/*.json \
	streams/history/migrations/*.sql streams/console/templates/*.html \
	streams/console/static/*.css streams/console/static/*.js)

# Known advisories against the locked set: pip-audit, with a fallback where PyPI's per-release
# documents are not served (deploy/audit_lock.py). An advisory without a fixed version may be
# ignored only here, one `--ignore-vuln ID` each with its reason beside it. None today.
AUDIT_IGNORE :=
AUDIT := $(BIN)/python deploy/audit_lock.py $(LOCK) $(AUDIT_IGNORE)

# setuptools reports every strict editable install as a warning ("Editable installation.": the
# links live in build/__editable__.*, do not delete it). It is a notice, not a fault, and the
# set-up prints no warnings otherwise; this filter hides that one message and nothing else.
EDITABLE_INSTALL := PYTHONWARNINGS='ignore:Editable installation' \
	$(BIN)/pip install -q --no-deps -e . --config-settings editable_mode=strict

# Dependencies: exactly the locked set, every file checked against its hash; reinstalled when
# the lock changes.
$(STAMP): $(LOCK) deploy/system-deps.sh
	bash deploy/system-deps.sh
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r $(LOCK)
	touch $(STAMP)

# cityhub itself, without dependencies, so nothing unlocked comes in. The strict editable
# install links each module and data file; a new one (or a changed entry point or package list)
# needs linking again.
$(LINKED): $(STAMP) pyproject.toml $(PY_SOURCES) $(PACKAGE_DATA)
	$(EDITABLE_INSTALL)
	touch $(LINKED)

# Spectral, pinned with its lock file in deploy/lint (npm registry), lints the API's OpenAPI
# document against the NL API Design Rules' ruleset copied there (see its header), and the
# AsyncAPI document of the topics (schemas/asyncapi.yaml) against Spectral's own AsyncAPI
# ruleset. Needs Node (>= 18.18) and npm. --ignore-scripts: no package's install script runs
# (one would send usage telemetry); Spectral needs none.
LINT_DIR := deploy/lint
SPECTRAL := $(LINT_DIR)/node_modules/.bin/spectral
SPECTRAL_STAMP := $(LINT_DIR)/node_modules/.installed
OPENAPI_DOC := .cityhub/lint/openapi.json
ASYNCAPI_DOC := schemas/asyncapi.yaml

$(SPECTRAL_STAMP): $(LINT_DIR)/package.json $(LINT_DIR)/package-lock.json
	cd $(LINT_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(SPECTRAL_STAMP)

# Helm, pinned, built from the Go module proxy into build/tools once (the stamp names the
# version; a few minutes on two cores). deploy/k8s-check/check.sh lints and renders the chart.
HELM_VERSION := v4.3.2
HELM_STAMP := build/tools/.helm-$(HELM_VERSION)
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)

$(HELM_STAMP):
	mkdir -p build/tools
	GOBIN=$(CURDIR)/build/tools $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	touch $(HELM_STAMP)

# The operator console's vendor assets (docs/console.md): htmx and Leaflet, pinned with their
# lock file in deploy/console (npm registry), copied into the folder the console serves
# (gitignored); axe-core stays in deploy/console/node_modules for the browser tests.
# --ignore-scripts: none of them needs an install script.
CONSOLE_DIR := deploy/console
CONSOLE_VENDOR := streams/console/static/third-party
CONSOLE_STAMP := $(CONSOLE_VENDOR)/.built

$(CONSOLE_STAMP): $(CONSOLE_DIR)/package.json $(CONSOLE_DIR)/package-lock.json
	cd $(CONSOLE_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	rm -rf $(CONSOLE_VENDOR) && mkdir -p $(CONSOLE_VENDOR)/images
	cp $(CONSOLE_DIR)/node_modules/htmx.org/dist/htmx.min.js $(CONSOLE_VENDOR)/
	cp $(CONSOLE_DIR)/node_modules/leaflet/dist/leaflet.js $(CONSOLE_DIR)/node_modules/leaflet/dist/leaflet.css $(CONSOLE_VENDOR)/
	cp $(CONSOLE_DIR)/node_modules/leaflet/dist/images/*.png $(CONSOLE_VENDOR)/images/
	touch $(CONSOLE_STAMP)

console-assets: $(CONSOLE_STAMP)

# A screenshot of each console page, taken by the browser tests (Debian's Chromium against a
# hub of their own on the local stack), in build/console-screenshots/ (not committed).
console-screenshots: stack-up $(CONSOLE_STAMP)
	CONSOLE_SCREENSHOTS=$(CURDIR)/build/console-screenshots \
		$(BIN)/pytest -q -p no:randomly tests/integration -k console_browser

setup: $(LINKED) $(SPECTRAL_STAMP) $(CONSOLE_STAMP)

# Resolves pyproject.toml's dependencies (with the dev extra) again and rewrites the lock with
# the newest versions its ranges allow. `make lock LOCK_UPGRADE=` keeps the current pins where
# they still fit (to add or drop a dependency without moving the others).
LOCK_UPGRADE ?= --upgrade
lock: setup
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes $(LOCK_UPGRADE) \
		--python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
		--custom-compile-command 'make lock' --quiet --output-file $(LOCK)
	$(MAKE) --no-print-directory image-lock

# The image's locks (deploy/image): the runtime dependencies only, and the wheel's build backend,
# each at the versions and hashes of $(LOCK) (tests/unit/test_image_definition.py checks it).
IMAGE_LOCK_ARGS := --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	--constraint $(LOCK) --custom-compile-command 'make image-lock' --quiet
image-lock: setup
	$(BIN)/uv pip compile pyproject.toml $(IMAGE_LOCK_ARGS) \
		--output-file deploy/image/requirements-runtime.lock
	$(BIN)/uv pip compile deploy/image/requirements-build.in $(IMAGE_LOCK_ARGS) \
		--output-file deploy/image/requirements-build.lock

# The OCI image (docs/image.md), not part of `make test`: build/image/cityhub-<version>.oci.tar
# from a Debian root file system (mmdebstrap, umoci; as root or with user namespaces), then
# image-smoke runs it with podman against the local stack.
image: setup
	bash deploy/image/build.sh

image-smoke: stack-up
	bash deploy/image/smoke.sh

stack-up: setup
	$(CITYHUB) stack up

stack-down:
	-$(CITYHUB) stack down

run: stack-up
	$(CITYHUB) run --simulate --faults 0.01

# lint-imports: the contracts in pyproject.toml ([tool.importlinter]): the layers
# schemas <- connectors <- streams, and the pure cores free of broker, network and event-loop I/O.
# Spectral: the API's OpenAPI document (as `cityhub openapi` writes it) and the topics' AsyncAPI
# document. k8s-check: the Helm chart and deploy/strimzi, validated offline (docs/kubernetes.md).
lint: setup $(HELM_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(AUDIT)
	$(CITYHUB) openapi --output $(OPENAPI_DOC)
	$(SPECTRAL) lint --fail-severity warn -r $(LINT_DIR)/nl-api-design-rules.yaml $(OPENAPI_DOC)
	$(SPECTRAL) lint --fail-severity warn -r $(LINT_DIR)/asyncapi-rules.yaml $(ASYNCAPI_DOC)
	GO=$(GO) bash deploy/k8s-check/check.sh

audit: setup
	$(AUDIT)

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit -q

# The OGC SensorThings conformance suite (ets-sta10) and its jars from Maven Central, once per
# pom; tests/integration/test_sta_conformance.py runs it (and fetches them itself if missing).
OGC_ETS_JARS := build/ogc-ets/jars
$(OGC_ETS_JARS)/.fetched: deploy/ogc-ets/pom.xml
	rm -rf $(OGC_ETS_JARS)
	mvn -q -B -f deploy/ogc-ets/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
		-DoutputDirectory=$(CURDIR)/$(OGC_ETS_JARS)
	touch $@

ogc-ets: $(OGC_ETS_JARS)/.fetched

integration: stack-up ogc-ets
	$(BIN)/pytest tests/integration -q

# The long fuzz run; `make test` runs the same suite with its small default count.
fuzz: setup
	CITYHUB_FUZZ_EXAMPLES=100000 $(BIN)/pytest tests/fuzz -q -p no:randomly

test: stack-up ogc-ets lint typecheck
	$(BIN)/pytest -q

bench: stack-up
	$(BIN)/python -m bench.run

clean: stack-down
	rm -rf $(VENV) .cityhub build dist *.egg-info
