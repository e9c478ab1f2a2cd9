"""`cmal bench` end to end on the tiny model: every section of the report, and a real PNG plot."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cmal.bench.server import free_port, start_service, stop_service
from cmal.cli import main


def tiny_bench(model: Path, backends: str, out: Path) -> dict[str, Any]:
    """`cmal bench` of ``model`` with ``backends`` on the smallest sweep (batches and clients 1 and 2,
    half a second a point); its report."""
    status = main([
        "bench", "--model", str(model), "--backends", backends, "--batch-sizes", "1,2",
        "--concurrency", "1,2", "--load", "0.5", "--seconds", "0.5", "--images", "6",
        "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert status == 0
    report: dict[str, Any] = json.loads((out / "bench.json").read_text())
    return report


def test_bench_writes_every_figure_and_a_png(tiny_exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    report = tiny_bench(tiny_exported, "onnx,torch", out)

    assert set(report["engine"]) == {"onnx", "torch"}
    for points in report["engine"].values():
        assert [p["batch_size"] for p in points] == [1, 2]
        assert all(p["samples_per_s"] > 0 and p["batches"] >= 3 for p in points)

    side = report["engine_side_by_side"]["onnx"]
    assert side["workers"] >= 1 and side["batch_size"] == 2 and side["samples_per_s"] > 0

    onnx = report["service"]["onnx"]
    assert [p["concurrency"] for p in onnx["closed_loop"]] == [1, 2]
    assert [p["fraction"] for p in onnx["open_loop"]] == [0.5]
    for point in onnx["closed_loop"] + onnx["open_loop"]:
        assert point["requests"] > 0
        assert point["status"] == {"200": point["requests"]}  # nothing lost, nothing refused
        assert 0 < point["p50_ms"] <= point["p95_ms"] <= point["p99_ms"]
        assert point["loadgen_cpu"] >= 0
    assert onnx["cold_start_s"] > 0
    # each point of the swept backend is paired with the engine measured just before it
    assert [p["engine_paired"]["batch_size"] for p in onnx["closed_loop"]] == [1, 2]
    assert all(p["engine_paired"]["samples_per_s"] > 0 for p in onnx["closed_loop"])
    # the swept backend's sweep, the others at one client (the ONNX ÷ eager ratio)
    assert [p["concurrency"] for p in report["service"]["torch"]["closed_loop"]] == [1]

    ratios = report["ratios"]
    for key in (
        "c1_vs_engine_b1",
        "c2_vs_engine_b2",
        "cmax_vs_best",
        "p99_over_p50_at_0.5",
        "onnx_vs_torch_c1",
    ):
        assert ratios[key] is not None and ratios[key] > 0, key
    assert set(report["verdicts"]) == set(report["targets"])
    ideal = report["ideal_server"]["0.5"]  # the floor one engine alone would give at that Poisson rate
    assert 0 < ideal["p50_ms"] <= ideal["p99_ms"] and ratios["ideal_server_p99_over_p50_at_0.5"] >= 1
    assert "ideal_server_p99_over_p50_at_0.5" not in report["verdicts"]  # context, not a target
    compute = report["compute"]  # FLOPs from the executed shapes, and the machine's matmul rate
    assert compute["gflop_per_sample"]["fusion"] > 0 and compute["gflop_per_sample"]["detector"] > 0
    assert compute["matmul_gflop_per_s"] > 0 and ratios["engine_flops_vs_matmul"] > 0
    assert all("steal_s" in p for p in onnx["closed_loop"] + report["engine"]["onnx"])
    assert report["machine"]["cores"] >= 1

    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_of_eager_pytorch_alone_exports_nothing_and_counts_torch_flops(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    report = tiny_bench(tiny_model_dir, "torch", out)
    assert not list(out.glob("graphs-*")), "eager PyTorch needs no exported graphs"
    served = report["service"]["torch"]
    assert [p["concurrency"] for p in served["closed_loop"]] == [1, 2]
    assert all(p["status"] == {"200": p["requests"]} for p in served["closed_loop"])
    compute = report["compute"]  # counted by torch's FlopCounterMode, against torch's own matmul rate
    assert compute["matmul"] == "torch, fp32 on the CPU"
    assert compute["gflop_per_sample"]["detector"] > 0 and compute["gflop_per_sample"]["fusion"] > 0
    assert report["ratios"]["engine_flops_vs_matmul"] > 0
    assert "onnx_vs_torch_c1" not in report["ratios"]  # no ONNX backend to compare
    assert "gpu" not in report["machine"]


def test_start_service_pins_the_service_to_the_cpus_asked_for(tiny_exported: Path, tmp_path: Path) -> None:
    before = os.sched_getaffinity(0)
    cpu = min(before)
    proc, _ = start_service(tiny_exported, free_port(), tmp_path / "service.log", cpus={cpu})
    try:
        threads = [int(t.name) for t in Path(f"/proc/{proc.pid}/task").iterdir()]
        assert len(threads) > 1  # the runtime's and the service's own threads, started after the pin
        # the runtime's threads too: ONNX Runtime left to choose pins its threads to every core
        assert all(os.sched_getaffinity(t) == {cpu} for t in threads)
    finally:
        assert stop_service(proc) == 0
    assert os.sched_getaffinity(0) == before  # only the service was pinned, not its caller
