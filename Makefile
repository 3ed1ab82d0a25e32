# wxcube — `make help` lists the targets.
SHELL := bash
CARGO ?= cargo
VENV ?= .venv
PY := $(VENV)/bin/python
S3_PORT ?= 9000
# `make test` picks a free port for its own moto unless this is set.
TEST_S3_PORT ?=
export CARGO_TERM_COLOR ?= never

.PHONY: help build demo test check fmt lint bench venv airflow-venv clean s3-up s3-down

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

build: ## build the wxcube binary (debug)
	$(CARGO) build --bin wxcube

demo: build ## run pipelines/demo.yaml against the built-in simulator into ./data/demo
	$(CARGO) run --quiet --bin wxcube -- run pipelines/demo.yaml

venv: $(VENV)/.stamp ## Python venv with DuckDB, Polars, pyarrow, moto (for interop and S3 tests)
$(VENV)/.stamp: tests/interop/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
	touch $@

AIRFLOW_VENV ?= $(HOME)/.cache/airflow-venv
airflow-venv: ## Airflow in its own venv (~5 min), so `make test` runs the example DAG with dag.test()
	python3 -m venv $(AIRFLOW_VENV)
	timeout 600 $(AIRFLOW_VENV)/bin/pip install --quiet --disable-pip-version-check apache-airflow

test: venv ## every test: unit, integration, S3 on a local moto server, DuckDB/Polars/pyarrow interop
	VENV=$(VENV) S3_PORT=$(TEST_S3_PORT) CARGO="$(CARGO)" AIRFLOW_VENV=$(AIRFLOW_VENV) bash scripts/test.sh

check: fmt lint test ## fmt, clippy -D warnings, tests

fmt: ## check formatting
	$(CARGO) fmt --all -- --check

lint: ## clippy, warnings are errors
	$(CARGO) clippy --all-targets -- -D warnings

bench: ## criterion hot-path benches, then the end-to-end runs; results in target/bench-report.json
	$(CARGO) bench --bench hot_path
	$(CARGO) bench --bench end_to_end

s3-up: venv ## start a moto S3 server on 127.0.0.1:$(S3_PORT)
	VENV=$(VENV) S3_PORT=$(S3_PORT) bash scripts/s3.sh start

s3-down: ## stop it
	VENV=$(VENV) S3_PORT=$(S3_PORT) bash scripts/s3.sh stop

clean: ## remove build output, demo data and the venv
	$(CARGO) clean; rm -rf data $(VENV)
