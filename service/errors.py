"""One JSON error shape for every failure: ``{"error": {"code", "message"}, "request_id"}``."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

# a bug's answer: the details go to the log under the request id, never to the client
INTERNAL_ERROR = "internal error; the service log has the details under this request id"


class ApiError(Exception):
    """A failure answered in the error envelope: HTTP ``status``, ``code``, ``message``, extra ``headers``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The error envelope as a JSON response, carrying the request id (also as ``X-Request-ID``)."""
    rid = getattr(request.state, "request_id", None)
    request.state.error_code = code  # for the request's access-log line
    body = {"error": {"code": code, "message": message}, "request_id": rid}
    out = JSONResponse(body, status_code=status, headers=headers or {})
    if rid:
        out.headers["X-Request-ID"] = rid
    return out
