# The two commands of the README. Both prepare the machine first (.ci/setup is idempotent).
VENV ?= .venv

.PHONY: setup up test lint bench

setup:
	@bash .ci/setup

## Run the local stack on its embedded defaults (Kafka, Mosquitto, gateway, worker, chDB). Ctrl-C stops.
up: setup
	$(VENV)/bin/meterline up

## Run the whole test suite against real Kafka, Mosquitto and ClickHouse (chDB), started by the tests.
test: setup
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict sdk/gt8004 sdk/billing_sdk

bench:
	@bash .ci/setup --bench
	for b in bench/bench_*.py; do $(VENV)/bin/python $$b --quick || exit 1; done
