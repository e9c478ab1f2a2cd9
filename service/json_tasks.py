"""The task endpoints' JSON requests, served without FastAPI's per-request machinery.

A task request spends most of the service's own time in the framework, not in work it needs:
route matching over every route, dependency solving, and validating the answer against its
response model once more (`cmal bench` measures the service against its engine; the README's
"Performance" section has the figures). `JsonTasks` is a pure-ASGI layer that answers
``POST /v1/<task>`` with a JSON body by calling the very endpoint functions FastAPI routes to
(`service.routers.tasks`), with the same bearer-token check, error envelope and counters. Every
other request (multipart uploads, other content types, other paths and methods) goes on to
FastAPI unchanged, and the OpenAPI document still comes from the FastAPI routes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import INTERNAL_ERROR, ApiError
from service.middleware import send_error
from service.routers import tasks
from service.security import check_api_key

if TYPE_CHECKING:
    from service.state import ServiceState

log = logging.getLogger("cmal.service")
JSON_TYPES = tuple(media.encode() for media in tasks.JSON_MEDIA_TYPES)  # the same as the FastAPI route
Handler = Callable[[Request, "ServiceState"], Awaitable[dict[str, Any]]]
# the task routes' own endpoint functions, by path: the FastAPI router is the one list of them
HANDLERS: dict[str, Handler] = {
    route.path: route.endpoint for route in tasks.router.routes if isinstance(route, APIRoute)
}


def content_type(scope: Scope) -> bytes:
    """The request's media type, lower-case, without parameters (``b""`` when absent)."""
    for key, value in scope.get("headers") or ():
        if key == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media
    return b""


class JsonTasks:
    """Answer JSON task requests directly; pass everything else on to ``app`` (FastAPI)."""

    def __init__(self, app: ASGIApp, state: ServiceState):
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry: a JSON ``POST /v1/<task>`` is served here, anything else by ``app``."""
        handler = HANDLERS.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST" or content_type(scope) not in JSON_TYPES:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            check_api_key(request, self.state)
            payload = await handler(request, self.state)
            body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        except ApiError as e:
            await send_error(scope, send, e.status, e.code, e.message, e.headers)
            return
        except Exception:
            rid = scope.get("state", {}).get("request_id")
            log.exception("unhandled error in request %s", rid)
            await send_error(scope, send, 500, "internal_error", INTERNAL_ERROR)
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
