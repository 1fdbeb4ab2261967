# cityhub: two commands set everything up on a fresh machine.
#   make run   installs what is missing, starts Kafka + Mosquitto, the hub and a simulator
#   make test  the same set-up, then ruff, mypy and every test (integration included)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINKED := $(VENV)/.linked
CITYHUB := $(BIN)/cityhub

.PHONY: run test setup lint typecheck unit integration bench stack-up stack-down clean

PY_SOURCES := $(shell find schemas connectors streams -name '*.py' 2>/dev/null)

# Dependencies: reinstalled when pyproject.toml changes.
$(STAMP): pyproject.toml deploy/system-deps.sh
	bash deploy/system-deps.sh
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' --config-settings editable_mode=strict
	touch $(STAMP)

# The strict editable install links each module; a new module needs linking again.
$(LINKED): $(STAMP) $(PY_SOURCES)
	$(BIN)/pip install -q -e . --no-deps --config-settings editable_mode=strict
	touch $(LINKED)

setup: $(LINKED)

stack-up: setup
	$(CITYHUB) stack up

stack-down:
	-$(CITYHUB) stack down

run: stack-up
	$(CITYHUB) run --simulate

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit -q

integration: stack-up
	$(BIN)/pytest tests/integration -q

test: stack-up lint typecheck
	$(BIN)/pytest -q

bench: stack-up
	$(BIN)/python -m bench.run

clean: stack-down
	rm -rf $(VENV) .cityhub build dist *.egg-info
