"""What the model sees is what a viewer shows: EXIF orientation, transparency, a minimum size."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from cmal.data.formats import load
from cmal.data.generate import generate_split
from cmal.imaging import iou
from service.app import create_app
from service.images import ALPHA_BACKGROUND, ImageError, open_image
from service.settings import Settings

ORIENTATION = 0x0112  # the EXIF tag


def encoded(image: Image.Image, fmt: str = "PNG", **options: Any) -> str:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return base64.b64encode(buf.getvalue()).decode()


def ask(settings: Settings, requests: list[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    """Start the app in-process and send ``requests`` (path, JSON body) one after another."""

    async def go() -> list[httpx.Response]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return [await client.post(path, json=body) for path, body in requests]

    return asyncio.run(go())


def test_exif_orientation_is_applied_and_boxes_come_back_in_the_displayed_frame(
    demo_exported: Path, tmp_path: Path
) -> None:
    generate_split(tmp_path, seed=5151, num_images=12, split="test", progress=False)
    records = [r for r in load(tmp_path / "rec.jsonl", "rec") if r.box is not None]  # each names an object
    pictures = {r.image: Image.open(r.image).convert("RGB") for r in records}
    # the picture as a camera stores it: pixels turned a quarter left, EXIF orientation 6
    # ("turn 90° clockwise to display") restoring the upright view
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    stored = {
        path: encoded(p.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif)
        for path, p in pictures.items()
    }
    requests = []
    for r in records:
        requests.append(("/v1/grounding", {"image": encoded(pictures[r.image]), "expression": r.expression}))
        requests.append(("/v1/grounding", {"image": stored[r.image], "expression": r.expression}))
    answers = [a.json() for a in ask(Settings(model_dir=demo_exported), requests)]

    def overlap(box: list[float], truth: tuple[float, ...]) -> float:
        return float(iou(np.array([box], np.float32), np.array([truth], np.float32))[0, 0])

    hits = []
    for r, upright, rotated in zip(records, answers[0::2], answers[1::2], strict=True):
        w = pictures[r.image].size[0]
        assert r.box is not None
        x1, y1, x2, y2 = r.box
        turned = (y1, w - x2, y2, w - x1)  # the true box in the stored (unrotated) frame
        found = upright["box"] is not None and overlap(upright["box"], r.box) >= 0.5
        if not found or overlap(list(turned), r.box) >= 0.5:
            continue  # the model misses it upright, or turning the picture barely moves the box
        hits.append(rotated["box"] is not None and overlap(rotated["box"], r.box) >= 0.5)
    assert len(hits) >= 5  # enough informative examples
    # read in the stored frame, (nearly) none would be right; JPEG may cost the odd one
    assert sum(hits) >= 0.9 * len(hits), f"{sum(hits)} of {len(hits)} boxes in the displayed frame"


def test_transparent_pixels_are_flattened_onto_the_documented_background(tiny_exported: Path) -> None:
    scene = Image.new("RGB", (96, 96), (210, 210, 210))
    scene.paste((30, 160, 40), (20, 30, 50, 60))
    rgba = scene.convert("RGBA")
    alpha = np.full((96, 96), 0, np.uint8)
    alpha[20:70, 10:80] = 255
    alpha[40:50, 40:90] = 128  # half transparent too
    rgba.putalpha(Image.fromarray(alpha))
    flat = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
    flat.alpha_composite(rgba)
    question = "what colour is the square?"
    answers = ask(
        Settings(model_dir=tiny_exported),
        [
            ("/v1/vqa", {"image": encoded(rgba), "question": question}),
            ("/v1/vqa", {"image": encoded(flat.convert("RGB")), "question": question}),
        ],
    )
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["top_k"] == answers[1].json()["top_k"]  # the same pixels reached the model
    decoded = open_image(base64.b64decode(encoded(rgba)), 2**20, 10**6)
    assert decoded.mode == "RGB" and decoded.getpixel((0, 0)) == ALPHA_BACKGROUND


def test_an_image_below_the_minimum_size_gets_a_clear_422(tiny_exported: Path) -> None:
    settings = Settings(model_dir=tiny_exported)
    small = Image.new("RGB", (settings.min_image_side - 1, 64), (200, 200, 200))
    (answer,) = ask(settings, [("/v1/vqa", {"image": encoded(small), "question": "how many?"})])
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"]["code"] == "invalid_image" and "minimum is 16" in body["error"]["message"]
    with pytest.raises(ImageError, match="minimum"):
        open_image(base64.b64decode(encoded(Image.new("RGB", (1, 1)))), 2**20, 10**6, min_side=16)
