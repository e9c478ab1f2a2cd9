# Quick start: `make serve` and `make test`. Each sets up .venv (idempotent: it reinstalls only
# when pyproject.toml changed) and then does its job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# One stamp per install flavour, remade when pyproject.toml changes.
DEV_STAMP := $(VENV)/.stamp-dev

.PHONY: help venv test lint serve demo-model demo-ablation clean

help:
	@echo "make serve   set up and serve the bundled demo model on 127.0.0.1:8000"
	@echo "make test    set up and run the test suite"
	@echo "make lint    ruff and mypy"
	@echo "make demo-model  rebuild models/shapes-demo from scratch (fixed seeds, about 75 min on 2 cores)"
	@echo "make demo-ablation  the same fine-tuning without pre-training, for the card (may run beside demo-model once its detector exists)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[train,serve,dev]'
	@touch $@

venv: $(DEV_STAMP)

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

DEMO := models/shapes-demo
# exported graphs are build outputs: made (with torch) on first use and after the weights change
$(DEMO)/export/manifest.json: $(DEV_STAMP) $(DEMO)/cmal.safetensors $(DEMO)/detector.safetensors
	$(BIN)/cmal export --model $(DEMO) --format onnx

serve: $(DEMO)/export/manifest.json
	CMAL_MODEL_DIR=$(DEMO) $(BIN)/python -m service --host 127.0.0.1 --port 8000

demo-model: $(DEV_STAMP)
	bash scripts/demo_model.sh

demo-ablation: $(DEV_STAMP)
	bash scripts/demo_model.sh ablation

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
