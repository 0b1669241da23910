# The few targets the README names. Everything runs from a local virtualenv (.venv).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/example.toml

.PHONY: quickstart run test lint bench deploy-check clean

# Set up and run the daily job on the embedded default (TinyDB store in data/,
# outbox/ folder since no SMTP server is configured; offline: the bundled recorded day).
quickstart: $(VENV)/.installed
	$(BIN)/digest --config $(CONFIG) run

run: $(VENV)/.installed
	$(BIN)/digest --config $(CONFIG) run

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

deploy-check:
	bash deploy/check.sh

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf data outbox preview-*.html .pytest_cache
