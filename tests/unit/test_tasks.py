"""The task registry: one list of tasks, one scoring rule per task, and nobody else's lists."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cmal.calibrate import choose_threshold
from cmal.inference import FUSION_OUTPUTS
from cmal.tasks import ROUTES, TASK_IDS, TASKS, VE_LABELS, Gold, RegionRow, declines, get_task, top_region

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cmal", "export", "service")
# the files a task's own code lives in (CONTRIBUTING.md, "Adding a task"); any other module that
# names several tasks keeps a list the registry should own
TASK_CODE = {
    "cmal/tasks.py",  # the registry
    "cmal/data/formats.py",  # each task's record format
    "cmal/data/generate.py",  # the Shapes generator writes each task's file
    "cmal/train/examples.py",  # each task's training target
    "cmal/train/steps.py",  # each task's loss
    "service/routers/tasks.py",  # each task's endpoint
}


def test_each_task_has_unique_names_and_a_fusion_output() -> None:
    assert len(set(TASK_IDS)) == len(TASKS) and len(set(ROUTES)) == len(TASKS)
    assert sorted(t.output for t in TASKS) == sorted(FUSION_OUTPUTS)  # one head per task
    for t in TASKS:
        assert get_task(t.id) is t and get_task(t.route) is t
        assert t.data_file == f"{t.id}.jsonl"
    with pytest.raises(ValueError, match="choose from ve, rec, vqa, itm"):
        get_task("captioning")


def test_no_module_outside_the_task_code_keeps_its_own_task_list() -> None:
    offenders = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name in TASK_CODE:
                continue
            text = path.read_text(encoding="utf-8")
            named = {n for n in (*TASK_IDS, *ROUTES) if re.search(rf"[\"']{n}[\"']", text)}
            ids = named & set(TASK_IDS)
            routes = named & set(ROUTES)
            if len(ids) >= 3 or len(routes) >= 3:
                offenders[name] = sorted(named)
    assert not offenders, f"task lists outside the registry: {offenders}"


def regions() -> RegionRow:
    boxes = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0]], np.float32)
    return RegionRow(boxes, np.array([True, True, False]), (200, 100))


def test_grounding_is_right_when_the_top_valid_region_overlaps_the_truth() -> None:
    rec = get_task("rec")
    gold = Gold(regions=regions())
    # slot 2 scores highest but is not a detection: the top valid slot (1) is the answer
    logits = np.array([0.0, 1.0, 9.0])
    assert top_region(logits, regions().valid) == 1
    assert rec.hit(logits, (100.0, 50.0, 200.0, 100.0), gold)  # slot 1 in pixels: IoU 1
    assert rec.hit(logits, (100.0, 50.0, 200.0, 75.0), gold)  # IoU exactly 0.5
    assert not rec.hit(logits, (100.0, 50.0, 200.0, 70.0), gold)  # IoU 0.4
    assert not rec.hit(logits, (0.0, 0.0, 100.0, 50.0), gold)  # slot 0's box
    nothing = Gold(regions=RegionRow(regions().boxes, np.zeros(3, bool), (200, 100)))
    assert not rec.hit(logits, (100.0, 50.0, 200.0, 100.0), nothing)


def test_grounding_declines_below_the_threshold_and_is_scored_for_it() -> None:
    rec = get_task("rec")
    logits, truth = np.array([0.0, 1.0, 9.0]), (100.0, 50.0, 200.0, 100.0)
    assert not declines(-3.0, None)  # no threshold: never declines
    assert declines(-3.0, -2.0) and not declines(-2.0, -2.0) and not declines(0.5, -2.0)
    kept, declined = Gold.of((), regions(), 0.5, -2.0), Gold.of((), regions(), -3.0, -2.0)
    assert not kept.declined and declined.declined
    assert rec.hit(logits, truth, kept) and not rec.hit(logits, truth, declined)  # a wrong decline
    assert rec.hit(logits, None, declined) and not rec.hit(logits, None, kept)  # names nothing


def test_decline_threshold_has_the_best_balanced_accuracy() -> None:
    logits = np.array([-6.0, -5.0, -1.0, 2.0, 3.0, -4.5, 4.0])
    present = np.array([False, False, False, True, True, True, True])
    chosen = choose_threshold(logits, present)
    # below -4.75 declines two of three absent and keeps every present one (5/6 balanced); below
    # 0.5 declines all three absent but also the present -4.5 (7/8): the best
    assert chosen == {"threshold": 0.5, "declined_absent": 1.0, "kept_present": 0.75}
    with pytest.raises(ValueError, match="name an object and ones that name nothing"):
        choose_threshold(logits, np.ones(7, bool))


def test_the_other_tasks_score_their_decisions() -> None:
    ve, vqa, itm = get_task("ve"), get_task("vqa"), get_task("itm")
    assert ve.hit(np.array([0.1, 2.0, 0.3]), VE_LABELS[1], Gold())
    assert not ve.hit(np.array([0.1, 2.0, 0.3]), VE_LABELS[0], Gold())
    answers = Gold(answers=["yes", "no", "2"])
    assert vqa.hit(np.array([0.0, 0.5, 3.0]), ("2", "two"), answers)
    assert not vqa.hit(np.array([0.0, 0.5, 3.0]), ("yes",), answers)
    assert itm.hit(np.array(0.7), True, Gold()) and itm.hit(np.array(-0.7), False, Gold())
    assert not itm.hit(np.array(-0.7), True, Gold())
    assert ve.accuracy(np.array([[1.0, 0, 0], [0, 0, 1.0]]), ["entailment", "neutral"], Gold()) == 0.5


def test_margins_measure_how_decisive_each_row_was() -> None:
    assert get_task("vqa").margin(np.array([[0.0, 1.0, 3.5], [2.0, 2.0, 1.0]])).tolist() == [2.5, 0.0]
    assert get_task("itm").margin(np.array([-1.5, 0.25])).tolist() == [1.5, 0.25]
    assert get_task("itm").decide(np.array([-1.5, 0.25])).tolist() == [False, True]


def test_contributing_lists_every_file_that_names_the_tasks() -> None:
    guide = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = guide.split("## Adding a task")[1].split("\n## ")[0]
    assert all(f"`{name}`" in section for name in TASK_CODE), "CONTRIBUTING.md, Adding a task"
