# cityhub: two commands set everything up on a fresh machine.
#   make run   installs what is missing, starts Kafka + Mosquitto, the hub and a simulator
#   make test  the same set-up, then ruff, mypy and every test (integration included)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CITYHUB := $(BIN)/cityhub

.PHONY: run test setup lint typecheck unit integration bench stack-up stack-down clean

$(STAMP): pyproject.toml
	@command -v java >/dev/null || { echo "java (17+) is needed: apt-get install -y openjdk-17-jre-headless"; exit 1; }
	@command -v mvn >/dev/null || { echo "maven is needed: apt-get install -y maven"; exit 1; }
	@command -v mosquitto >/dev/null || command -v /usr/sbin/mosquitto >/dev/null || { \
	  echo "installing mosquitto from Debian"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' --config-settings editable_mode=strict
	touch $(STAMP)

setup: $(STAMP)

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
	$(BIN)/python bench/run.py

clean: stack-down
	rm -rf $(VENV) .cityhub build dist *.egg-info
