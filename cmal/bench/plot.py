"""`cmal bench`'s plot: throughput and p99 latency against concurrency, service beside engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(report: dict[str, Any], path: Path) -> None:
    """Write the report's PNG: throughput (service per backend, engine per batch size as lines)
    and the service's p99 latency, both against the number of concurrent clients."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, served) in enumerate(report["service"].items()):
        colour = colours[i % len(colours)]
        points = served["closed_loop"]
        x = [p["concurrency"] for p in points]
        top.plot(x, [p["throughput_ok_per_s"] for p in points], marker="o", color=colour,
                 label=f"service, {name}")  # fmt: skip
        bottom.plot(x, [p["p99_ms"] for p in points], marker="o", color=colour, label=f"service, {name}")
        paired = [
            (p["concurrency"], p["engine_paired"]["samples_per_s"]) for p in points if "engine_paired" in p
        ]
        if paired:
            top.plot(*zip(*paired, strict=True), marker="x", linestyle="none", color="black",
                     label=f"engine, {name}, measured just before each point")  # fmt: skip
        if i:  # the other backends: their one-client points only (their engines are in the JSON)
            continue
        for e in report["engine"].get(name, []):
            if e["batch_size"] in (1, max(p["batch_size"] for p in report["engine"][name])):
                style = ":" if e["batch_size"] == 1 else "--"
                top.axhline(e["samples_per_s"], color=colour, linestyle=style, linewidth=1,
                            label=f"engine, {name}, batch {e['batch_size']}")  # fmt: skip
    for name, p in report.get("engine_side_by_side", {}).items():
        label = f"engine, {name}, {p['workers']} calls of {p['batch_size']} side by side"
        top.axhline(p["samples_per_s"], color="black", linestyle="-.", linewidth=1, label=label)
    top.set_ylabel("answers / s")
    top.set_ylim(bottom=0)
    top.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    bottom.set_ylabel("p99 latency (ms)")
    bottom.set_yscale("log")
    bottom.set_xlabel("concurrent clients (closed loop)")
    bottom.set_xscale("log", base=2)
    sweep = sorted({p["concurrency"] for s in report["service"].values() for p in s["closed_loop"]})
    bottom.set_xticks(sweep, [str(c) for c in sweep])
    bottom.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    who = report.get("preset") or Path(report["model"]).name
    machine = report["machine"]
    where = f"{machine['cores']} cores ({machine['cpu'][:40]})"
    if "gpu" in machine:
        where += f" and {machine['gpu']}"
    fig.suptitle(f"cmal bench: {who} on {where}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
