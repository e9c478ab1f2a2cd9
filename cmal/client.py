"""A small Python client for the CMAL service's four task endpoints.

    from cmal.client import Client
    with Client("http://127.0.0.1:8000") as c:
        c.vqa("photo.png", "how many circles are there?")   # {"answer": "2", "score": ..., "top_k": [...]}

Images may be a path, raw bytes or a PIL image. Errors raise `ServiceError` with the status code and
the service's message. Only the standard library and httpx are needed (plus Pillow for PIL images).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx

ImageLike = str | Path | bytes | Any


class ServiceError(RuntimeError):
    """An error answer from the service: HTTP ``status``, the error ``code`` and its ``message``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def _encode(image: ImageLike) -> str:
    if isinstance(image, bytes):
        raw = image
    elif isinstance(image, str | Path):
        raw = Path(image).read_bytes()
    else:  # a PIL image
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        raw = buf.getvalue()
    return base64.b64encode(raw).decode()


class Client:
    """A synchronous client of one CMAL service at ``url``; an ``api_key`` is sent as a Bearer token."""

    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout: float = 30.0):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's HTTP connections."""
        self.http.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(path, json=body)
        if r.status_code != 200:
            try:
                err = r.json()["error"]
                raise ServiceError(r.status_code, err["code"], err["message"])
            except (ValueError, KeyError):
                raise ServiceError(r.status_code, "http_error", r.text[:200]) from None
        data: dict[str, Any] = r.json()
        return data

    def entailment(self, image: ImageLike, hypothesis: str) -> dict[str, Any]:
        """POST /v1/entailment: the ``label`` for ``hypothesis`` and each label's probability (``scores``)."""
        return self._post("/v1/entailment", {"image": _encode(image), "hypothesis": hypothesis})

    def grounding(self, image: ImageLike, expression: str) -> dict[str, Any]:
        """POST /v1/grounding: the ``box`` [x1, y1, x2, y2] in image pixels (or None) and its ``score``."""
        return self._post("/v1/grounding", {"image": _encode(image), "expression": expression})

    def vqa(self, image: ImageLike, question: str, top_k: int = 5) -> dict[str, Any]:
        """POST /v1/vqa: the best ``answer``, its ``score`` and the ``top_k`` ranked answers."""
        return self._post("/v1/vqa", {"image": _encode(image), "question": question, "top_k": top_k})

    def matching(self, image: ImageLike, texts: list[str]) -> dict[str, Any]:
        """POST /v1/matching: a match probability per text (``scores``) and the index of the ``best`` one."""
        return self._post("/v1/matching", {"image": _encode(image), "texts": texts})

    def models(self) -> list[dict[str, Any]]:
        """GET /v1/models: one dict per served model; an error status raises ``httpx.HTTPStatusError``."""
        r = self.http.get("/v1/models")
        r.raise_for_status()
        data: list[dict[str, Any]] = r.json()
        return data

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200 (model loaded, not draining); False if unreachable."""
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False
