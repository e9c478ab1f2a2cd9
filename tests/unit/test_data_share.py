"""Fine-tuning on a share of the data (`--data-share`): whole images drawn, reproducibly."""

from __future__ import annotations

from cmal.train.examples import Example, share_of_images


def _examples() -> list[Example]:
    return [
        Example(uid=i, task=("vqa", "rec")[i % 2], row=i % 40, ids=[2, 3], anchors=[]) for i in range(200)
    ]


def test_a_share_keeps_every_example_of_the_drawn_images_and_none_of_the_others() -> None:
    examples = _examples()
    tenth = share_of_images(examples, 0.1, seed=0)
    rows = {e.row for e in tenth}
    assert len(rows) == 4  # 10% of 40 images
    assert tenth == [e for e in examples if e.row in rows]  # all their examples, in order
    assert share_of_images(examples, 0.1, seed=0) == tenth  # reproducible
    assert {e.row for e in share_of_images(examples, 0.1, seed=1)} != rows  # the seed draws
    assert rows <= {e.row for e in share_of_images(examples, 0.5, seed=0)}  # shares of one seed nest


def test_all_of_the_data_is_the_data_itself_and_a_tiny_share_still_trains() -> None:
    examples = _examples()
    assert share_of_images(examples, 1.0, seed=0) is examples
    assert len({e.row for e in share_of_images(examples, 0.0, seed=0)}) == 1
