"""The optimiser's parameter groups (`cmal.train.trainer.param_groups`): weight decay on matrices
only, and the adapted detector's learning rate scaled."""

from __future__ import annotations

from torch import nn

from cmal.train.trainer import TrainSettings, param_groups


def modules() -> nn.ModuleDict:
    return nn.ModuleDict({"cmal": nn.Linear(3, 2), "detector": nn.Conv2d(1, 2, 3)})


def test_the_detector_gets_its_own_learning_rate_scale() -> None:
    model = modules()
    groups = param_groups(model, TrainSettings(detector_lr_scale=4.0, weight_decay=0.1))
    by = {(g["lr_scale"], g["weight_decay"]): g["params"] for g in groups}
    assert by[(1.0, 0.1)] == [model["cmal"].weight] and by[(1.0, 0.0)] == [model["cmal"].bias]
    assert by[(4.0, 0.1)] == [model["detector"].weight] and by[(4.0, 0.0)] == [model["detector"].bias]


def test_without_a_scale_two_groups_as_before() -> None:
    model = modules()
    model["detector"].requires_grad_(False)  # frozen parameters are not optimised
    groups = param_groups(model, TrainSettings(weight_decay=0.1))
    assert [(g["lr_scale"], g["weight_decay"], len(g["params"])) for g in groups] == [
        (1.0, 0.1, 1),
        (1.0, 0.0, 1),
    ]
