# Everyday commands. `make run` and `make test` set up .venv themselves on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: setup run test test-cluster lint format bench docs

setup: $(INSTALLED)

# Reinstall only when the dependencies change.
$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(INSTALLED)

run: setup
	$(BIN)/tandem dev --demo

# The whole suite, then the tests marked redis_cluster again on a local Redis Cluster; two
# workers, each taking whole test files (module-scoped stacks stay in one worker). The fuzz
# test runs on its own, serially: schemathesis gives its 45 operations one node id, which
# pytest-xdist would count (and could schedule) as one test.
FUZZ := tests/integration/test_api_fuzz.py
test: setup
	$(BIN)/pytest -q -n 2 --dist loadfile --ignore=$(FUZZ)
	$(BIN)/pytest -q $(FUZZ)
	$(MAKE) test-cluster

# The scheduler, content, notifier and vault tests (tests/support/redis_cluster.py lists
# them) against a local 3-master Redis Cluster; skips, saying why, without redis-cli.
test-cluster: setup
	TANDEM_TEST_REDIS=cluster $(BIN)/pytest -q -n 2 --dist loadfile -m redis_cluster

# What CI checks before the tests: lint, formatting, and types (zero mypy errors).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy services shared tandem tests bench

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python bench/run.py

# docs/asyncapi.json (+ .html) and docs/openapi.json, generated from the code; a unit test
# fails when they are stale.
docs: setup
	$(BIN)/tandem docs --out docs
