"""`cmal bench`'s report as Markdown tables (printed, and pasted into the README)."""

from __future__ import annotations

from typing import Any

from cmal.bench.targets import meets, target_of


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
        target = target_of(name, report["targets"])
        bound = report["targets"][target] if target else None
        # this row against its bound (the verdicts are per target)
        met = meets(value, target, bound) if target and bound is not None and value is not None else None
        shown = "–" if value is None else f"{value:.3f}"
        limit = f"{'≤' if target.endswith('_max') else '≥'} {bound:g}" if target else "–"
        lines.append(f"| {name} | {shown} | {limit} | {_mark(met)} |")
    return "\n".join(lines)


def _row(name: str, load: str, p: dict[str, Any]) -> str:
    errors = p["requests"] - p["status"].get("200", 0)
    pair = p.get("engine_paired")
    engine = f"{pair['samples_per_s']:.1f} (batch {pair['batch_size']})" if pair else ""
    timing = (f"{p['p50_ms']:.1f}", f"{p['p99_ms']:.1f}")
    cells = (name, load, f"{p['throughput_ok_per_s']:.1f}", engine, *timing, p.get("mean_batch_rows", ""),
             errors, f"{p['loadgen_cpu']:.2f}")  # fmt: skip
    return "| " + " | ".join(map(str, cells)) + " |"


def _mark(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "–"}[met]
