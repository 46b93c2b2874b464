# streamflow — `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast lint typecheck format bench bench-peers clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,otel,razorpay]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install streamflow with its dev tools

run: install ## The payment pipeline on a local Redis (started if none answers): webhooks in, ledger out
	$(BIN)/streamflow-razorpay demo

test: install ## The whole test suite on real redis-server processes
	$(BIN)/pytest -q

test-fast: install ## Unit tests only
	$(BIN)/pytest -q tests/unit

lint: install ## ruff + mypy --strict on streamflow/
	$(BIN)/ruff check streamflow tests consumers benchmarks
	$(BIN)/mypy

typecheck: install
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix streamflow tests consumers benchmarks

bench: install ## Throughput, latency and memory on the local Redis (prints a table)
	$(BIN)/python -m benchmarks.run

bench-peers: install ## Same workload through BullMQ, arq, saq, taskiq, Celery, RabbitMQ, Postgres
	$(BIN)/pip install --quiet -r benchmarks/peers/requirements.txt
	npm ci --silent --prefix benchmarks/peers/bullmq
	$(BIN)/python -m benchmarks.peers.run

clean: ## Remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
