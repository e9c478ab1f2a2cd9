"""The service's published contract: a valid OpenAPI document that says what the code does.

The task endpoints read their bodies themselves (JSON or multipart), so FastAPI cannot infer
them: this module documents each one — the request model under ``components/schemas`` for JSON,
the same fields as a multipart form with the image as a file, every error status with the error
envelope, and the bearer scheme when ``CMAL_API_KEY`` is set.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from service.schemas import TEXT_PATTERN, ErrorBody

# every failure a task endpoint can answer with, and when
TASK_ERRORS: dict[int, str] = {
    400: "the body is not valid JSON",
    401: "the bearer token is missing or wrong (only when CMAL_API_KEY is set)",
    413: "the body, the image or its pixel count is over the limit",
    415: "the content type is neither application/json nor multipart/form-data",
    422: "a field is missing, mistyped or out of range, the image cannot be decoded or is too small",
    429: "the queue (or, with CMAL_BACKEND=triton, Triton's) is full; retry after the Retry-After seconds",
    503: "the model is not loaded yet, or the Triton server cannot be reached",
    504: "no result within the request deadline",
    500: "an internal error; the body gives the request id the service log files it under",
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}


def error_responses(statuses: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses=`` entries: each status with its description and the error envelope."""
    out: dict[int | str, dict[str, Any]] = {}
    for status, description in statuses.items():
        entry: dict[str, Any] = {"model": ErrorBody, "description": description}
        if status in (429, 503):
            entry["headers"] = RETRY_AFTER
        out[status] = entry
    return out


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a task endpoint: its body as JSON (the model) or as a multipart form
    (the same fields, the image as a file upload)."""
    schema = model.model_json_schema()
    form = {k: v for k, v in schema["properties"].items() if k != "image"}
    form["image"] = {"type": "string", "format": "binary", "description": "the image file"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": schema["required"],
                        "properties": form,
                        "additionalProperties": False,
                    },
                    "encoding": {
                        "image": {"contentType": "image/png, image/jpeg, image/webp, image/bmp, image/gif"}
                    },
                },
            },
        }
    }


def text_rules(schema: dict[str, Any], max_chars: int, max_texts: int) -> None:
    """Write the service's text checks into a request schema: each text holds a non-space
    character and at most ``max_chars`` characters; a list of texts has at most ``max_texts``."""
    rule = {"minLength": 1, "maxLength": max_chars, "pattern": TEXT_PATTERN}
    for name, prop in schema["properties"].items():
        if name == "image":
            continue
        if prop.get("type") == "string":
            prop.update(rule)
        elif prop.get("type") == "array" and prop.get("items", {}).get("type") == "string":
            prop["items"].update(rule)
            prop["maxItems"] = max_texts


def install(
    app: FastAPI, request_models: list[type[BaseModel]], bearer: bool, max_chars: int, max_texts: int
) -> None:
    """Make ``app.openapi()`` publish ``request_models`` under ``components/schemas`` with the
    configured text limits and, when ``bearer``, the bearer scheme on every ``/v1`` operation."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in request_models:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            text_rules(schema, max_chars, max_texts)
            schemas[model.__name__] = schema
        for path in doc["paths"].values():  # the multipart forms carry the same rules
            form = path.get("post", {}).get("requestBody", {}).get("content", {}).get("multipart/form-data")
            if form:
                text_rules(form["schema"], max_chars, max_texts)
        if bearer:
            doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            for path, operations in doc["paths"].items():
                if path.startswith("/v1/"):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


REDOC_JS = Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js"
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"  # the bundle's one remote fetch
FAVICON = "/static-offline-docs/favicon.png"  # fastapi_offline's own mount (the default is remote)
EMPTY_IMAGE = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


@cache
def offline_redoc_js() -> bytes:
    """ReDoc's bundle with its only remote resource, the footer logo, replaced by an empty inline
    image: the page then fetches nothing outside the service."""
    return REDOC_JS.read_text(encoding="utf-8").replace(REDOC_LOGO, EMPTY_IMAGE).encode()


def install_redoc(app: FastAPI, path: str = "/redoc") -> None:
    """ReDoc at ``path``, its script served by the service (``fastapi_offline``'s own ReDoc page
    still loads a logo from a CDN)."""
    script = f"{path}/redoc.standalone.js"

    @app.get(path, include_in_schema=False)
    async def redoc_page() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=script,
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        )

    @app.get(script, include_in_schema=False)
    async def redoc_script() -> Response:
        return Response(offline_redoc_js(), media_type="text/javascript")
