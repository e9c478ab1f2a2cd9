"""Garbage-collection pauses of the service under load, with and without its frozen start-up heap.

Usage: .venv/bin/python scripts/gc_pauses.py [--model models/shapes-demo] [--clients 32] [--seconds 20]

Starts the service (one process, ONNX, on 127.0.0.1) twice: as it is, and with
`service.collector.freeze_startup_heap` replaced by a no-op. Each is driven by `cmal bench`'s load
generator (closed loop, ``--clients`` clients sending VQA requests of a fresh Shapes test split) while
the server records every collection's pause (`gc.callbacks`, from the end of its warm-up). Prints,
per generation, the collections, their total and their longest pause, with the load's throughput
and p99 (those two move with the machine's speed; the pauses are what this measures).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def serve(port: int, report: Path, freeze: bool) -> None:
    """Run the service with a pause recorder; write the pauses to ``report`` at exit."""
    import service.app as app_module
    from service.__main__ import run_service

    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    began: list[float] = [0.0]

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            pauses[info["generation"]].append(time.perf_counter() - began[0])

    real = app_module.freeze_startup_heap

    def start_recording() -> int:
        frozen = real() if freeze else 0
        gc.callbacks.append(record)
        return frozen

    app_module.freeze_startup_heap = start_recording  # type: ignore[assignment]
    atexit.register(lambda: report.write_text(json.dumps(pauses)))
    sys.exit(run_service({"processes": 1}, "127.0.0.1", port, "warning"))


def measure(
    model: Path, work: Path, requests: Path, clients: int, seconds: float, freeze: bool
) -> dict[str, object]:
    """One server, one load phase: the pauses by generation and the load's figures."""
    from cmal.bench.server import free_port, ready
    from cmal.bench.suite import load_phase

    port, report = free_port(), work / f"pauses-{freeze}.json"
    env = {**os.environ, "CMAL_MODEL_DIR": str(model)}
    args = [sys.executable, __file__, "--serve", str(port), "--report", str(report)] + (
        [] if freeze else ["--no-freeze"]
    )
    with (work / "service.log").open("ab") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.perf_counter() + 180
        while not ready(port):
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"the service did not start; see {work / 'service.log'}")
            time.sleep(0.05)
        job = {"mode": "closed", "clients": clients, "seconds": seconds, "warmup_s": 2.0}
        load = load_phase(port, requests, job, work)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    pauses = {g: [float(p) for p in v] for g, v in json.loads(report.read_text()).items()}
    return {
        "freeze": freeze,
        "throughput_ok_per_s": load["throughput_ok_per_s"],
        "p99_ms": load["p99_ms"],
        "status": load["status"],
        "collections": {
            g: {
                "n": len(v),
                "total_ms": round(1000 * sum(v), 1),
                "longest_ms": round(1000 * max(v, default=0), 1),
            }
            for g, v in pauses.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "shapes-demo")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # internal: one measured server
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-freeze", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.report, not args.no_freeze)
    from cmal.bench.suite import DATA_SEED, vqa_samples, write_requests
    from cmal.data.generate import generate_split

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generate_split(work / "data", seed=DATA_SEED, num_images=300, split="test", progress=False)
        write_requests(vqa_samples(work / "data"), work / "requests.jsonl")
        for freeze in (False, True):
            print(
                json.dumps(
                    measure(args.model, work, work / "requests.jsonl", args.clients, args.seconds, freeze)
                )
            )


if __name__ == "__main__":
    main()
