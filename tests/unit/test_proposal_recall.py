"""scripts/proposal_recall.py: which true objects count as proposed, by overlap and by centre."""

from __future__ import annotations

import numpy as np

from tests.scripts import load_script


def test_an_object_is_found_by_overlap_or_only_by_centre() -> None:
    hits = load_script("proposal_recall").object_hits
    truth = [10.0, 10.0, 30.0, 30.0]
    assert hits(np.array([[12.0, 12.0, 31.0, 31.0]]), truth) == (True, True)  # IoU 0.81
    # a fragment of a ring: its centre lies in the box, but it covers a quarter of it (IoU 0.25)
    assert hits(np.array([[10.0, 10.0, 20.0, 20.0]]), [10.0, 10.0, 30.0, 30.0]) == (False, True)
    assert hits(np.array([[40.0, 40.0, 60.0, 60.0]]), truth) == (False, False)  # elsewhere
    assert hits(np.zeros((0, 4)), truth) == (False, False)  # no valid region at all
    # the best of several regions counts
    assert hits(np.array([[40.0, 40.0, 60.0, 60.0], [10.0, 10.0, 30.0, 30.0]]), truth) == (True, True)
