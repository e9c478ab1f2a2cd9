"""The figures `cmal bench`'s targets are stated in, computed from one report (every ratio
compares measurements of the same run)."""

from __future__ import annotations

from typing import Any


def ratios(report: dict[str, Any], primary: str) -> dict[str, float | None]:
    """The figures the targets are stated in, from one report."""
    engine = {p["batch_size"]: p["samples_per_s"] for p in report["engine"][primary]}
    served = report["service"][primary]
    closed = {p["concurrency"]: p["throughput_ok_per_s"] for p in served["closed_loop"]}
    # each point against the engine measured just before it, where there is one
    pairs = {p["concurrency"]: p["engine_paired"]["samples_per_s"] for p in served["closed_loop"]
             if "engine_paired" in p}  # fmt: skip
    bmax_pairs = [v for c, v in pairs.items() if c > 1]
    bmax = engine[max(engine)]
    best = max(closed.values())
    out: dict[str, float | None] = {
        # how far the engine's largest batch moved during the service sweep (max ÷ min − 1)
        "engine_drift": max(bmax_pairs) / min(bmax_pairs) - 1 if len(bmax_pairs) > 1 else None,
        "c1_vs_engine_b1": closed[1] / pairs.get(1, engine.get(1, 0))
        if 1 in closed and 1 in engine
        else None,
        "cmax_vs_best": closed[max(closed)] / best if best else None,
        "cold_start_s": served["cold_start_s"],
    }
    side = report.get("engine_side_by_side", {}).get(primary, {}).get("samples_per_s")
    for c, value in closed.items():
        if c > 1:
            out[f"c{c}_vs_engine_b{max(engine)}"] = value / pairs.get(c, bmax)
            if side:  # against the engine run the way the service's workers run it
                out[f"c{c}_vs_engine_side_by_side"] = value / side
    ideal = report.get("ideal_server", {})
    for p in served["open_loop"]:
        out[f"p99_over_p50_at_{p['fraction']}"] = p["p99_ms"] / p["p50_ms"] if p["p50_ms"] else None
        if str(p["fraction"]) in ideal:  # no target: what one engine alone would give at that rate
            out[f"ideal_server_p99_over_p50_at_{p['fraction']}"] = ideal[str(p["fraction"])]["p99_over_p50"]
    c1 = {n: s["closed_loop"][0]["throughput_ok_per_s"] for n, s in report["service"].items()
          if s["closed_loop"] and s["closed_loop"][0]["concurrency"] == 1}  # fmt: skip
    for name, served_c1 in c1.items():  # each backend's service against its own engine, batch 1
        b1 = next((p["samples_per_s"] for p in report["engine"].get(name, []) if p["batch_size"] == 1), None)
        if b1:
            out[f"{name}_c1_vs_own_engine_b1"] = served_c1 / b1
    if primary.startswith("onnx") and "torch" in c1 and primary in c1 and c1["torch"]:
        out["onnx_vs_torch_c1"] = c1[primary] / c1["torch"]
    if "onnx-int8" in report["engine"] and primary in report["engine"]:
        int8 = {p["batch_size"]: p["samples_per_s"] for p in report["engine"]["onnx-int8"]}
        out["int8_vs_fp32_engine_bmax"] = int8[max(int8)] / bmax
    compute = report.get("compute") or {}
    if compute.get("matmul_gflop_per_s"):
        out["engine_flops_vs_matmul"] = compute["engine_gflop_per_s"] / compute["matmul_gflop_per_s"]
        if side and compute.get("batch_size") == max(engine):  # the same batch, calls side by side
            flops = compute["gflop_per_sample"]["total"] * side
            out["engine_side_by_side_flops_vs_matmul"] = flops / compute["matmul_gflop_per_s"]
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}
