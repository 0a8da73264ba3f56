# Close email sync. `make demo` and `make test` work on a fresh clone: they create .venv
# and install the project with its dev dependencies from pyproject.toml when missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Airflow (the `airflow` extra) lives in a venv of its own, so its pins never move the dev
# venv's; `make test` also runs the DAG tests there once it exists (`make airflow-venv`)
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
DESTINATION ?= duckdb
EMAILS ?= 20000

.PHONY: help venv airflow-venv test test-airflow soak demo lint format bench bench-quick bench-sync bench-emulator peers-check docs clean

help:
	@echo "make demo        start the emulator, sync into DuckDB (DESTINATION=postgres for PostgreSQL), show results"
	@echo "make test        run the whole test suite"
	@echo "make soak        the long fault matrix and crash/resume soak (-m soak)"
	@echo "make lint        ruff check, format check and mypy"
	@echo "make airflow-venv .venv-airflow with the airflow extra; make test then runs the DAG tests too"
	@echo "make bench       the sync benchmark: one table, six scenarios (BENCH_ARGS='--only storm' etc.)"
	@echo "make bench-quick the same on small datasets (a smoke run)"
	@echo "make peers-check Airbyte's and Singer's Close connectors against the emulator"
	@echo "make docs        regenerate docs/tables.md from the schema"

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(AIRFLOW_STAMP): pyproject.toml
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -e '.[airflow,dev]'
	touch $(AIRFLOW_STAMP)

airflow-venv: $(AIRFLOW_STAMP)

# Four workers on two cores: much of the suite waits on sockets, the emulator's latency and
# rate limits, not on the CPU (measured: 7 min instead of 14 with 2; six workers beside the
# DAG tests were slower still, on a machine about 2.8 times slower per core). The slowest
# tests are listed at the end, to show what to move under `make soak` when CI grows.
TEST_WORKERS ?= 4

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --durations=25
	if [ -x $(AIRFLOW_VENV)/bin/python ]; then $(MAKE) --no-print-directory test-airflow; fi

# the DAG tests (tests/dags) in the Airflow venv: DagBag import and dag.test() runs
test-airflow: $(AIRFLOW_STAMP)
	$(AIRFLOW_VENV)/bin/python -m pytest tests/dags

# the long fault and crash runs (tests marked `soak`): more kill points, seeds and faults
soak: $(STAMP)
	$(PY) -m pytest -m soak

demo: $(STAMP)
	$(PY) scripts/demo.py --destination $(DESTINATION) --emails $(EMAILS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# `make bench` prints one table (bench/bench_sync.py --help: scenarios and sizes); the
# emulator's own benchmark is separate
bench: $(STAMP)
	$(PY) bench/bench_sync.py $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(PY) bench/bench_sync.py --quick $(BENCH_ARGS)

bench-sync: bench

bench-emulator: $(STAMP)
	$(PY) bench/bench_emulator.py

peers-check: $(STAMP)
	bash bench/peers_check.sh

docs: $(STAMP)
	$(PY) scripts/generate_docs.py

clean:
	rm -rf .demo .bench .peers .pytest_cache .ruff_cache
