# Quick start: `make serve` and `make test`. Each sets up .venv (idempotent: it reinstalls only
# when pyproject.toml changed) and then does its job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# One stamp per install flavour, remade when pyproject.toml changes.
DEV_STAMP := $(VENV)/.stamp-dev
SERVE_STAMP := $(VENV)/.stamp-serve

.PHONY: help venv test lint serve demo-model clean

help:
	@echo "make serve   set up and serve the bundled demo model on 127.0.0.1:8000"
	@echo "make test    set up and run the test suite"
	@echo "make lint    ruff and mypy"
	@echo "make demo-model  rebuild models/shapes-demo from scratch (fixed seeds, about an hour on 2 cores)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[train,serve,dev]'
	@touch $@

$(SERVE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[serve]'
	@touch $@

venv: $(DEV_STAMP)

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

serve: $(SERVE_STAMP)
	@echo "The inference service is not built yet (issue: 'The inference service')." >&2
	@echo "Nothing is served; see README.md for what works today." >&2
	@exit 1

demo-model: $(DEV_STAMP)
	bash scripts/demo_model.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
