"""`cmal bench`'s report as Markdown tables (printed, and pasted into the README)."""

from __future__ import annotations

from typing import Any


def summary(report: dict[str, Any]) -> str:
    """Engine, service and target tables of a `cmal bench` report."""
    lines = ["| engine | batch | samples/s | batch p50 ms |", "|---|---|---|---|"]
    for name, points in report["engine"].items():
        for p in points:
            lines.append(
                f"| {name} | {p['batch_size']} | {p['samples_per_s']:.1f} | {p['batch_p50_ms']:.1f} |"
            )
    for name, p in report.get("engine_side_by_side", {}).items():
        label = f"{p['batch_size']}, {p['workers']} calls side by side ({p['threads_per_call']} thread each)"
        lines.append(f"| {name} | {label} | {p['samples_per_s']:.1f} | – |")
    head = ("service", "load", "answers/s", "engine just before, samples/s", "p50 ms", "p99 ms", "mean batch",
            "errors", "load generator CPU")  # fmt: skip
    lines += ["", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, served in report["service"].items():
        for p in served["closed_loop"]:
            lines.append(_row(name, f"{p['concurrency']} clients", p))
        for p in served["open_loop"]:
            lines.append(_row(name, f"Poisson {p['rate_per_s']:.0f}/s", p))
        lines.append(f"| {name} | cold start to ready | {served['cold_start_s']:.2f} s | | | | | | |")
    lines += ["", "| figure | measured | target | met |", "|---|---|---|---|"]
    for name, value in report["ratios"].items():
        target = _target_for(name, report["targets"])
        met = None
        if target and value is not None:  # this row against the bound (verdicts: per target)
            bound = report["targets"][target[0]]
            met = value <= bound if target[0].endswith("_max") else value >= bound
        shown = "–" if value is None else f"{value:.3f}"
        lines.append(f"| {name} | {shown} | {target[1] if target else '–'} | {_mark(met)} |")
    return "\n".join(lines)


def _row(name: str, load: str, p: dict[str, Any]) -> str:
    errors = p["requests"] - p["status"].get("200", 0)
    pair = p.get("engine_paired")
    engine = f"{pair['samples_per_s']:.1f} (batch {pair['batch_size']})" if pair else ""
    timing = (f"{p['p50_ms']:.1f}", f"{p['p99_ms']:.1f}")
    cells = (name, load, f"{p['throughput_ok_per_s']:.1f}", engine, *timing, p.get("mean_batch_rows", ""),
             errors, f"{p['loadgen_cpu']:.2f}")  # fmt: skip
    return "| " + " | ".join(map(str, cells)) + " |"


def _target_for(ratio: str, targets: dict[str, float]) -> tuple[str, str] | None:
    """The target (its key and a readable bound) a ratio is judged by, if any."""
    pairs = {
        "c1_vs_engine_b1": "c1_vs_engine_b1_min",
        "cmax_vs_best": "cmax_vs_best_min",
        "cold_start_s": "cold_start_s_max",
        "onnx_vs_torch_c1": "onnx_vs_torch_c1_min",
        "engine_flops_vs_matmul": "engine_flops_vs_matmul_min",
        "engine_side_by_side_flops_vs_matmul": "engine_flops_vs_matmul_min",
    }
    key = pairs.get(ratio)
    if ratio.startswith("p99_over_p50"):
        key = "p99_over_p50_max"
    elif ratio.startswith(("c32_vs_engine_b", "c64_vs_engine_b")) and "c32_c64_vs_engine_bmax_min" in targets:
        key = "c32_c64_vs_engine_bmax_min"
    elif ratio.startswith("c") and "_vs_engine_b" in ratio and "service_vs_engine_min_c8" in targets:
        key = "service_vs_engine_min_c8" if int(ratio[1:].split("_")[0]) >= 8 else None
    if key is None or key not in targets:
        return None
    bound = "≤" if key.endswith("_max") else "≥"
    return key, f"{bound} {targets[key]:g}"


def _mark(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "–"}[met]
