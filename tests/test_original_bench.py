"""benchmarks/original.py and its runner: the corner-pool stand-in's maxima, and the comparison of
our views and boxes with the original tester's (no clone of the original needed)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import original  # noqa: E402  (scripts beside the benchmarks' common.py, not a package)
import original_runner  # noqa: E402

from cornernet_saccade.inference.results import Detections  # noqa: E402
from cornernet_saccade.inference.trace import CropView, DetectionTrace  # noqa: E402


def test_pool_stand_ins_take_the_running_maximum_towards_their_corner():
    """top: max over the rows at and below; bottom: at and above; left: columns at and to the right;
    right: at and to the left (what the original's C++ ops compute)."""
    x = torch.randn(2, 3, 7, 5)
    naive = {
        "top_pool": torch.stack([x[:, :, i:].amax(2) for i in range(7)], 2),
        "bottom_pool": torch.stack([x[:, :, : i + 1].amax(2) for i in range(7)], 2),
        "left_pool": torch.stack([x[..., i:].amax(3) for i in range(5)], 3),
        "right_pool": torch.stack([x[..., : i + 1].amax(3) for i in range(5)], 3),
    }
    for name, (dim, reverse) in original_runner.POOLS.items():
        (out,) = original_runner.cummax_pool(dim, reverse).forward(x)
        assert torch.equal(out, naive[name]), name


def detections(boxes: np.ndarray, labels: list[int], crops: list[CropView]) -> Detections:
    return Detections(boxes[:, :4].astype(np.float32), boxes[:, 4].astype(np.float32), np.array(labels, dtype=np.int64),
                      None, DetectionTrace(crops=crops))


CROPS = [CropView(0, (240.0, 320.0), 0.4, (-1, -79, 639, 561)), CropView(1, (100.0, 50.0), 2.0, (-13, 37, 113, 163))]
ORIGINAL = {
    "crop_calls": [{"locations": [[240.0, 320.0, 0.4]], "offsets": [[-79.0, -1.0]]},
                   {"locations": [[100.0, 50.0, 2.0]], "offsets": [[37.0, -13.0]]}],
    "boxes": [[[1.0, 2.0, 30.0, 40.0, 0.75], [5.0, 6.0, 7.0, 8.0, 0.5]], [], [[0.0, 0.0, 9.0, 9.0, 0.375]]] + [[]] * 77,
}


def test_same_views_and_boxes_in_another_order_compare_equal():
    ours = detections(np.array([[5, 6, 7, 8, 0.5], [0, 0, 9, 9, 0.375], [1, 2, 30, 40, 0.75]]), [0, 2, 0], CROPS)
    line = original.compare(ORIGINAL, ours)
    assert "original [1, 1], ours [1, 1], 2 of ours also the original's, in order max abs diff 0" in line
    assert "final boxes 3 each, same per class, max abs diff coordinates 0 px, scores 0" in line


def test_differences_in_boxes_and_views_are_reported():
    moved = detections(np.array([[5, 6, 7, 8.25, 0.5], [1, 2, 30, 40, 0.625]]), [0, 0], [CROPS[0]])
    line = original.compare(ORIGINAL, moved)
    assert "original [1, 1], ours [1], 1 of ours also the original's" in line and "in order" not in line
    assert "final boxes differ in number (class 2: original 1, ours 0)" in line
    line = original.compare(ORIGINAL, detections(np.array([[5, 6, 7, 8.25, 0.5], [1, 2, 30, 40, 0.625], [0, 0, 9, 9, 0.375]]),
                                                 [0, 0, 2], CROPS))
    assert "max abs diff coordinates 0.25 px, scores 0.125" in line
