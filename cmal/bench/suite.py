"""The whole benchmark: engine per batch size, the service over HTTP (closed-loop concurrency
sweep, open-loop Poisson load at fractions of its best throughput, cold start), each backend,
the ratios the project's performance targets are stated in, a JSON report and a PNG plot.

Every figure comes from one run on one machine, so the ratios compare like with like. The
service runs with its detector cache off: each request is a new image, as for the engine.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from cmal.bench.engine import time_batches, time_parallel
from cmal.bench.machine import describe, steal_seconds
from cmal.bench.queueing import floor
from cmal.bench.ratios import ratios
from cmal.bench.server import free_port, scrape, start_service, stop_service
from cmal.bench.targets import targets, verdicts
from cmal.tritonserver import LocalTriton
from service.runtime import Backend

# backend name -> (service backend, ONNX variant)
BACKENDS = {
    "onnx": ("onnx", "fp32"),
    "onnx-fp16": ("onnx", "fp16"),
    "onnx-int8": ("onnx", "int8"),
    "torchscript": ("torchscript", "fp32"),
    "torch": ("torch", "fp32"),
    # eager PyTorch under fp16 autocast: offered on a GPU only (service.runtime.TORCH_VARIANTS)
    "torch-fp16": ("torch", "fp16"),
    # the API in front of a local tritonserver (cmal.tritonserver) serving the export's CPU test
    # variant; its engine is the same Triton called directly, without HTTP or the service
    "triton": ("triton", "fp32"),
}
DATA_SEED = 4242  # a Shapes test split no training run uses


@dataclass
class BenchSettings:
    """What to measure; the defaults are `cmal bench`'s."""

    out: Path
    preset: str = "demo"
    model: Path | None = None  # a model directory instead of a preset
    graphs: Path | None = None  # its exported graphs (default: exported into ``out``)
    backends: list[str] = field(default_factory=lambda: ["onnx", "onnx-int8", "torchscript", "torch"])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    concurrency: list[int] = field(default_factory=lambda: [1, 8, 32, 64])
    load_fractions: list[float] = field(default_factory=lambda: [0.5])
    seconds: float = 10.0  # per measured point
    warmup_s: float = 2.0
    images: int = 300
    threads: int = 0  # inference threads (0: the runtime's default)
    service_env: dict[str, str] = field(default_factory=dict)  # extra CMAL_* settings


def vqa_samples(folder: Path) -> list[tuple[Path, str]]:
    """One VQA question per image of a Shapes split (so no image is asked about twice)."""
    from cmal.data.formats import load

    seen: dict[Path, str] = {}
    for q in load(folder / "vqa.jsonl", "vqa"):
        seen.setdefault(q.image, q.question)
    return list(seen.items())


def write_requests(samples: list[tuple[Path, str]], path: Path) -> None:
    """The load generator's request file: one /v1/vqa body per sample."""
    with path.open("w") as f:
        for image, question in samples:
            body = {"image": base64.b64encode(image.read_bytes()).decode(), "question": question}
            f.write(json.dumps({"path": "/v1/vqa", "body": body}) + "\n")


