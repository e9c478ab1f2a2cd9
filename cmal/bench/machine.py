"""Facts about the machine a benchmark ran on, and how much of it a neighbour took meanwhile."""

from __future__ import annotations

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


def describe(gpu: str | None = None) -> dict[str, Any]:
    """What the figures were measured on; ``gpu``, the GPU's name, when the backends ran on one."""
    import onnxruntime

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "platform": platform.platform(),
            **({"gpu": gpu} if gpu else {})}  # fmt: skip
