"""Target building against the original sampler's targets (golden_loss) and hand-computed cases."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cornernet_saccade.data.targets import (
    build_attention_targets,
    build_corner_targets,
    draw_gaussian,
    gaussian_kernel,
    gaussian_radius,
)
from cornernet_saccade.model.geometry import attention_map_sizes, output_size

GOLDEN = Path(__file__).parent / "data" / "loss_golden.npz"
OFFICIAL = dict(num_classes=80, input_size=255, output_size=64, min_scale=16, gaussian_iou=0.5, max_objects=128)


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return dict(np.load(GOLDEN))


def golden_inputs(golden: dict[str, np.ndarray], b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Final crop boxes, 0-based labels (the golden stores 1-based categories) and reference boxes."""
    dets = golden[f"sample/final_dets_in_crop_coords/b{b}"]
    reference = golden[f"sample/orig_dets_scaled_keep/b{b}"][:, :4]
    return dets[:, :4], dets[:, 4].astype(np.int64) - 1, reference


@pytest.mark.parametrize("b", [0, 1])
def test_corner_targets_equal_original(golden: dict[str, np.ndarray], b: int) -> None:
    boxes, labels, reference = golden_inputs(golden, b)
    got = build_corner_targets(boxes, labels, reference, **OFFICIAL)
    for key in ("tl_heat", "br_heat"):
        np.testing.assert_allclose(got[key], golden[f"sample/gt_{key}"][b], rtol=0, atol=1e-6, err_msg=key)
    for key in ("tl_valid", "br_valid", "tl_ind", "br_ind", "tl_off", "br_off"):
        np.testing.assert_array_equal(got[key], golden[f"sample/gt_{key}"][b], err_msg=key)
    np.testing.assert_array_equal(got["tag_mask"], golden["sample/gt_tag_mask"][b].astype(bool))
    assert got["tl_heat"].dtype == np.float32 and got["tl_ind"].dtype == np.int64 and got["tag_mask"].dtype == bool


@pytest.mark.parametrize("b", [0, 1])
def test_attention_targets_equal_original(golden: dict[str, np.ndarray], b: int) -> None:
    boxes, _, _ = golden_inputs(golden, b)
    got = build_attention_targets(boxes, 255)
    for scale, att in enumerate(got):
        np.testing.assert_array_equal(att, golden[f"sample/gt_att/scale{scale}"][b], err_msg=f"scale{scale}")


def test_gaussian_radius_square_box_by_hand() -> None:
    # 10x10 cells, IoU 0.5: roots 1.835, 5 - 2.5*sqrt(2) = 1.464 (one corner in, one out), 2.071.
    assert gaussian_radius(10, 10, 0.5) == pytest.approx(5 - 2.5 * math.sqrt(2), rel=1e-12)


def test_gaussian_kernel_values() -> None:
    kernel = gaussian_kernel(2)  # sigma = 5/6
    assert kernel.shape == (5, 5) and kernel[2, 2] == 1.0
    assert kernel[2, 4] == pytest.approx(math.exp(-4 / (2 * (5 / 6) ** 2)))
    np.testing.assert_array_equal(kernel, kernel.T)


def test_draw_gaussian_cut_at_border_and_elementwise_max() -> None:
    heat = np.zeros((6, 6), np.float32)
    draw_gaussian(heat, 0, 5, 2)
    np.testing.assert_allclose(heat[3:, :3], gaussian_kernel(2)[:3, 2:], atol=1e-7)
    assert heat[:3].sum() == 0 and heat[:, 3:].sum() == 0
    draw_gaussian(heat, 1, 5, 0)  # radius 0: a single 1 that must win the max
    assert heat[5, 1] == 1.0 and heat[5, 0] == 1.0


def test_attention_ranges_are_inclusive_at_both_ends() -> None:
    # long sides 32 (fine and middle), 96 (middle and coarse), 256 (coarse), 257 (none)
    boxes = np.array([[84, 44, 116, 76], [52, 112, 148, 208], [0, 0, 256, 120], [0, 0, 257, 10]], np.float32)
    coarse, middle, fine = build_attention_targets(boxes, 255)
    assert [a.shape for a in (coarse, middle, fine)] == [(1, 16, 16), (1, 32, 32), (1, 64, 64)]
    assert fine.sum() == 1 and fine[0, 60 // 4, 100 // 4] == 1
    assert middle.sum() == 2 and middle[0, 60 // 8, 100 // 8] == 1 and middle[0, 160 // 8, 100 // 8] == 1
    assert coarse.sum() == 2 and coarse[0, 160 // 16, 100 // 16] == 1 and coarse[0, 60 // 16, 128 // 16] == 1
    assert attention_map_sizes(511) == [32, 64, 128]
    assert [output_size(s) for s in (255, 511, 127, 1, 2, 5)] == [64, 128, 32, 1, 1, 2]


def test_small_and_low_overlap_boxes_are_ignored_not_negatives() -> None:
    boxes = np.array([[10, 10, 60, 50], [100, 100, 110, 108], [150, 20, 250, 120]], np.float32)
    reference = boxes.copy()
    reference[2, 2] = 400  # only 100/250 of its scaled original lies in the crop
    got = build_corner_targets(boxes, np.array([3, 3, 7]), reference, **OFFICIAL)
    assert got["tag_mask"].sum() == 1
    cell = lambda v: int(np.float32(v) * np.float32(64 / 255))  # noqa: E731
    assert got["tl_ind"][0] == cell(10) * 64 + cell(10) and got["br_ind"][0] == cell(50) * 64 + cell(60)
    assert got["tl_heat"][3].max() == 1 and got["tl_heat"][7].max() == 0
    assert (got["tl_heat"] == 1).sum() == 1
    # ignored objects: zero valid exactly where their Gaussians are
    assert got["tl_valid"][3, cell(100), cell(100)] == 0 and got["tl_valid"][7, cell(20), cell(150)] == 0
    assert got["tl_valid"][3, cell(10), cell(10)] == 1


def test_no_boxes_and_too_many_boxes() -> None:
    empty = build_corner_targets(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros((0, 4)), **OFFICIAL)
    assert not empty["tag_mask"].any() and empty["tl_heat"].sum() == 0 and empty["br_valid"].all()
    assert all(a.sum() == 0 for a in build_attention_targets(np.zeros((0, 4), np.float32), 255))

    grid = np.arange(12, dtype=np.float32) * 20
    boxes = np.array([[x, y, x + 18, y + 18] for y in grid for x in grid], np.float32)  # 144 boxes
    got = build_corner_targets(boxes, np.zeros(len(boxes), np.int64), boxes, **{**OFFICIAL, "max_objects": 128})
    assert got["tag_mask"].all() and (got["tl_heat"][0] == 1).sum() == 128
    assert (got["tl_valid"][0] == 0).any()  # the 16 left over are ignored