def load_phase(port: int, requests: Path, job: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run one load phase in a separate load-generator process and return its summary."""
    spec = work / "job.json"
    spec.write_text(json.dumps({"port": port, "requests": str(requests), **job}))
    stolen = steal_seconds()
    done = subprocess.run(
        [sys.executable, "-m", "cmal.bench.loadgen", str(spec)], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"the load generator failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    # CPU-seconds the hypervisor gave to other machines meanwhile: a slow point with steal is the
    # neighbours', one without it is ours
    result["steal_s"] = round(steal_seconds() - stolen, 2)
    return result


class Progress:
    """A progress bar over the benchmark's steps (silent when ``quiet``)."""

    def __init__(self, total: int, quiet: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, disable=quiet, unit="step", dynamic_ncols=True)

    def step(self, what: str) -> None:
        """Show ``what`` runs now; call `done` when it has finished."""
        self.bar.set_description(what)

    def done(self) -> None:
        """One step finished."""
        self.bar.update(1)

    def write(self, text: str) -> None:
        """Print a line above the bar."""
        self.bar.write(text)


def run_bench(settings: BenchSettings, quiet: bool = False) -> dict[str, Any]:
    """Run the benchmark, write ``bench.json`` and ``bench.png`` to ``settings.out``, return the report."""
    for name in settings.backends:
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    settings.out.mkdir(parents=True, exist_ok=True)
    primary = settings.backends[0]
    n_engine = len(settings.backends) * len(settings.batch_sizes) + 2
    n_service = len(settings.concurrency) + len(settings.load_fractions) + len(settings.backends) - 1
    progress = Progress(2 + n_engine + n_service, quiet)

    progress.step("model")
    model_dir, graphs = _model(settings, progress.write)
    progress.done()
    progress.step("data")
    samples = _data(settings)
    images = [Image.open(p).convert("RGB") for p, _ in samples]
    texts = [q for _, q in samples]
    progress.done()

    run = _Run(settings, model_dir, graphs, images, texts, progress)
    try:
        engine = {name: run.engine(name) for name in settings.backends}
        parallel = run.side_by_side()
        progress.step("FLOPs and the dense matmul rate")
        compute = compute_share(run.primary_backend, images, texts, settings, engine[primary])
        progress.done()
        service = {name: run.service(name) for name in settings.backends}
    finally:
        run.close()
    progress.bar.close()

    report = {
        "preset": settings.preset if not settings.model else None,
        "model": str(model_dir),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
        "machine": describe(run.gpu_name()),
        "engine": engine,
        "engine_side_by_side": {primary: parallel},
        "compute": compute,
        "service": service,
        # the latency one engine of these batch times would give at each Poisson rate, with no service
        # around it (cmal.bench.queueing): the floor under the measured p99/p50
        "ideal_server": {
            str(p["fraction"]): floor(engine[primary], p["rate_per_s"]) for p in service[primary]["open_loop"]
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    measured, wanted = ratios(report, primary), targets(settings.preset)
    report.update(ratios=measured, targets=wanted, verdicts=verdicts(measured, wanted))
    (settings.out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    from cmal.bench.plot import plot

    plot(report, settings.out / "bench.png")
    return report


def _model(settings: BenchSettings, log: Callable[[str], None]) -> tuple[Path, Path | None]:
    """The model directory and its exported graphs, with the ONNX variants the backends need;
    no graphs (None, nothing exported) when every backend is eager PyTorch."""
    from cmal.bench.presets import exported, prepare, usable
    from cmal.model_dir import EXPORT_DIR

    graphed = [BACKENDS[b] for b in settings.backends if BACKENDS[b][0] != "torch"]
    variants = {variant for _, variant in graphed} - {"fp32"}
    if not settings.model:
        return prepare(settings.preset, settings.out, variants, log, export=bool(graphed))
    if not graphed:
        return settings.model, None
    # a model of one's own: its own export when that will do, else one made for the benchmark
    graphs = settings.graphs or settings.model / EXPORT_DIR
    if not settings.graphs and not usable(settings.model, graphs, variants):
        graphs = exported(settings.model, settings.out / f"graphs-{settings.model.name}", variants, True, log)
    return settings.model, graphs


def _data(settings: BenchSettings) -> list[tuple[Path, str]]:
    """The test split's (image, question) samples, and the load generator's request file."""
    from cmal.data.generate import generate_split

    data = settings.out / "data"
    if not (data / "vqa.jsonl").is_file():
        generate_split(data, seed=DATA_SEED, num_images=settings.images, split="test", progress=False)
    samples = vqa_samples(data)[: settings.images]
    write_requests(samples, settings.out / "requests.jsonl")
    return samples


class _Run:
    """One benchmark's measurements of the engine and of the service, phase by phase."""

    def __init__(
        self,
        settings: BenchSettings,
        model_dir: Path,
        graphs: Path | None,
        images: list[Image.Image],
        texts: list[str],
        progress: Progress,
    ):
        self.settings, self.model_dir, self.graphs = settings, model_dir, graphs
        self.images, self.texts, self.progress = images, texts, progress
        self.primary = settings.backends[0]
        # kept loaded: the engine measured beside each service point is this same backend
        self.primary_backend: Backend | None = None
        self.triton: LocalTriton | None = None  # started for the triton backend, stopped by `close`

    def _triton_url(self) -> str:
        """The gRPC address of the local tritonserver, started on first use on the export's CPU
        test variant (written if the export lacks it)."""
        if self.triton is None:
            assert self.graphs is not None, "triton needs exported graphs"
            from cmal import tritonserver
            from cmal.model_dir import MANIFEST
            from export.triton import TRITON_PYTHON_DIR, write_python_repository

            repository = self.graphs / TRITON_PYTHON_DIR
            if not (repository / "repository.json").is_file():
                manifest = json.loads((self.graphs / MANIFEST).read_text())
                repository = write_python_repository(self.graphs, manifest)
            self.progress.step("starting tritonserver")
            self.triton = tritonserver.start(repository, self.settings.out / "triton.log")
        return self.triton.grpc_url

    def _load(self, name: str, threads: int) -> Backend:
        from service.runtime import load_backend

        kind, variant = BACKENDS[name]
        url = self._triton_url() if kind == "triton" else ""
        return load_backend(self.model_dir, self.graphs, kind, variant, threads, url, timeout_s=120)

    def gpu_name(self) -> str | None:
        """The GPU the swept backend ran on, if it ran on one."""
        provider = getattr(self.primary_backend, "provider", "")
        if provider == "cuda":
            import torch

            return str(torch.cuda.get_device_name(0))
        if provider == "CUDAExecutionProvider":
            return "CUDA (ONNX Runtime)"
        return None

    def close(self) -> None:
        """Stop what the run started (tritonserver)."""
        if self.triton is not None:
            self.triton.stop()

    def engine(self, name: str) -> list[dict[str, Any]]:
        """The backend alone, per batch size, with the CPU time stolen meanwhile."""
        backend = self._load(name, self.settings.threads)
        points = []
        for b in self.settings.batch_sizes:
            self.progress.step(f"engine {name} batch {b}")
            stolen = steal_seconds()
            seconds, warmup = self.settings.seconds, self.settings.warmup_s
            point = time_batches(backend, self.images, self.texts, b, seconds, warmup)
            points.append({**point, "steal_s": round(steal_seconds() - stolen, 2)})
            self.progress.done()
        if name == self.primary:
            self.primary_backend = backend
        return points

    def side_by_side(self) -> dict[str, Any]:
        """The engine as the service runs it by default: calls side by side, as many as its workers."""
        from service.runtime import parallelism

        workers, threads = parallelism(BACKENDS[self.primary][0], 0, self.settings.threads)
        self.progress.step(f"engine {self.primary}: {workers} calls side by side")
        backend = self._load(self.primary, threads)
        batch = max(self.settings.batch_sizes)
        parallel = time_parallel(backend, self.images, self.texts, batch, self.settings.seconds, workers)
        self.progress.done()
        return {**parallel, "threads_per_call": threads}

    def service(self, name: str) -> dict[str, Any]:
        """The service over HTTP with backend ``name``: cold start, then the closed-loop sweep and
        the Poisson load for the swept (first) backend, one client for the others."""
        settings = self.settings
        kind, variant = BACKENDS[name]
        env = {
            "CMAL_BACKEND": kind, "CMAL_VARIANT": variant,
            **({"CMAL_GRAPHS_DIR": str(self.graphs)} if self.graphs else {}),
            "CMAL_CACHE_SIZE": "0", "CMAL_MAX_BATCH_SIZE": str(max(settings.batch_sizes)),
            "CMAL_MAX_QUEUE": str(max(256, 4 * max(settings.concurrency))),
            **({"CMAL_THREADS": str(settings.threads)} if settings.threads else {}),
            **({"CMAL_TRITON_URL": self._triton_url()} if kind == "triton" else {}),
            **settings.service_env,
        }  # fmt: skip
        port = free_port()
        self.progress.step(f"service {name}: cold start")
        proc, cold = start_service(self.model_dir, port, settings.out / "service.log", env)
        result: dict[str, Any] = {"cold_start_s": round(cold, 3), "closed_loop": [], "open_loop": []}
        swept = name == self.primary
        try:
            for c in settings.concurrency if swept else [1]:
                self.progress.step(f"service {name}: {c} clients")
                result["closed_loop"].append({"concurrency": c, **self._closed_point(port, c, swept)})
                self.progress.done()
            best = max(p["throughput_ok_per_s"] for p in result["closed_loop"])
            for i, fraction in enumerate(settings.load_fractions if swept else []):
                rate = fraction * best
                self.progress.step(f"service {name}: Poisson {rate:.0f}/s")
                job = {"mode": "open", "rate": rate, "seconds": 2 * settings.seconds,
                       "warmup_s": settings.warmup_s, "seed": i}  # fmt: skip
                point = load_phase(port, settings.out / "requests.jsonl", job, settings.out)
                result["open_loop"].append({"fraction": fraction, "rate_per_s": round(rate, 2), **point})
                self.progress.done()
        finally:
            stop_service(proc)
        return result

    def _closed_point(self, port: int, clients: int, paired: bool) -> dict[str, Any]:
        """One closed-loop point, with the mean batch the server ran; when ``paired``, the
        engine measured just before it (batch 1 for one client, the largest batch otherwise):
        the machine's speed drifts by tens of percent within minutes, and the ratio uses it."""
        settings = self.settings
        engine_now = None
        if paired and self.primary_backend is not None:
            b = 1 if clients == 1 and 1 in settings.batch_sizes else max(settings.batch_sizes)
            engine_now = time_batches(self.primary_backend, self.images, self.texts, b, settings.seconds / 2)
        job = {
            "mode": "closed",
            "clients": clients,
            "seconds": settings.seconds,
            "warmup_s": settings.warmup_s,
        }
        before = scrape(port)
        point = load_phase(port, settings.out / "requests.jsonl", job, settings.out)
        after = scrape(port)
        if engine_now:
            point["engine_paired"] = {k: engine_now[k] for k in ("batch_size", "samples_per_s")}
        batches = after.get("batches", 0) - before.get("batches", 0)
        rows = after.get("rows", 0) - before.get("rows", 0)
        point["mean_batch_rows"] = round(rows / batches, 2) if batches else 0.0
        return point


def compute_share(
    backend: Backend | None,
    images: list[Image.Image],
    texts: list[str],
    settings: BenchSettings,
    engine: list[dict[str, Any]],
) -> dict[str, Any]:
    """The engine's FLOP/s at its largest batch (FLOPs counted from the shapes the model ran
    with) as a share of the best dense matmul rate its runtime reaches here: ONNX Runtime's
    for ONNX graphs, torch's for eager PyTorch; fp32 on the CPU on as many threads, fp16 on a GPU.
    Empty for other backends."""
    from cmal.bench import flops
    from cmal.inference import OnnxModel
    from service.runtime import TorchBackend

    batch = max(settings.batch_sizes)
    idx = [k % len(images) for k in range(batch)]
    sample_images, sample_texts = [images[k] for k in idx], [texts[k] for k in idx]
    seconds = min(3.0, settings.seconds)
    model = getattr(backend, "model", None)
    if isinstance(model, OnnxModel):
        per_sample = flops.engine_flops_per_sample(model, sample_images, sample_texts)
        gpu = model.provider == "CUDAExecutionProvider"  # then the peak that counts is fp16 on the GPU
        rate = flops.matmul_rate(settings.threads, seconds=seconds, gpu=gpu)
        runtime = "ONNX Runtime"
    elif isinstance(backend, TorchBackend) and backend.name == "torch":
        per_sample = flops.torch_flops_per_sample(backend, sample_images, sample_texts)
        gpu = backend.provider == "cuda"
        rate = flops.torch_matmul_rate(gpu, seconds=seconds)
        runtime = "torch"
    else:
        return {}
    speed = next(p["samples_per_s"] for p in engine if p["batch_size"] == batch)
    return {
        "batch_size": batch,
        "gflop_per_sample": {k: round(v / 1e9, 4) for k, v in per_sample.items()},
        "engine_gflop_per_s": round(per_sample["total"] * speed / 1e9, 2),
        "matmul_gflop_per_s": round(rate / 1e9, 2),
        "threads": settings.threads or "runtime default",
        "matmul": f"{runtime}, " + ("fp16 on the GPU" if gpu else "fp32 on the CPU"),
    }
