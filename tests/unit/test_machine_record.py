"""`python -m cmal.bench.machine` records the CPU a training run ran on and torch's matrix-product
rate there, for `scripts/demo_model.sh` to leave beside its stage times."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cmal.bench.machine import cpu_name


def test_the_record_names_the_cpu_and_a_measured_rate(tmp_path: Path) -> None:
    out = tmp_path / "machine.json"
    command = [sys.executable, "-m", "cmal.bench.machine", "--out", str(out), "--threads", "1"]
    command += ["--seconds", "0.2"]
    subprocess.run(command, check=True, capture_output=True)
    record = json.loads(out.read_text())
    assert record["cpu"] == cpu_name() and record["cpu"]
    assert record["torch_threads"] == 1
    assert record["cores"] >= 1
    assert record["torch_matmul_gflop_per_s"] > 0
