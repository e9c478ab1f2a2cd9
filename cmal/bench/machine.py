"""Facts about the machine a benchmark or a training run ran on, and how much of it a neighbour
took meanwhile.

Usage: python -m cmal.bench.machine --out FILE [--threads N] [--seconds S]
writes the CPU, its core count and torch's fp32 matrix-product rate on N threads as JSON (what
`scripts/demo_model.sh` records beside its stage times: the project's machines differ, and a run's
time means little without the speed of the machine it ran on)."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any


def steal_seconds() -> float:
    """CPU time the hypervisor gave to other machines (all cores), from /proc/stat: on a shared
    virtual machine a slow phase with steal is the neighbours', one without it is ours."""
    stat = Path("/proc/stat")
    if not stat.is_file():
        return 0.0
    fields = stat.read_text().splitlines()[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    names = (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name"))
    return next(names, platform.processor())


def describe(gpu: str | None = None) -> dict[str, Any]:
    """What the figures were measured on; ``gpu``, the GPU's name, when the backends ran on one."""
    import onnxruntime

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "platform": platform.platform(),
            **({"gpu": gpu} if gpu else {})}  # fmt: skip


def training_machine(threads: int = 0, seconds: float = 3.0) -> dict[str, Any]:
    """The CPU a training run ran on and the best fp32 matrix-product rate torch reaches there on
    ``threads`` threads (0: torch's default), measured for ``seconds``: a gauge to compare run
    times from different machines by."""
    import torch

    from cmal.bench.flops import torch_matmul_rate

    if threads:
        torch.set_num_threads(threads)
    rate = torch_matmul_rate(gpu=False, seconds=seconds)
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch_matmul_gflop_per_s": round(rate / 1e9, 1)}  # fmt: skip


def main() -> None:
    """Command line entry point; the usage is in the module docstring."""
    parser = argparse.ArgumentParser(description="Record the machine a training run runs on.")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to time the products")
    args = parser.parse_args()
    record = training_machine(args.threads, args.seconds)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
