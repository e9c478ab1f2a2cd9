"""The pre-training ablation of the demo model: AMC vs contrastive (CMCL) vs no pre-training, each
fine-tuned the same way on a share of the fine-tuning data, as a table (JSON) and a plot (PNG).

Usage: python -m cmal.ablation --run runs/demo
Reads RUN/ablation/<arm>-<share>/{test,compositional}.json (`cmal evaluate` output; arms
amc, cmcl, none; shares such as 0.1 and 1) and writes RUN/ablation.json and RUN/ablation.png.
`scripts/demo_model.sh ablation` (make demo-ablation) runs the fine-tunings and then this.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cmal.tasks import TASKS

# each starting point of the ablation, as the card names it (the first is the paper's method)
ARMS = {"amc": "AMC pre-training", "cmcl": "contrastive (CMCL) pre-training", "none": "no pre-training"}
SPLITS = ("test", "compositional")
WINS_NEEDED = 3  # of the four tasks, at the smallest share: the paper's claim in miniature
TABLE, PLOT = "ablation.json", "ablation.png"


def _accuracy(results: dict[str, Any], task: str) -> float | None:
    r = results.get(task)
    return float(r["accuracy"]) if r else None


def collect(run: Path) -> dict[str, Any]:
    """Every measured (arm, share) of ``run/ablation``: accuracy per split and task, and the verdict.

    Returns ``{"shares": [...], "results": {arm: {share: {split: {task: accuracy}}}}, "verdict": ...}``;
    raises FileNotFoundError when no arm was measured.
    """
    results: dict[str, dict[str, dict[str, dict[str, float | None]]]] = {}
    shares: set[float] = set()
    for arm in ARMS:
        for folder in sorted((run / "ablation").glob(f"{arm}-*")):
            share = float(folder.name.split("-", 1)[1])
            measured = {
                s: json.loads((folder / f"{s}.json").read_text())
                for s in SPLITS
                if (folder / f"{s}.json").is_file()
            }
            if measured:
                shares.add(share)
                results.setdefault(arm, {})[f"{share:g}"] = {
                    s: {t.id: _accuracy(r, t.id) for t in TASKS} for s, r in measured.items()
                }
    if not results:
        raise FileNotFoundError(
            f"no ablation results under {run / 'ablation'} (run scripts/demo_model.sh ablation)"
        )
    ordered = sorted(shares)
    return {
        "shares": [f"{s:g}" for s in ordered],
        "results": results,
        "verdict": verdict(results, f"{ordered[0]:g}"),
    }


def verdict(results: dict[str, Any], share: str) -> dict[str, Any]:
    """At ``share`` on the i.i.d. test split: the tasks where AMC beats every other measured arm."""
    amc = results.get("amc", {}).get(share, {}).get("test", {})
    others = [
        r[share]["test"] for arm, r in results.items() if arm != "amc" and share in r and "test" in r[share]
    ]
    wins = [
        t.id
        for t in TASKS
        if others and amc.get(t.id) is not None and all(amc[t.id] > (o.get(t.id) or 0.0) for o in others)
    ]
    return {
        "share": share,
        "amc_wins": wins,
        "holds": len(wins) >= WINS_NEEDED and len(others) == len(ARMS) - 1,
    }


def plot(table: dict[str, Any], path: Path) -> Path:
    """Accuracy against the share of fine-tuning data, one panel per task: a line per arm, solid on
    the i.i.d. test split and dashed on the compositional one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shares = table["shares"]
    fig, axes = plt.subplots(1, len(TASKS), figsize=(4 * len(TASKS), 4.2), sharey=True)
    for ax, task in zip(axes, TASKS, strict=True):
        for i, (arm, by_share) in enumerate(table["results"].items()):
            for split, style in zip(SPLITS, ("-", "--"), strict=True):
                xs = [100 * float(s) for s in shares if split in by_share.get(s, {})]
                ys = [by_share[s][split][task.id] for s in shares if split in by_share.get(s, {})]
                label = f"{ARMS[arm]}{'' if split == 'test' else ' (compositional)'}"
                ax.plot(xs, ys, style, marker="o", color=f"C{i}", label=label)
        ax.set_xscale("log")
        ax.set_xticks([100 * float(s) for s in shares], [f"{100 * float(s):g}%" for s in shares])
        ax.set_title(task.name)
        ax.set_xlabel("share of fine-tuning images")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(ARMS), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def card_section(table: dict[str, Any]) -> list[str]:
    """The card's markdown for the ablation: one table per split, the verdict and the plot."""
    shares, results = table["shares"], table["results"]
    columns = [(arm, share) for share in shares for arm in results if share in results[arm]]
    head = "| task | " + " | ".join(f"{ARMS[a]}, {100 * float(s):g}%" for a, s in columns) + " |"
    lines = [
        "## Does pre-training earn its place?",
        "",
        "The same fine-tuning (`scripts/demo_model.sh ablation`: recipe, epochs and seed alike) from",
        "three starting points (two pre-trainings on the same data for the same epochs, and the",
        "detector alone), on a share of the fine-tuning images. Accuracy from pixels.",
        "",
    ]
    for split in SPLITS:
        lines += [f"{'i.i.d. test' if split == 'test' else 'Compositional'} split:", "", head]
        lines.append("| --- |" + " --- |" * len(columns))
        for task in TASKS:
            cells = []
            for arm, share in columns:
                value = results[arm][share].get(split, {}).get(task.id)
                cells.append("–" if value is None else f"{value:.3f}")
            lines.append(f"| {task.name} | " + " | ".join(cells) + " |")
        lines.append("")
    v = table["verdict"]
    names = ", ".join(t.name for t in TASKS if t.id in v["amc_wins"]) or "none"
    claim = "holds" if v["holds"] else "does not hold here"
    lines += [
        f"At {100 * float(v['share']):g}% of the data, AMC pre-training beats both alternatives on"
        f" {len(v['amc_wins'])} of {len(TASKS)} tasks on the i.i.d. split ({names}): the paper's claim"
        f" (at least {WINS_NEEDED} of {len(TASKS)}) {claim}.",
        "",
        f"![accuracy against the share of fine-tuning data]({PLOT})",
        "",
    ]
    return lines


def main() -> None:
    """Command line entry point; the usage is in the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True, help="the demo run folder (holds ablation/<arm>-<share>/)")
    args = parser.parse_args()
    print("wrote " + " and ".join(str(p) for p in main_for(Path(args.run))))


def main_for(run: Path) -> tuple[Path, Path]:
    """Collect ``run``'s ablation and write its table and plot; returns their paths."""
    table = collect(run)
    (run / TABLE).write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
    return run / TABLE, plot(table, run / PLOT)


if __name__ == "__main__":
    main()
