"""A small Python client for the CMAL service's four task endpoints.

    from cmal.client import Client
    with Client("http://127.0.0.1:8000") as c:
        c.vqa("photo.png", "how many circles are there?")   # {"answer": "2", "score": ..., "top_k": [...]}

Images may be a path, raw bytes or a PIL image. Every failure raises `ServiceError` (the status, the
service's error code and message; status 0 when the service could not be reached). `AsyncClient`
offers the same calls to asyncio code. Needs httpx: ``pip install "cmal-serving[client]"``.
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


def _answer(r: httpx.Response) -> Any:
    """The JSON of a 200 answer; any other answer raises `ServiceError` with the service's code."""
    if r.status_code == 200:
        return r.json()
    try:
        err = r.json()["error"]
        raise ServiceError(r.status_code, err["code"], err["message"])
    except (ValueError, KeyError, TypeError):
        raise ServiceError(r.status_code, "http_error", r.text[:200]) from None


def _unreachable(url: str, e: httpx.HTTPError) -> ServiceError:
    """No HTTP answer at all (refused, reset, timed out): status 0, code ``unreachable``."""
    return ServiceError(0, "unreachable", f"{url}: {type(e).__name__}: {e}")


def _body(image: ImageLike, **fields: Any) -> dict[str, Any]:
    """A task request's JSON body: the encoded image and the task's fields."""
    return {"image": _encode(image), **fields}


class Client:
    """A synchronous client of one CMAL service at ``url``; an ``api_key`` is sent as a Bearer token.

    Every failure raises `ServiceError`: an error answer with its status and code, or status 0
    (code ``unreachable``) when no answer came.
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout: float = 30.0):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url
        self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's HTTP connections."""
        self.http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            r = self.http.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise _unreachable(self.url, e) from None
        return _answer(r)

    def entailment(self, image: ImageLike, hypothesis: str) -> dict[str, Any]:
        """POST /v1/entailment: the ``label`` for ``hypothesis`` and each label's probability (``scores``)."""
        result: dict[str, Any] = self._call("POST", "/v1/entailment", _body(image, hypothesis=hypothesis))
        return result

    def grounding(self, image: ImageLike, expression: str) -> dict[str, Any]:
        """POST /v1/grounding: the ``box`` [x1, y1, x2, y2] in image pixels (or None) and its ``score``."""
        result: dict[str, Any] = self._call("POST", "/v1/grounding", _body(image, expression=expression))
        return result

    def vqa(self, image: ImageLike, question: str, top_k: int = 5) -> dict[str, Any]:
        """POST /v1/vqa: the best ``answer``, its ``score`` and the ``top_k`` ranked answers."""
        result: dict[str, Any] = self._call("POST", "/v1/vqa", _body(image, question=question, top_k=top_k))
        return result

    def matching(self, image: ImageLike, texts: list[str]) -> dict[str, Any]:
        """POST /v1/matching: a match probability per text (``scores``) and the index of the ``best`` one."""
        result: dict[str, Any] = self._call("POST", "/v1/matching", _body(image, texts=list(texts)))
        return result

    def models(self) -> list[dict[str, Any]]:
        """GET /v1/models: one dict per served model."""
        result: list[dict[str, Any]] = self._call("GET", "/v1/models")
        return result

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200 (model loaded, not draining); False if unreachable."""
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False


class AsyncClient:
    """The same calls as `Client` for asyncio code (``await c.vqa(...)``), sharing one connection
    pool across concurrent requests; use ``async with AsyncClient(url) as c``."""

    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout: float = 30.0):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client's HTTP connections."""
        await self.http.aclose()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            r = await self.http.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise _unreachable(self.url, e) from None
        return _answer(r)

    async def entailment(self, image: ImageLike, hypothesis: str) -> dict[str, Any]:
        """POST /v1/entailment (see `Client.entailment`)."""
        result: dict[str, Any] = await self._call(
            "POST", "/v1/entailment", _body(image, hypothesis=hypothesis)
        )
        return result

    async def grounding(self, image: ImageLike, expression: str) -> dict[str, Any]:
        """POST /v1/grounding (see `Client.grounding`)."""
        result: dict[str, Any] = await self._call(
            "POST", "/v1/grounding", _body(image, expression=expression)
        )
        return result

    async def vqa(self, image: ImageLike, question: str, top_k: int = 5) -> dict[str, Any]:
        """POST /v1/vqa (see `Client.vqa`)."""
        result: dict[str, Any] = await self._call(
            "POST", "/v1/vqa", _body(image, question=question, top_k=top_k)
        )
        return result

    async def matching(self, image: ImageLike, texts: list[str]) -> dict[str, Any]:
        """POST /v1/matching (see `Client.matching`)."""
        result: dict[str, Any] = await self._call("POST", "/v1/matching", _body(image, texts=list(texts)))
        return result

    async def models(self) -> list[dict[str, Any]]:
        """GET /v1/models (see `Client.models`)."""
        result: list[dict[str, Any]] = await self._call("GET", "/v1/models")
        return result

    async def ready(self) -> bool:
        """Whether ``/readyz`` answers 200; False if unreachable."""
        try:
            return (await self.http.get("/readyz")).status_code == 200
        except httpx.HTTPError:
            return False
