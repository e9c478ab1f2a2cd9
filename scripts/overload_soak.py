"""Overload and soak test of the service as a real process (not part of CI: about 32 minutes).

    .venv/bin/python scripts/overload_soak.py --out runs/reliability [--soak-minutes 30]

The service takes its settings from the environment's CMAL_* (e.g. CMAL_PROCESSES=2).
``--server-cpus 0 --loadgen-cpus 1`` runs the service and the load generator on separate cores
(then give the service one process per core it has: CMAL_PROCESSES=1 here).

1. **Capacity**: a closed loop of 64 clients for 15 s over mixed requests (the four endpoints on
   a fresh Shapes test split) gives the service's throughput C on this machine.
2. **Overload**: 60 s of open-loop (Poisson) arrivals at 10 × C over at most 512 connections.
   Pass: every request is answered 200, 429 with Retry-After, or 504 no later than its deadline
   (plus 1 s of grace for the measurement); 0 connection errors; every accepted request
   completes; the server's own counters account for every request sent; resident memory 40 s
   afterwards (the service gives freed memory back every 30 s while idle) within 10% of before.
3. **Soak**: open-loop arrivals at 0.7 × C for ``--soak-minutes``, reporting throughput, p99 and
   resident memory every minute. Pass: each stays within 10% of its median over the minutes.
   Each minute also records the hypervisor's steal and the model's own time per text row (from
   the server's metrics): a p99 spike that comes with a slower model is the machine's, not the
   service's.

Writes ``report.json`` and ``soak.png`` to ``--out`` and prints a summary. The load generator is a
minimal HTTP/1.1 client on asyncio streams, so that it can offer 10 × C from the same 2-core
machine; it counts a connection reset or an unanswered request as a connection error.

The load generator and the service process helpers are `cmal bench`'s (`cmal.bench.loadgen`,
`cmal.bench.server`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cmal.bench.loadgen import Pool, closed_loop, open_loop, request_bytes  # noqa: E402
from cmal.bench.machine import steal_seconds  # noqa: E402
from cmal.bench.server import free_port, scrape, start_service, stop_service  # noqa: E402
from cmal.data.formats import load  # noqa: E402
from cmal.data.generate import generate_split  # noqa: E402

DEADLINE_S = 10.0  # the service's default CMAL_REQUEST_TIMEOUT_MS
GRACE_S = 1.0
SETTLE_S = 40.0  # idle time before memory is read again: the service trims its heap every 30 s


def mixed_requests(folder: Path) -> list[bytes]:
    images: dict[Path, str] = {}

    def image(path: Path) -> str:
        if path not in images:
            images[path] = base64.b64encode(path.read_bytes()).decode()
        return images[path]

    out = [request_bytes("/v1/entailment", {"image": image(r.image), "hypothesis": r.hypothesis})
           for r in load(folder / "ve.jsonl", "ve")]  # fmt: skip
    out += [request_bytes("/v1/grounding", {"image": image(r.image), "expression": r.expression})
            for r in load(folder / "rec.jsonl", "rec")]  # fmt: skip
    out += [request_bytes("/v1/vqa", {"image": image(r.image), "question": r.question})
            for r in load(folder / "vqa.jsonl", "vqa")]  # fmt: skip
    out += [request_bytes("/v1/matching", {"image": image(r.image), "texts": [r.text]})
            for r in load(folder / "itm.jsonl", "itm")]  # fmt: skip
    random.Random(0).shuffle(out)
    return out


def rss_mib(pid: int) -> float:
    """Resident memory of the service: the process and its children (the server processes of
    CMAL_PROCESSES > 1; their supervisor's own share is small)."""
    total = 0.0
    for proc in [pid, *children(pid)]:
        for line in Path(f"/proc/{proc}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue  # it exited meanwhile
    return out


def server_counts(port: int) -> dict[str, float]:
    """The server's request counts by outcome."""
    return {k: v for k, v in scrape(port).items() if k not in ("engine_s", "rows", "batches")}


def within(values: list[float], tolerance: float) -> bool:
    median = float(np.median(values))
    return all(abs(v - median) <= tolerance * median for v in values)


async def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        generate_split(Path(tmp), seed=8080, num_images=200, split="test", progress=False)
        requests = mixed_requests(Path(tmp))
    port = free_port()
    proc, _ = start_service(
        ROOT / "models" / "shapes-demo", port, Path(args.out) / "service.log", cpus=args.server_cpus
    )
    if args.loadgen_cpus:
        os.sched_setaffinity(0, args.loadgen_cpus)
    report: dict[str, object] = {
        "requests_in_pool": len(requests),
        "settings": {k: v for k, v in sorted(os.environ.items()) if k.startswith("CMAL_")},
        "server_cpus": sorted(args.server_cpus or []),
        "loadgen_cpus": sorted(args.loadgen_cpus or []),
    }
    pool = Pool(port, args.connections)
    try:
        print("capacity: closed loop, 64 clients, 15 s", flush=True)
        await closed_loop(pool, requests, 64, 3)  # warm-up, not counted
        cap = await closed_loop(pool, requests, 64, 15)
        capacity = cap.summary(15)["throughput_ok_per_s"]
        assert isinstance(capacity, float)
        report["capacity"] = cap.summary(15)
        print(f"  {capacity} req/s", flush=True)

        pool.close()
        await asyncio.sleep(2)
        counted_before = server_counts(port)
        rss_before = rss_mib(proc.pid)
        rate = 10 * capacity
        print(f"overload: {rate:.0f} req/s (10 x capacity) for {args.overload_seconds} s", flush=True)
        began = time.perf_counter()
        over = await open_loop(pool, requests, rate, args.overload_seconds, seed=1)
        drained = time.perf_counter() - began
        pool.close()
        await asyncio.sleep(SETTLE_S)
        rss_after = rss_mib(proc.pid)
        counted = {k: v - counted_before.get(k, 0.0) for k, v in server_counts(port).items()}
        statuses = Counter(o.status for o in over.outcomes)
        late_504 = [o.wire for o in over.outcomes if o.status == 504 and o.wire > DEADLINE_S + GRACE_S]
        bare_429 = [o for o in over.outcomes if o.status == 429 and not o.retry_after]
        accepted = len(over.outcomes) - statuses.get(429, 0) - statuses.get(-1, 0)
        overload = {
            **over.summary(drained),
            "offered_per_s": round(len(over.outcomes) / args.overload_seconds, 1),
            "seconds_until_all_answered": round(drained, 1),
            "answered_per_s": round(len(over.outcomes) / drained, 1),
            "connection_errors": statuses.get(-1, 0),
            "other_status": sum(v for k, v in statuses.items() if k not in (200, 429, 504, -1)),
            "late_504": len(late_504),
            "429_without_retry_after": len(bare_429),
            "accepted": accepted,
            "accepted_completed": statuses.get(200, 0) + statuses.get(504, 0),
            "server_counted": counted,
            "rss_before_mib": round(rss_before, 1),
            "rss_after_mib": round(rss_after, 1),
        }
        overload["passed"] = (
            overload["connection_errors"] == 0
            and overload["other_status"] == 0
            and not late_504
            and not bare_429
            and overload["accepted_completed"] == accepted
            and sum(counted.values()) == len(over.outcomes)
            and abs(rss_after - rss_before) <= 0.10 * rss_before
        )
        report["overload"] = overload
        print(f"  {json.dumps(overload)}", flush=True)

        if not args.soak_minutes:
            return report
        rate = 0.7 * capacity
        print(f"soak: {rate:.0f} req/s (0.7 x capacity) for {args.soak_minutes} min", flush=True)
        minutes = []
        for minute in range(1, args.soak_minutes + 1):
            stolen, engine = steal_seconds(), scrape(port)
            part = await open_loop(pool, requests, rate, 60, seed=100 + minute)
            engine_after = scrape(port)
            rows = engine_after.get("rows", 0.0) - engine.get("rows", 0.0)
            busy = engine_after.get("engine_s", 0.0) - engine.get("engine_s", 0.0)
            row = {
                "minute": minute,
                **part.summary(60),
                "rss_mib": round(rss_mib(proc.pid), 1),
                "steal_s": round(steal_seconds() - stolen, 2),
                # the model's own time per text row this minute: when it rises with p99, the
                # machine slowed down (neighbours, frequency), not the service around the model
                "engine_ms_per_row": round(1000 * busy / rows, 3) if rows else None,
            }
            minutes.append(row)
            print(f"  {json.dumps(row)}", flush=True)
        throughput = [float(m["throughput_ok_per_s"]) for m in minutes]  # type: ignore[arg-type]
        p99 = [float(m["p99_ms"]) for m in minutes]  # type: ignore[arg-type]
        rss = [float(m["rss_mib"]) for m in minutes]  # type: ignore[arg-type]
        failures = sum(m["requests"] - m["status"].get("200", 0) for m in minutes)  # type: ignore[operator, union-attr]
        report["soak"] = {
            "rate_per_s": round(rate, 1),
            "minutes": minutes,
            "non_200": failures,
            "throughput_flat": within(throughput, 0.10),
            "p99_flat": within(p99, 0.10),
            "rss_flat": within(rss, 0.10),
        }
        plot(minutes, Path(args.out) / "soak.png", rate)
    finally:
        pool.close()
        stop_service(proc)
    return report


def plot(minutes: list[dict[str, object]], path: Path, rate: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [m["minute"] for m in minutes]
    panels = [
        ("throughput_ok_per_s", f"answered 200 / s\n(offered {rate:.0f})"),
        ("p99_ms", "p99 latency (ms)"),
        ("rss_mib", "resident memory (MiB)"),
    ]
    if all(m.get("engine_ms_per_row") is not None for m in minutes):  # older reports lack these
        panels.append(("engine_ms_per_row", "model time per\ntext row (ms)"))
    if all(m.get("steal_s") is not None for m in minutes):
        panels.append(("steal_s", "CPU-seconds stolen\nby the hypervisor"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.3 * len(panels)), sharex=True)
    for ax, (key, label) in zip(axes, panels, strict=True):
        values = [float(m[key]) for m in minutes]  # type: ignore[arg-type]
        median = float(np.median(values))
        ax.plot(x, values, marker="o")
        if key != "steal_s":  # the machine's, not the service's: no flatness band
            ax.axhspan(0.9 * median, 1.1 * median, alpha=0.15, label="median ± 10%")
            ax.legend(loc="lower right")
        if key == "p99_ms":
            ax.set_yscale("log")  # spikes are tens of times the median
        ax.set_ylabel(label)
    axes[-1].set_xlabel("minute of the soak")
    fig.suptitle("CMAL service soak at 0.7 × capacity")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def cpu_list(text: str) -> set[int]:
    """CPU numbers from "0" or "0,1"; each must be one this process may use."""
    try:
        cpus = {int(c) for c in text.split(",")}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CPU numbers such as 0 or 0,1, got {text!r}") from None
    if not cpus <= os.sched_getaffinity(0):
        raise argparse.ArgumentTypeError(
            f"CPUs {sorted(cpus)} are not all usable here: {sorted(os.sched_getaffinity(0))}"
        )
    return cpus


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/reliability", help="folder for report.json and soak.png")
    parser.add_argument("--overload-seconds", type=int, default=60)
    parser.add_argument("--soak-minutes", type=int, default=30)
    parser.add_argument("--connections", type=int, default=512, help="most connections open at once")
    parser.add_argument(
        "--server-cpus",
        type=cpu_list,
        help="run the service on these CPUs only, e.g. 0 (default: any); with --loadgen-cpus the two "
        "stop competing for the same cores",
    )
    parser.add_argument("--loadgen-cpus", type=cpu_list, help="run the load generator on these CPUs only")
    parser.add_argument("--plot-only", metavar="REPORT", help="redraw soak.png from a report.json")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.plot_only:
        soak = json.loads(Path(args.plot_only).read_text())["soak"]
        plot(soak["minutes"], Path(args.out) / "soak.png", soak["rate_per_s"])
        return
    report = asyncio.run(run(args))
    (Path(args.out) / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}/report.json and soak.png")


if __name__ == "__main__":
    main()
