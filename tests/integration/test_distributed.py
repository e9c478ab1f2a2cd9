"""torchrun: 2 CPU processes (gloo) train identical replicas that match a single-process run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cmal.data.generate import generate_split

WORKER = Path(__file__).with_name("ddp_worker.py")
BIN = Path(sys.executable).parent


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.slow
def test_two_processes_match_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_split(data, seed=31, num_images=20, split="train", progress=False)
    single = subprocess.run(
        [sys.executable, str(WORKER), str(data), str(tmp_path), "single"],
        capture_output=True, text=True, timeout=300, env=_env(),
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2"]  # a free port of its own
    ddp = subprocess.run(
        [*torchrun, str(WORKER), str(data), str(tmp_path), "ddp"],
        capture_output=True, text=True, timeout=300, env=_env(),
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "rank 1/2 done" in ddp.stdout and "rank 0/2 done" in ddp.stdout
    r0 = load_file(str(tmp_path / "ddp-rank0.safetensors"))
    r1 = load_file(str(tmp_path / "ddp-rank1.safetensors"))
    one = load_file(str(tmp_path / "single-rank0.safetensors"))
    for name in r0:
        assert torch.equal(r0[name], r1[name]), f"replicas differ at {name}"
        assert torch.allclose(r0[name], one[name], atol=1e-6, rtol=1e-5), f"DDP != single process at {name}"
    # and training really moved the weights away from the shared initialisation
    init = load_file(str(tmp_path / "ddp-init.safetensors"))
    assert torch.equal(
        init["ve_head.mlp.net.3.weight"],
        load_file(str(tmp_path / "single-init.safetensors"))["ve_head.mlp.net.3.weight"],
    )
    moved = [n for n in r0 if not torch.equal(r0[n], init[n])]
    assert len(moved) > len(r0) // 2


@pytest.mark.slow
def test_cli_finetune_runs_under_torchrun(tmp_path: Path, demo_dir: Path) -> None:
    data = tmp_path / "data"
    generate_split(data, seed=32, num_images=16, split="train", progress=False)
    result = subprocess.run(
        [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "cmal"),
         "train", "finetune",
         "--init", str(demo_dir), "--tasks", "ve,itm", "--train", str(data), "--out", str(tmp_path / "out"),
         "--epochs", "1", "--batch-size", "8", "--max-steps", "2", "--quiet"],
        capture_output=True, text=True, timeout=300, env=_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "cmal.safetensors").is_file()
    assert (tmp_path / "out" / "checkpoint" / "trainer.json").is_file()
