# The two commands of the README. Both prepare the machine first (.ci/setup is idempotent).
VENV ?= .venv
SHELL := /bin/bash

.PHONY: setup up test lint bench

setup:
	@bash .ci/setup

## Run the local stack on its embedded defaults (Kafka, Mosquitto, gateway, worker, chDB). Ctrl-C stops.
up: setup
	$(VENV)/bin/meterline up

## Run the whole test suite against real Kafka, Mosquitto and ClickHouse (chDB), started by the tests.
## Two pytest workers, one test file each at a time (each starts its own session broker): most of the
## suite's time is spent waiting on brokers, restarts and kills, not computing.
test: setup
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict sdk/gt8004 sdk/billing_sdk sdk/meterline_sdk

## Every benchmark with --quick, then the issue-13 targets they printed (TARGET lines), met or not.
bench:
	@bash .ci/setup --bench
	@set -o pipefail; log=$$(mktemp); trap 'rm -f $$log' EXIT; \
	for b in bench/bench_*.py; do \
	  echo "== $$b"; $(VENV)/bin/python -u $$b --quick 2>&1 | tee -a $$log || { echo "$$b failed"; exit 1; }; \
	done; \
	echo; echo "== targets (bench/_common.py's TARGET lines; quick runs say what they shortened)"; \
	grep '^TARGET ' $$log || echo "no TARGET lines"; \
	echo "$$(grep -c ' — met' $$log) met, $$(grep -c ' — NOT MET' $$log) not met; load average $$(cut -d' ' -f1-3 /proc/loadavg)"
