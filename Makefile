# The few targets the README names. Everything runs from a local virtualenv (.venv).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/example.toml

.PHONY: quickstart run test lint bench deploy-check clean

# Set up and run the daily job on the embedded default (TinyDB store in data/,
# outbox/ folder since no SMTP server is configured; offline: the bundled recorded day,
# marked as sample data, since config/example.toml turns [sources] offline_fallback on).
quickstart: $(VENV)/.installed
	$(BIN)/digest run --config $(CONFIG)

run: $(VENV)/.installed
	$(BIN)/digest run --config $(CONFIG)

# The test suite (installs the test extras first).
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

# ruff (lint + format) everywhere; mypy over digest/, strict on the pure modules (pyproject).
lint: $(VENV)/.installed-test
	$(BIN)/ruff check digest tests bench deploy
	$(BIN)/ruff format --check digest tests bench deploy
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	$(BIN)/python bench/run_all.py

# The deploy recipes' linters and schema checkers, installed into the venv the first time
# (deploy/install-tools.sh: PyPI and Debian packages only), then every check.
deploy-check: $(VENV)/.installed-deploy-tools
	PYTHON=$(abspath $(BIN))/python bash deploy/check.sh

$(VENV)/.installed-deploy-tools: deploy/install-tools.sh $(VENV)/.installed
	PYTHON=$(abspath $(BIN))/python bash deploy/install-tools.sh
	touch $@

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf data outbox preview-*.html .pytest_cache build dist
