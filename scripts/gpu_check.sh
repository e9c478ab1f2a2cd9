#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU: export the demo model (fp32 + fp16), check parity with
# ONNX Runtime's CUDA execution provider, time the engine at batch 1 and 32, then `cmal bench` both
# presets on the GPU (fp16 and fp32 ONNX on CUDA, one worker; the paper preset's FLOP/s is stated as
# a share of the GPU's measured fp16 matmul rate) into OUT_DIR/bench-{demo,paper}/bench.{json,png}.
# Self-contained: creates its own venv with onnxruntime-gpu (never beside onnxruntime).
# Usage: bash scripts/gpu_check.sh [OUT_DIR]      (results in OUT_DIR/gpu_check.json)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.txt"
python3 -m venv /tmp/gpu-venv
V=/tmp/gpu-venv/bin
$V/pip install --quiet --upgrade pip
$V/pip install --quiet torch==2.13.0 || $V/pip install --quiet torch
$V/pip install --quiet -e '.[dev]' numpy pillow tqdm safetensors tokenizers 'transformers>=5,<6' onnx onnxscript
$V/pip uninstall --quiet -y onnxruntime || true
$V/pip install --quiet onnxruntime-gpu
$V/cmal export --model models/shapes-demo --format onnx --fp16 --out "$OUT/export"
$V/python - "$OUT" <<'PY'
import json, sys, time
from pathlib import Path
import numpy as np, onnxruntime as ort
out = Path(sys.argv[1])
assert "CUDAExecutionProvider" in ort.get_available_providers(), ort.get_available_providers()
from export.parity import make_parity_set, onnx_runner, fp32_parity, torch_runners
from cmal.detector.io import load_detector
from cmal.model.io import load_cmal
from cmal.inference import ModelFiles, DETECTOR_OUTPUTS, FUSION_OUTPUTS, encode_batch, Regions
model_dir = Path("models/shapes-demo")
files = ModelFiles.load(model_dir)
det, _, _ = load_detector(model_dir); cm, _, _ = load_cmal(model_dir)
data = make_parity_set(files.image_size)
def cuda(path, outputs):
    s = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert s.get_providers()[0] == "CUDAExecutionProvider", s.get_providers()
    names = {i.name for i in s.get_inputs()}
    return s, (lambda feeds: s.run(list(outputs), {k: v for k, v in feeds.items() if k in names}))
results = {"providers": ort.get_available_providers()}
for variant, suffix in (("fp32", ""), ("fp16", ".fp16")):
    ds, drun = cuda(out / "export" / f"detector{suffix}.onnx", DETECTOR_OUTPUTS)
    fs, frun = cuda(out / "export" / f"fusion{suffix}.onnx", FUSION_OUTPUTS)
    if variant == "fp32":
        results["parity_cuda_fp32"] = fp32_parity(files, data, torch_runners(det, cm), (drun, frun))
    for batch in (1, 32):
        images = data.images[:batch]
        regions = Regions.from_outputs(drun({"images": images}), data.sizes[:batch])
        feeds = encode_batch(files, [it[1] for it in data.items[:batch]], regions.take([it[2] for it in data.items[:batch]]))
        for _ in range(10): drun({"images": images}); frun(feeds)
        times = []
        for _ in range(50):
            t = time.perf_counter(); drun({"images": images}); frun(feeds); times.append(time.perf_counter() - t)
        med = float(np.median(times))
        results[f"{variant}_batch{batch}"] = {"median_ms": med * 1000, "images_per_s": batch / med}
(out / "gpu_check.json").write_text(json.dumps(results, indent=2))
print(json.dumps(results, indent=2))
PY
# the service against its engine on the GPU, both presets (about 6 and 8 minutes)
$V/cmal bench --preset demo --backends onnx-fp16,onnx --out "$OUT/bench-demo" --quiet
$V/cmal bench --preset paper --backends onnx-fp16,onnx --out "$OUT/bench-paper" --quiet
