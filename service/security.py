"""Optional bearer-token auth (``CMAL_API_KEY``); health endpoints stay open."""

from __future__ import annotations

import hmac

from fastapi import Request

from service.errors import ApiError
from service.state import ServiceState, State


def check_api_key(request: Request, state: ServiceState) -> None:
    """401 unless the request carries the configured bearer token (no key configured: open)."""
    key = state.settings.api_key
    if not key:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


async def require_api_key(request: Request, state: State) -> None:
    """The FastAPI dependency form of `check_api_key` (async: no thread hop)."""
    check_api_key(request, state)
