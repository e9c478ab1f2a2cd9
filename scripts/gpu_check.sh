#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU and torch built with CUDA: parity of the eager backend
# on the GPU (fp32, and fp16 autocast) against the CPU, then `cmal bench` of both presets on the GPU
# into OUT_DIR/bench-{demo,paper}/bench.{json,png}: eager PyTorch fp32 (swept) and fp16 autocast
# (slower than fp32 on an H200 at these sizes: the host, not the arithmetic, is the cost), plus ONNX
# Runtime fp16/fp32 when its CUDA execution provider is installed. The paper preset's FLOP/s is
# stated as a share of the GPU's measured fp16 matmul rate (compute.matmul in bench.json).
#
# Runs on the machine's own python3 (PYTHON=...): no registry is needed. Packages that python lacks
# (the service's: fastapi, uvicorn, pydantic-settings, ...) are installed from the wheels in
# WHEELS (default .whl) when that folder exists, into a scratch folder on PYTHONPATH.
# Usage: bash scripts/gpu_check.sh [OUT_DIR]   (SECONDS_PER_POINT=5 by default: about 7 minutes)
# Settings: BACKENDS (default torch,torch-fp16, plus ONNX on CUDA when offered; the first is swept),
# PROCESSES (server processes, default 1), BENCH_TIMEOUT (seconds per preset, default 300), PARITY=0
# skips the parity check.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/gpu_check}}
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
SECONDS_PER_POINT=${SECONDS_PER_POINT:-5}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if [ -d "$WHEELS" ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/cmal-site \
        "$WHEELS"/*.whl
    export PYTHONPATH=$PWD:/tmp/cmal-site${PYTHONPATH#"$PWD"}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/nvidia-smi.txt"
$PY - <<'PY' | tee "$OUT/versions.txt"
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name(0))
for name in ("numpy", "onnxruntime", "tokenizers", "safetensors", "fastapi", "uvicorn", "pydantic"):
    module = importlib.import_module(name)
    print(name, getattr(module, "__version__", "?"))
import onnxruntime
print("onnxruntime providers", onnxruntime.get_available_providers())
PY
if [ "${PARITY:-1}" != 0 ]; then
    $PY scripts/gpu_parity.py models/shapes-demo "$OUT/gpu_parity.json" | tail -40
fi
if [ -z "${BACKENDS:-}" ]; then
    BACKENDS=torch,torch-fp16
    if $PY -c 'import onnxruntime as o, sys; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())'
    then BACKENDS=$BACKENDS,onnx-fp16,onnx; fi
fi
for preset in demo paper; do  # each preset on its own: a failure of one still leaves the other's figures
    timeout "${BENCH_TIMEOUT:-300}" $PY -m cmal.cli bench --preset $preset --backends "$BACKENDS" --seconds "$SECONDS_PER_POINT" \
        --processes "${PROCESSES:-1}" --out "$OUT/bench-$preset" --quiet >"$OUT/bench-$preset.txt" 2>&1 \
        || echo "bench $preset failed: $?"
    tail -32 "$OUT/bench-$preset.txt"
done
