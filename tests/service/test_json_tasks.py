"""JSON task requests take the pure-ASGI path (`service.json_tasks`); multipart ones FastAPI's route.
Both must give the same answers in the same shapes, with the same errors and counters."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from service import json_tasks
from service.app import create_app
from service.middleware import TASK_PATHS
from service.schemas import EntailmentResponse, GroundingResponse, MatchingResponse, VqaResponse
from service.settings import Settings
from tests.service.test_api import change, png, sample

CASES: list[tuple[str, dict[str, Any], type[BaseModel]]] = [
    ("entailment", {"hypothesis": "there is a red box."}, EntailmentResponse),
    ("grounding", {"expression": "the red box"}, GroundingResponse),
    ("vqa", {"question": "what colour is the box?", "top_k": "3"}, VqaResponse),
    ("matching", {"texts": ["a red box", "a blue circle"]}, MatchingResponse),
]


def as_json(fields: dict[str, Any], image: bytes) -> dict[str, Any]:
    """The JSON body of a request whose multipart form has ``fields`` (top_k as a number)."""
    body = {k: int(v) if k == "top_k" else v for k, v in fields.items()}
    return {**body, "image": base64.b64encode(image).decode()}


def serve(settings: Settings, fn):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await fn(client)

    return asyncio.run(go())


def test_every_task_endpoint_has_a_json_path() -> None:
    assert set(json_tasks.HANDLERS) == TASK_PATHS == {f"/v1/{task}" for task, _, _ in CASES}


@pytest.mark.parametrize(("task", "fields", "model"), CASES, ids=[c[0] for c in CASES])
def test_json_and_multipart_give_the_same_answer(
    tiny_exported: Path,
    monkeypatch: pytest.MonkeyPatch,
    task: str,
    fields: dict[str, Any],
    model: type[BaseModel],
) -> None:
    handled: list[str] = []
    original = json_tasks.HANDLERS[f"/v1/{task}"]

    async def noted(request, state):  # type: ignore[no-untyped-def]
        handled.append(request.url.path)
        return await original(request, state)

    monkeypatch.setitem(json_tasks.HANDLERS, f"/v1/{task}", noted)
    image = png()

    async def go(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        by_json = await client.post(f"/v1/{task}", json=as_json(fields, image))
        by_form = await client.post(
            f"/v1/{task}", data=fields, files={"image": ("box.png", image, "image/png")}
        )
        return by_json, by_form

    by_json, by_form = serve(Settings(model_dir=tiny_exported, cache_size=0), go)
    assert handled == [f"/v1/{task}"], "the JSON request, and only it, takes the pure-ASGI path"
    assert by_json.status_code == by_form.status_code == 200, (by_json.text, by_form.text)
    assert by_json.headers["content-type"] == "application/json"
    assert by_json.headers["x-request-id"] == by_json.json()["request_id"]
    answer, framework = by_json.json(), by_form.json()
    # the framework's answer went through the response model; the direct one must match it
    assert model.model_validate(answer).model_dump(mode="json") == answer
    assert answer.keys() == framework.keys()
    del answer["request_id"], framework["request_id"]
    assert answer == framework


def test_errors_and_counters_on_the_json_path(tiny_exported: Path) -> None:
    settings = Settings(model_dir=tiny_exported, api_key="s3cret")
    good = as_json({"question": "q?"}, png())
    auth = {"Authorization": "Bearer s3cret"}

    async def go(client: httpx.AsyncClient) -> dict[str, httpx.Response]:
        out = {"before": await client.get("/metrics")}
        out |= {
            "no key": await client.post("/v1/vqa", json=good),
            "bad json": await client.post(
                "/v1/vqa", content=b"{", headers={**auth, "content-type": "application/json"}
            ),
            "invalid": await client.post("/v1/vqa", json={**good, "top_k": 0}, headers=auth),
            "blank": await client.post("/v1/vqa", json={**good, "question": " "}, headers=auth),
            "charset": await client.post(
                "/v1/vqa",
                content=httpx.Request("POST", "/", json=good).content,
                headers={**auth, "content-type": "application/json; charset=utf-8"},
            ),
        }
        out["metrics"] = await client.get("/metrics")
        return out

    r = serve(settings, go)
    expected = {"no key": (401, "unauthorized"), "bad json": (400, "invalid_json"),
                "invalid": (422, "invalid_request"), "blank": (422, "invalid_text")}  # fmt: skip
    for name, (status, code) in expected.items():
        assert r[name].status_code == status, (name, r[name].text)
        body = r[name].json()
        assert body["error"]["code"] == code and body["request_id"] == r[name].headers["x-request-id"]
    assert r["no key"].headers["www-authenticate"] == "Bearer"
    assert r["charset"].status_code == 200
    before, after = r["before"].text, r["metrics"].text  # the counters are process-wide: deltas
    assert change(before, after, 'cmal_requests_total{task="vqa",outcome="ok"}') == 1
    assert change(before, after, 'cmal_requests_total{task="vqa",outcome="bad_request"}') == 4
    # the HTTP metrics, which the dashboard's latency panels read, still see these requests
    answered = 'http_requests_total{handler="/v1/vqa",method="POST",status="2xx"}'
    assert sample(after, answered) - (sample(before, answered) if answered in before else 0) == 1
