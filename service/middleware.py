"""Pure-ASGI middleware of the service: request ids, the body-size limit, and admission control.

Pure ASGI rather than ``BaseHTTPMiddleware``, which hides client disconnects from the endpoints
and costs a task per request.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics

if TYPE_CHECKING:
    from service.state import ServiceState

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
TASK_PATHS = frozenset(f"/v1/{task}" for task in metrics.TASKS)
# the 429 of a full queue, wherever it is noticed (here or in the batcher)
QUEUE_FULL = ("queue_full", "too many requests queued; retry shortly")


async def send_error(
    scope: Scope, send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    """Answer in the service's one error envelope, counted like every task endpoint's answer."""
    metrics.count_failure(scope["path"], status)
    state = scope.setdefault("state", {})
    state["error_code"] = code  # for the request's access-log line
    rid = state.get("request_id")
    body = json.dumps({"error": {"code": code, "message": message}, "request_id": rid}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class RequestId:
    """Give every request an id (the client's ``X-Request-ID`` if sane) and echo it in the response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry: store the id in ``scope["state"]["request_id"]`` and send it as ``X-Request-ID``."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = given if REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)


class Admission:
    """Turn a task request away with 429 while the batcher's queue is full, before anything else
    (routing, body, validation, latency histograms) is spent on it.

    Under overload most requests are rejected; if a rejection costs a noticeable fraction of a
    served request, rejecting eats the CPU that serving needs and the service can stay overloaded
    after the load has fallen back (a metastable failure). The batcher still refuses a job when
    the queue is full (`QueueFull`, also 429): this is only the cheap early check.
    """

    def __init__(self, app: ASGIApp, state: ServiceState):
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry: 429 for a task endpoint while the queue is full, else pass the request on."""
        batcher = self.state.batcher
        if (
            scope["type"] == "http"
            and scope["path"] in TASK_PATHS
            and batcher is not None
            and batcher.depth >= batcher.max_queue
        ):
            await send_error(scope, send, 429, *QUEUE_FULL, {"Retry-After": "1"})
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for request bodies over the limit (Content-Length or counted while streaming)."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry: 413 when Content-Length or the streamed body exceeds ``limit`` bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._reject(scope, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._reject(scope, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        await send_error(scope, send, 413, "body_too_large", f"request body exceeds {self.limit} bytes")


class _TooLarge(Exception):
    pass
