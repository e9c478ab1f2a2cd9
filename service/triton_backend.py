"""The ``triton`` backend: detector and fusion batches run on NVIDIA Triton Inference Server.

The service keeps what it does well (the HTTP contract, decoding, tokenising and anchors, limits,
errors, metrics, its own batching) and sends each batch's two graph calls to Triton over gRPC
(``CMAL_TRITON_URL``), so API replicas and Triton instances scale separately; Triton's dynamic
batcher merges the batches of several API workers and replicas. No torch here either.

`tritonclient.grpc.aio` runs on one private event loop thread; the service's inference workers
(threads) hand it their calls and wait. Triton's answers map onto the service's contract:
a full Triton queue -> `BackendOverloaded` (429), a call past its deadline -> `BackendTimeout`
(504), an unreachable server -> `BackendUnavailable` (503). At start the API waits up to
`STARTUP_WAIT_S` for Triton and both models to be ready.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from PIL import Image
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from cmal.inference import (
    DETECTOR_OUTPUTS,
    FUSION_INPUTS,
    FUSION_OUTPUTS,
    GraphMismatch,
    ModelFiles,
    Regions,
    encode_batch,
    preprocess,
)
from service.runtime import BackendOverloaded, BackendTimeout, BackendUnavailable

T = TypeVar("T")
MODELS = ("detector", "fusion")
# how long a starting API waits for Triton (an orchestrator may start both at once); the API's
# Kubernetes startup probe allows 120 s
STARTUP_WAIT_S = 100.0
log = logging.getLogger(__name__)


def _translate(error: Exception) -> Exception:
    """Triton's gRPC error (an `InferenceServerException`) as the service's exception; unknown
    ones are returned unchanged."""
    status, message = str(error.status() or ""), str(error.message() or "")  # type: ignore[attr-defined]
    if status.endswith("DEADLINE_EXCEEDED"):
        return BackendTimeout(message)
    if status.endswith("UNAVAILABLE") and "queue size" in message:  # the model's max_queue_size
        return BackendOverloaded(message)
    if status.endswith("UNAVAILABLE"):
        return BackendUnavailable(message)
    return error


class TritonBackend:
    """`service.runtime.Backend` over a Triton server that serves this model's ``detector`` and
    ``fusion`` (``cmal export --format triton``)."""

    name = "triton"

    def __init__(self, model_dir: Path, url: str, timeout_s: float, wait_s: float = STARTUP_WAIT_S):
        self.files = ModelFiles.load(model_dir)
        self.url = url
        self.provider = f"triton@{url}"
        self.timeout_s = timeout_s
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cmal-triton", daemon=True)
        self.thread.start()
        self.client: aioclient.InferenceServerClient = self._wait(self._connect())
        try:
            self._wait_until_ready(wait_s)
            self._check_models()
        except Exception:
            self.close()
            raise

    def _wait_until_ready(self, wait_s: float) -> None:
        """Wait up to ``wait_s`` for Triton and both models to be ready (an API pod may start before
        Triton has loaded), logging every 10 s; then `BackendUnavailable` naming the reason."""
        began = time.monotonic()
        logged = began
        while True:
            try:
                missing = [m for m in MODELS if not self._wait(self.client.is_model_ready(m))]
                reason = f"models not ready: {', '.join(missing)}" if missing else ""
            except BackendUnavailable as e:
                reason = str(e)
            if not reason:
                return
            now = time.monotonic()
            if now - began >= wait_s:
                raise BackendUnavailable(f"Triton at {self.url} not ready after {wait_s:.0f} s ({reason})")
            if now - logged >= 10:
                log.warning("waiting for Triton at %s: %s", self.url, reason)
                logged = now
            time.sleep(0.5)

    async def _connect(self) -> aioclient.InferenceServerClient:
        return aioclient.InferenceServerClient(self.url)  # made on the loop that will use it

    def _wait(self, call: Coroutine[Any, Any, T]) -> T:
        """Run ``call`` on the client's loop and wait for it (from any other thread)."""
        try:
            return asyncio.run_coroutine_threadsafe(call, self.loop).result()
        except InferenceServerException as e:
            raise _translate(e) from None

    def _check_models(self) -> None:
        """Both models fit this model directory (tensor names and answer count), else `GraphMismatch`."""
        detector = self._wait(self.client.get_model_metadata("detector"))
        fusion = self._wait(self.client.get_model_metadata("fusion"))
        names = {
            "detector inputs": ([t.name for t in detector.inputs], ["images"]),
            "detector outputs": ([t.name for t in detector.outputs], list(DETECTOR_OUTPUTS)),
            "fusion inputs": ([t.name for t in fusion.inputs], list(FUSION_INPUTS)),
            "fusion outputs": ([t.name for t in fusion.outputs], list(FUSION_OUTPUTS)),
        }
        for what, (served, expected) in names.items():
            if sorted(served) != sorted(expected):
                raise GraphMismatch(
                    f"Triton at {self.url}: {what} are {served}, this service needs {expected}"
                )
        answers = next(list(t.shape) for t in fusion.outputs if t.name == "vqa_logits")[-1]
        if answers != len(self.files.vocab.answers):
            raise GraphMismatch(
                f"Triton at {self.url} serves a fusion model with {answers} answers; "
                f"{self.files.name} has {len(self.files.vocab.answers)}: another model's export"
            )

    def _infer(self, model: str, feeds: dict[str, np.ndarray], outputs: Sequence[str]) -> list[np.ndarray]:
        inputs = []
        for name, array in feeds.items():
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(np.ascontiguousarray(array))
            inputs.append(tensor)
        requested = [grpcclient.InferRequestedOutput(n) for n in outputs]
        call = self.client.infer(model, inputs, outputs=requested, client_timeout=self.timeout_s)
        result = self._wait(call)
        return [result.as_numpy(n) for n in outputs]

    def detect(self, images: Sequence[Image.Image]) -> Regions:
        """Regions for a batch of decoded images (any sizes)."""
        batch = preprocess(images, self.files.image_size)
        out = self._infer("detector", {"images": batch}, DETECTOR_OUTPUTS)
        return Regions.from_outputs(out, [im.size for im in images])

    def fuse(self, texts: Sequence[str], regions: Regions) -> dict[str, np.ndarray]:
        """Every head's logits, by output name, for texts paired row by row with ``regions``."""
        feeds = encode_batch(self.files, texts, regions)
        out = self._infer("fusion", {n: feeds[n] for n in FUSION_INPUTS}, FUSION_OUTPUTS)
        rows = len(texts)
        # itm_logits is [batch] in the graph and [batch, 1] on the wire (Triton has no 0-d dims)
        return {
            n: o.reshape(rows) if n == "itm_logits" else o for n, o in zip(FUSION_OUTPUTS, out, strict=True)
        }

    def close(self) -> None:
        """Close the gRPC channel and stop the client's loop."""
        self._wait(self.client.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
