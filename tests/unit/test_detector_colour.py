"""The detector's colour path reads colour without outline, and its grey backbone reads outline
without colour: what lets a detector name colour–shape pairs it never saw."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from cmal.detector import Detector, DetectorConfig

BACKGROUND = (230, 225, 215)
SPLIT = DetectorConfig(colour_channels=16, grey_backbone=True)


def _batch(image: Image.Image) -> torch.Tensor:
    """An RGB image as a (1, 3, H, W) batch of [0, 1] pixels, the detector's input."""
    return torch.from_numpy(np.asarray(image, np.float32) / 255.0).permute(2, 0, 1)[None]


def _image(shape: str, colour: tuple[int, int, int]) -> torch.Tensor:
    """A flat background with one small filled shape centred near (66, 66), as a (1, 3, 128, 128)
    batch; the 12-pixel window the colour path pools at its centre cell holds shape and background."""
    image = Image.new("RGB", (128, 128), BACKGROUND)
    draw = ImageDraw.Draw(image)
    box = (62, 62, 70, 70)
    if shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "circle":
        draw.ellipse(box, fill=colour)
    else:
        draw.polygon([(66, 62), (70, 70), (62, 70)], fill=colour)
    return _batch(image)


@pytest.fixture
def model() -> Detector:
    torch.manual_seed(0)
    return Detector(SPLIT).eval()


def test_colour_path_gives_the_same_colour_whatever_the_outline(model: Detector) -> None:
    red = (200, 40, 40)
    with torch.no_grad():
        maps = {shape: model.dense(_image(shape, red)) for shape in ("square", "circle", "triangle")}
    centre = (slice(None), slice(None), 16, 16)  # the cell of the object's centre
    colour = {shape: m.features[:, -SPLIT.colour_channels :][centre] for shape, m in maps.items()}
    attributes = {shape: m.attribute_logits[centre] for shape, m in maps.items()}
    for shape in ("circle", "triangle"):
        assert torch.equal(colour[shape], colour["square"]), shape
        assert torch.equal(attributes[shape], attributes["square"]), shape
    # the shape part of the feature does see the outline
    shape_part = {s: m.features[:, : -SPLIT.colour_channels][centre] for s, m in maps.items()}
    assert not torch.equal(shape_part["circle"], shape_part["square"])


def test_grey_backbone_gives_the_same_shape_reading_for_colours_of_one_grey(model: Detector) -> None:
    first, second = (200, 40, 60), (40, 200, 60)  # different colours, the same channel mean
    with torch.no_grad():
        a, b = model.dense(_image("circle", first)), model.dense(_image("circle", second))
    assert torch.equal(a.tag_logits, b.tag_logits)
    assert torch.equal(a.heat, b.heat)  # finding the object does not depend on its colour either
    assert not torch.equal(a.attribute_logits, b.attribute_logits)  # the colour path tells them apart


def test_a_colour_path_as_wide_as_the_feature_leaves_nothing_for_shape() -> None:
    with pytest.raises(ValueError, match="colour_channels"):
        Detector(DetectorConfig(feature_dim=16, colour_channels=16))


def _round(colour: tuple[int, int, int], hole: int) -> torch.Tensor:
    """A flat background with a disc of radius 13 centred at (66, 66) in ``colour``, a hole of
    radius ``hole`` in its middle (0: none), as a (1, 3, 128, 128) batch."""
    image = Image.new("RGB", (128, 128), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.ellipse((53, 53, 79, 79), fill=colour)
    if hole:
        draw.ellipse((66 - hole, 66 - hole, 66 + hole, 66 + hole), fill=BACKGROUND)
    return _batch(image)


def test_a_wider_colour_window_reaches_a_ring_past_its_hole() -> None:
    """At the centre cell (pixels 64-67) a 3-cell window sees pixels 60-71, all in a hole of radius
    9: only the background. A 5-cell window (56-75) reaches the ring, and then the colour path
    reads it as it reads a filled disc of that colour (both windows hold the colour and, in their
    corners, the background)."""
    torch.manual_seed(0)
    narrow = Detector(SPLIT).eval()
    wide = Detector(replace(SPLIT, colour_window=5)).eval()
    wide.load_state_dict(narrow.state_dict())  # the window has no weights: the same network
    red = (200, 40, 40)
    ring, disc, empty = _round(red, 9), _round(red, 0), _on(BACKGROUND, None)

    def colour(model: Detector, image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.dense(image).features[0, -SPLIT.colour_channels :, 16, 16]

    assert torch.equal(colour(narrow, ring), colour(narrow, empty))  # the hole alone
    assert not torch.equal(colour(narrow, disc), colour(narrow, empty))
    assert torch.equal(colour(wide, ring), colour(wide, disc))  # the ring's colour
    assert not torch.equal(colour(wide, ring), colour(wide, empty))
    with pytest.raises(ValueError, match="colour_window"):
        DetectorConfig(colour_window=4)  # a window centred on its cell has an odd side


def _on(background: tuple[int, int, int], colour: tuple[int, int, int] | None) -> torch.Tensor:
    """A flat ``background`` with a filled square in ``colour`` (None: nothing), (1, 3, 128, 128)."""
    image = Image.new("RGB", (128, 128), background)
    if colour is not None:
        ImageDraw.Draw(image).rectangle((50, 50, 78, 78), fill=colour)
    return _batch(image)


def test_grey_backbone_cannot_see_an_object_of_the_backgrounds_grey_and_contrast_can() -> None:
    grey_bg, same_grey = (150, 150, 150), (200, 150, 100)  # channel means equal: one grey
    torch.manual_seed(0)
    grey = Detector(SPLIT).eval()
    torch.manual_seed(0)
    contrast = Detector(DetectorConfig(colour_channels=16, contrast_backbone=True)).eval()
    with torch.no_grad():
        change = {}  # how much the heatmap moves when the object is drawn
        for name, model in (("grey", grey), ("contrast", contrast)):
            empty, shown = model.dense(_on(grey_bg, None)), model.dense(_on(grey_bg, same_grey))
            change[name] = float((shown.heat - empty.heat).abs().max())
    assert change["grey"] < 1e-5  # the grey CNN's input is the empty image's, but for rounding
    assert change["contrast"] > 1e-3  # an untrained heat head: small, but far above rounding


def test_contrast_backbone_reads_two_colours_equally_far_from_the_background_alike() -> None:
    torch.manual_seed(0)
    model = Detector(DetectorConfig(colour_channels=16, contrast_backbone=True)).eval()
    background = (120, 120, 120)
    with torch.no_grad():  # +80 in red and -80 in green: the same distance from the background
        red, green = (
            model.dense(_on(background, (200, 120, 120))),
            model.dense(_on(background, (120, 40, 120))),
        )
    assert torch.allclose(red.heat, green.heat, atol=1e-5)
    assert torch.allclose(red.tag_logits, green.tag_logits, atol=1e-5)
    assert not torch.allclose(red.attribute_logits, green.attribute_logits)  # the colour path still tells


def test_grey_and_contrast_backbones_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="one of grey_backbone and contrast_backbone"):
        DetectorConfig(grey_backbone=True, contrast_backbone=True)
