"""Service settings, all from ``CMAL_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cmal.text.length_groups import INFERENCE_GROUPS

# the demo model shipped with the project, wherever the service is started from
BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "models" / "shapes-demo"


class Settings(BaseSettings):
    """Every setting of the service; each field ``x`` is read from ``CMAL_X``."""

    model_config = SettingsConfigDict(env_prefix="CMAL_", protected_namespaces=())

    model_dir: Path = Field(BUNDLED_MODEL, description="model directory to serve (default: the bundled demo)")
    graphs_dir: Path | None = Field(None, description="exported graphs (default MODEL_DIR/export)")
    backend: Literal["onnx", "torchscript", "torch", "triton"] = Field(
        "onnx", description="inference backend"
    )
    triton_url: str = Field(
        "127.0.0.1:8001", description="gRPC host:port of the Triton server (CMAL_BACKEND=triton)"
    )
    variant: Literal["fp32", "fp16", "int8"] = Field(
        "fp32", description="ONNX graph variant; torch and torchscript: fp32, or fp16 (autocast) on a GPU"
    )
    max_batch_size: int = Field(32, ge=1, le=1024, description="most text rows in one batch")
    max_batch_delay_ms: float = Field(
        0.0, ge=0, description="a free worker waits this long for a fuller batch (0: starts at once)"
    )
    length_groups: int = Field(
        INFERENCE_GROUPS,
        ge=1,
        le=16,
        description="a batch runs as up to this many sub-batches of similar text length, so short texts "
        "are not padded to the longest (1: one padded batch; not for CMAL_BACKEND=triton)",
    )
    max_queue: int = Field(256, ge=1, description="queued requests beyond this are rejected with 429")
    request_timeout_ms: float = Field(10_000, gt=0, description="per-request deadline (504 after it)")
    api_key: str | None = Field(None, description="if set, requests need 'Authorization: Bearer <key>'")
    max_body_bytes: int = Field(10 * 2**20, description="larger request bodies get 413")
    max_image_bytes: int = Field(8 * 2**20, description="larger encoded images get 413")
    max_image_pixels: int = Field(16_000_000, description="larger images (decompression bombs) get 413")
    min_image_side: int = Field(16, ge=1, description="images smaller than this on a side get 422")
    max_text_chars: int = Field(300, description="longer texts get 422")
    max_texts: int = Field(32, description="most texts in one /v1/matching request")
    cache_size: int = Field(256, ge=0, description="detector results kept by image content hash")
    processes: int = Field(
        1,
        ge=1,
        le=64,
        description="server processes, each with its own batcher, workers and share of the port",
    )
    workers: int = Field(
        0, ge=0, description="inference workers per process (0: the process's share of the cores; GPU: 1)"
    )
    threads: int = Field(
        0, ge=0, description="threads per inference call (0 = 1 with several workers, else the runtime's)"
    )
    # uvicorn closes a keep-alive connection idle this long. Its default (5 s) equals httpx's pool
    # expiry and is far below nginx's or a cloud load balancer's (60 s): a client reusing a
    # connection at the moment the server closes it gets "connection reset" and the request is
    # lost. The server must outlive its clients' idle timeouts (Kludex/uvicorn#2097,
    # vllm-project/vllm#18472); 75 s is nginx's and gunicorn's customary value.
    keep_alive_s: int = Field(75, ge=1, description="idle keep-alive connections close after this")
    tracing: Literal["off", "console", "otlp"] = Field(
        "off",
        description="OpenTelemetry spans per request: off, console (stdout) or otlp (OTEL_EXPORTER_OTLP_*)",
    )
