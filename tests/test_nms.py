"""Soft-NMS against the original Cython soft_nms (tests/data/postproc_cases.npz) and hand cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cornernet_saccade.inference.nms import SoftNMSMethod, best_per_image, soft_nms

SETS = ("set0_n60_c6", "set1_n200_c10", "set2_n5_c5", "set3_empty")
METHODS = {"exp_soft_nms(saccade)": SoftNMSMethod.GAUSSIAN, "linear_soft_nms": SoftNMSMethod.LINEAR,
           "nms": SoftNMSMethod.HARD}


@pytest.fixture(scope="module")
def golden(data_dir) -> dict[str, np.ndarray]:
    return dict(np.load(data_dir / "postproc_cases.npz"))


def run(boxes: np.ndarray, labels: np.ndarray | None = None, **kwargs) -> np.ndarray:
    """Rows ``x1, y1, x2, y2, decayed score`` of the kept boxes, in output order."""
    t = torch.from_numpy(boxes)
    keep, scores = soft_nms(t[:, :4], t[:, 4], None if labels is None else torch.from_numpy(labels), **kwargs)
    return torch.cat((t[keep, :4], scores[:, None]), dim=1).numpy()


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("method", METHODS)
def test_matches_cython_bit_for_bit(golden, name, method):
    got = run(golden[f"softnms/{name}/input"], method=METHODS[method])
    ref = golden[f"softnms/{name}/{method}/result_rows_0to5"]
    assert len(got) == int(golden[f"softnms/{name}/{method}/keep_len"])
    np.testing.assert_array_equal(got, ref)


def test_classes_are_independent(golden):
    """Two golden sets under two labels, interleaved: each label's result is its own set's result."""
    first, second = golden["softnms/set0_n60_c6/input"], golden["softnms/set2_n5_c5/input"]
    boxes = np.concatenate((first[:30], second, first[30:]))
    labels = np.array([7] * 30 + [3] * len(second) + [7] * 30)
    got = run(boxes, labels)
    ref_second = golden["softnms/set2_n5_c5/exp_soft_nms(saccade)/result_rows_0to5"]
    ref_first = golden["softnms/set0_n60_c6/exp_soft_nms(saccade)/result_rows_0to5"]
    np.testing.assert_array_equal(got, np.concatenate((ref_second, ref_first)))  # label 3 first


def test_hand_computed_decay():
    boxes = np.array([[0, 0, 9, 9, 0.9], [0, 0, 9, 9, 0.8], [0, 0, 4, 9, 0.7], [50, 50, 60, 60, 0.95]], np.float32)
    half_iou = 50 / 100  # the third box covers half of the first (+1-pixel areas 50 and 100)
    got = run(boxes, method=SoftNMSMethod.GAUSSIAN)
    # picks: box 3 (0.95, no overlap), box 0, then box 2 (0.7 * e^(-0.25/0.7) beats 0.8 * e^(-1/0.7))
    second = 0.8 * math.exp(-1 / 0.7)
    third = 0.7 * math.exp(-half_iou**2 / 0.7)
    np.testing.assert_allclose(got[:, 4], [0.95, 0.9, third, second * math.exp(-half_iou**2 / 0.7)], rtol=1e-6)
    np.testing.assert_array_equal(got[:, 0], [50, 0, 0, 0])
    hard = run(boxes, method=SoftNMSMethod.HARD)
    np.testing.assert_array_equal(hard[:, 4], np.float32([0.95, 0.9, 0.7]))  # IoU 0.5 is not > 0.5
    linear = run(boxes, method=SoftNMSMethod.LINEAR, overlap_threshold=0.4)
    np.testing.assert_allclose(linear[:, 4], [0.95, 0.9, 0.35], rtol=1e-6)  # identical box decays to 0


def test_low_scores_are_dropped_only_when_overlapping():
    boxes = np.array([[0, 0, 9, 9, 0.9], [0, 0, 9, 9, 0.0015], [100, 100, 110, 110, 0.0005]], np.float32)
    got = run(boxes)
    np.testing.assert_array_equal(got[:, 0], [0, 100])  # the overlapped weak box fell below 0.001


def test_best_per_image_keeps_ties():
    scores = torch.tensor([0.1, 0.5, 0.3, 0.5, 0.2, 0.5])
    assert best_per_image(scores, 2).tolist() == [False, True, False, True, False, True]
    assert best_per_image(scores, 4).tolist() == [False, True, True, True, False, True]
    assert best_per_image(scores, 10).all()
