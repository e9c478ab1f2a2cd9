# Quick start: `make serve` and `make test`. Each sets up .venv from the lock file
# (requirements/dev.lock) and then does its job; the venv is reinstalled only when the lock or
# pyproject.toml changed. `make lock` refreshes the lock files (see README, "Dependencies").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCKS := requirements
DEV_LOCK := $(LOCKS)/dev.lock
# One stamp per install flavour, remade when the lock or pyproject.toml changes.
DEV_STAMP := $(VENV)/.stamp-dev
# Where pip finds the CPU build of torch (2.13.0+cpu): this machine's wheel folder when it has
# one (pip's find-links already points there), else PyTorch's CPU wheel index.
TORCH_WHEELS ?= $(if $(wildcard /opt/wheels/torch-*),/opt/wheels,https://download.pytorch.org/whl/cpu/torch/)
PIP_INSTALL := $(BIN)/python -m pip install --quiet --find-links $(TORCH_WHEELS)
# uv resolves; the same platform for every flavour so the three files agree
COMPILE := $(BIN)/uv pip compile pyproject.toml --quiet --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --find-links $(TORCH_WHEELS) \
	--override $(LOCKS)/overrides.txt --no-header --annotation-style line

.PHONY: help venv test test-fast lint lock serve demo-model demo-ablation tritonserver clean

help:
	@echo "make serve   set up and serve the bundled demo model on 127.0.0.1:8000"
	@echo "make test    set up and run the test suite"
	@echo "make test-fast  the suite without the tests marked slow (training runs, demo export)"
	@echo "make lint    ruff and mypy (pinned in the lock)"
	@echo "make tritonserver  unpack a local tritonserver (from nvidia-pytriton's wheel) into .cache/ for the Triton tests"
	@echo "make lock    re-resolve requirements/{dev,train,serve}.lock to the newest allowed (PACKAGE=name: only that one)"
	@echo "make demo-model  rebuild models/shapes-demo (fixed seeds; resumes an interrupted run: delete runs/demo to start over)"
	@echo "make demo-ablation  AMC vs CMCL vs no pre-training at 10% and 100% of the fine-tuning data, for the card (after demo-model)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEV_STAMP): $(DEV_LOCK) pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

venv: $(DEV_STAMP)

# A local Triton Inference Server for the Triton integration tests and `cmal bench --backends
# triton`: the binary nvidia-pytriton's wheel bundles, pinned by hash (cmal/tritonserver.py)
TRITONSERVER := .cache/tritonserver/bin/tritonserver
$(TRITONSERVER): requirements/tritonserver.txt | $(DEV_STAMP)
	$(BIN)/python -m cmal.tritonserver install

tritonserver: $(TRITONSERVER)

test: $(DEV_STAMP) $(TRITONSERVER)
	$(BIN)/python -m pytest -q

test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# dev (everything `make test` needs) is resolved first; train and serve are resolved under it as
# constraints, so a package has the same version in every flavour. `make lock PACKAGE=name` moves
# only that package (and what it needs); plain `make lock` moves everything.
UPGRADE := $(if $(PACKAGE),--upgrade-package $(PACKAGE),--upgrade)
lock: | $(BIN)/python
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv
	$(COMPILE) $(UPGRADE) --extra train --extra serve --extra client --extra dev -o $(DEV_LOCK)
	$(COMPILE) --extra train -c $(DEV_LOCK) -o $(LOCKS)/train.lock
	$(COMPILE) --extra serve -c $(DEV_LOCK) -o $(LOCKS)/serve.lock
	@echo "wrote $(LOCKS)/{dev,train,serve}.lock; run make test before committing them"

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
