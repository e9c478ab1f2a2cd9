"""The published OpenAPI document: every reference resolves, every task operation documents its
request (JSON and multipart) and every status it can answer with, in the one error envelope."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from PIL import Image

from cmal.tasks import ROUTES
from service.app import create_app
from service.schemas import EXAMPLE_IMAGE
from service.settings import Settings

STATUSES = ("200", "401", "413", "415", "422", "429", "503", "504")


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert part in node, f"unresolvable {ref}"
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_every_reference_resolves_and_every_status_is_documented(tmp_path: Path) -> None:
    doc = create_app(Settings(model_dir=tmp_path)).openapi()
    found = refs(doc)
    assert found and all(resolve(doc, r) for r in found)
    error_ref = "#/components/schemas/ErrorBody"
    for route in ROUTES:
        op = doc["paths"][f"/v1/{route}"]["post"]
        content = op["requestBody"]["content"]
        assert resolve(doc, content["application/json"]["schema"]["$ref"])["type"] == "object"
        form = content["multipart/form-data"]["schema"]
        assert form["properties"]["image"] == {
            "type": "string",
            "format": "binary",
            "description": "the image file",
        }
        for status in STATUSES:
            assert status in op["responses"], (route, status)
            if status != "200":
                schema = op["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": error_ref}, (route, status)
        assert "Retry-After" in op["responses"]["429"]["headers"]
    # multipart fields keep their JSON types: a list of texts, an integer top_k
    matching = doc["paths"]["/v1/matching"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert matching["schema"]["properties"]["texts"]["type"] == "array"
    assert matching["schema"]["properties"]["texts"]["maxItems"] == 32
    vqa = doc["paths"]["/v1/vqa"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert vqa["schema"]["properties"]["top_k"]["type"] == "integer"
    assert "securitySchemes" not in doc["components"]  # no key configured: no auth to document


def test_the_bearer_scheme_is_published_when_a_key_is_configured(tmp_path: Path) -> None:
    doc = create_app(Settings(model_dir=tmp_path, api_key="secret", max_text_chars=120)).openapi()
    assert doc["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in doc["paths"].items():
        for op in operations.values():
            assert (op.get("security") == [{"bearer": []}]) == path.startswith("/v1/"), path
    question = doc["components"]["schemas"]["VqaRequest"]["properties"]["question"]
    assert question["maxLength"] == 120  # the configured limit, not a constant


def test_the_example_image_is_a_real_image() -> None:
    image = Image.open(io.BytesIO(base64.b64decode(EXAMPLE_IMAGE)))
    assert image.format == "PNG" and min(image.size) >= Settings().min_image_side
