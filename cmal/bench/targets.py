"""The performance targets `cmal bench` judges, and the one mapping from a measured ratio to the
target it is judged by (used for the verdicts and for each row of the printed table)."""

from __future__ import annotations

# a target's name ends in _min (the ratio must reach it) or _max (must not exceed it)
PRESET_TARGETS = {
    "demo": {"c1_vs_engine_b1_min": 0.85, "c32_c64_vs_engine_bmax_min": 0.90, "cmax_vs_best_min": 0.95,
             "p99_over_p50_max": 2.0, "onnx_vs_torch_c1_min": 2.5, "cold_start_s_max": 2.0},
    "paper": {"service_vs_engine_min_c8": 0.95, "p99_over_p50_max": 2.0, "cold_start_s_max": 5.0,
              "engine_flops_vs_matmul_min": 0.8},
}  # fmt: skip
# targets met when either of their ratios meets them: the engine at its best (one call, or calls
# side by side); every other target needs all of its ratios
ANY_OF = {"engine_flops_vs_matmul_min"}
NAMED = {  # ratios judged by a target of their own
    "c1_vs_engine_b1": "c1_vs_engine_b1_min",
    "cmax_vs_best": "cmax_vs_best_min",
    "cold_start_s": "cold_start_s_max",
    "onnx_vs_torch_c1": "onnx_vs_torch_c1_min",
    "engine_flops_vs_matmul": "engine_flops_vs_matmul_min",
    "engine_side_by_side_flops_vs_matmul": "engine_flops_vs_matmul_min",
}


def targets(preset: str) -> dict[str, float]:
    """The project's targets for a preset (see the README's "Performance")."""
    return dict(PRESET_TARGETS.get(preset, PRESET_TARGETS["demo"]))


def target_of(ratio: str, targets: dict[str, float]) -> str | None:
    """The target among ``targets`` that ``ratio`` is judged by, if any."""
    key = NAMED.get(ratio)
    if key is None and ratio.startswith("p99_over_p50"):
        key = "p99_over_p50_max"
    elif key is None and ratio.startswith("c") and "_vs_engine_b" in ratio:  # c<N>_vs_engine_b<B>
        clients = int(ratio[1:].split("_")[0])
        if clients in (32, 64) and "c32_c64_vs_engine_bmax_min" in targets:
            key = "c32_c64_vs_engine_bmax_min"
        elif clients >= 8:
            key = "service_vs_engine_min_c8"
    return key if key in targets else None


def meets(value: float, target: str, bound: float) -> bool:
    """Whether one measured ``value`` meets ``target``'s ``bound``."""
    return value <= bound if target.endswith("_max") else value >= bound


def verdicts(ratios: dict[str, float | None], targets: dict[str, float]) -> dict[str, bool | None]:
    """Each target met (True), missed (False) or not measured in this run (None)."""
    out: dict[str, bool | None] = {}
    for name, bound in targets.items():
        rows = [
            meets(v, name, bound)
            for r, v in ratios.items()
            if v is not None and target_of(r, targets) == name
        ]
        out[name] = (any(rows) if name in ANY_OF else all(rows)) if rows else None
    return out
