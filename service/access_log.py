"""One structured log line per request, and W3C trace context passed through.

`AccessLog` writes, for every HTTP request, one JSON object on the ``cmal.access`` logger: time,
request id, method, path, task, status, error code, latency, and for task requests the batch size
and queue wait. An incoming ``traceparent`` header (W3C Trace Context) is validated, logged as
``trace_id`` and echoed in the response, so a request can be followed across services.
`JsonFormatter` renders every log record (the app's, the access log's and uvicorn's) the same way.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.middleware import TASK_PATHS

log = logging.getLogger("cmal.access")
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
# fields a handler may leave in the request's state for its access-log line
STATE_FIELDS = ("error_code", "batch_rows", "queue_wait_ms")


class AccessLog:
    """Log each request once it has been answered (or the client has gone); pass ``traceparent``."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, noting its status, then write its line."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"traceparent", b"").decode("latin-1").strip().lower()
        trace = TRACEPARENT.match(given)
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if trace:
                    message = {
                        **message,
                        "headers": [*message.get("headers", []), (b"traceparent", given.encode())],
                    }
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            state = scope.get("state", {})
            path = scope["path"]
            entry: dict[str, Any] = {
                "request_id": state.get("request_id"),
                "method": scope["method"],
                "path": path,
                "task": path.removeprefix("/v1/") if path in TASK_PATHS else None,
                "status": status or 499,  # no answer was sent: the client left (nginx's 499)
                "latency_ms": round(1000 * (time.perf_counter() - start), 2),
            }
            entry.update({k: state[k] for k in STATE_FIELDS if k in state})
            if trace:
                entry["trace_id"] = trace.group(1)
            log.info("request", extra={"access": entry})


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object: time, level, logger, message, and an access entry's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(getattr(record, "access", {}))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str) -> None:
    """One JSON handler on the root logger for the app, the access log and uvicorn (whose own
    handlers are removed so that its lines come out in the same format)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
