# streamflow — `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast lint typecheck format bench bench-peers dist smoke docs \
        docs-serve clean dashboard screenshots

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# streamflow (editable, with its dev, otel and docs extras) and the reference app in consumers/,
# which is its own distribution: the streamflow wheel holds the library alone.
$(STAMP): pyproject.toml consumers/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,otel,docs,dashboard]' -e ./consumers
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install streamflow with its dev tools

run: install ## The payment pipeline on a local Redis (started if none answers): webhooks in, ledger out
	$(BIN)/streamflow-razorpay demo

dashboard: install ## The web dashboard on a seeded demo queue: http://127.0.0.1:8090/
	$(BIN)/python -m streamflow.dashboard.demo

screenshots: install ## Dashboard screenshots for docs/ (headless Chromium, seeded demo queue)
	$(BIN)/python scripts/screenshots.py

test: install ## The whole test suite on real redis-server processes
	$(BIN)/pytest -q

test-fast: install ## Unit tests only
	$(BIN)/pytest -q tests/unit

lint: install ## ruff + mypy --strict on streamflow/
	$(BIN)/ruff check streamflow tests consumers benchmarks examples .ci
	$(BIN)/mypy

typecheck: install
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix streamflow tests consumers benchmarks examples .ci

bench: install ## Throughput, latency and memory on the local Redis (prints a table)
	$(BIN)/python -m benchmarks.run

bench-peers: install ## Same workload through BullMQ, arq, saq, taskiq, Celery, RabbitMQ, Postgres
	$(BIN)/pip install --quiet -r benchmarks/peers/requirements.txt
	npm ci --silent --prefix benchmarks/peers/bullmq
	$(BIN)/python -m benchmarks.peers.run

dist: install ## sdist + wheel in dist/, checked by twine
	rm -rf dist build streamflow.egg-info  # a stale SOURCES.txt would put old files in the sdist
	$(BIN)/python -m build --sdist --wheel --outdir dist . >/dev/null
	$(BIN)/twine check --strict dist/*

smoke: dist ## Install the wheel into a fresh venv (not editable) and run it on a throwaway Redis
	$(BIN)/python .ci/smoke_wheel.py dist

# the two variables silence banners about MkDocs 2 (the docs extra pins mkdocs < 2)
DOCS_ENV := NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true

docs: install ## Build the docs site into site/ (strict: broken links and references fail)
	$(DOCS_ENV) $(BIN)/mkdocs build --strict

docs-serve: install ## Serve the docs site with live reload on http://127.0.0.1:8000
	$(DOCS_ENV) $(BIN)/mkdocs serve

clean: ## Remove the venv, caches and build output
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist site *.egg-info
